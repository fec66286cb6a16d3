import Testing
import MemoryModel
@testable import PageWalk
import TestKit

/// MADV_FREE on both walkers: one end state over small folios, swap
/// entries, mTHPs and THPs covered whole and in part, and folios a fork
/// shares; under the VMA lock (one VMA) and the mmap lock (two).
@Suite struct MadviseFreeTwinTests {
    func build(_ walker: WalkerKind) throws -> (AddressSpace, [String]) {
        let mm = try AddressSpace(geometry: .x86_64, memory: PhysicalMemory(budgetBytes: 512 << 20, swapSlots: 4096))
        try mm.mmap(start: mb2, end: 2 * mb2, access: [.read, .write])
        try mm.fault(mb2, mb2 + 64 * page, write: true)
        try mm.swapOut(mb2 + 32 * page, mb2 + 40 * page)
        try mm.mmap(start: 4 * mb2, end: 8 * mb2, access: [.read, .write], extraFlags: [.hugePage])
        try mm.populateTHP(4 * mb2, 6 * mb2)
        try mm.populateLargeFolios(6 * mb2, 6 * mb2 + 64 * page, order: 4)
        try mm.madviseFree(mb2 + 8 * page, mb2 + 40 * page, walker: walker)
        try mm.madviseFree(4 * mb2, 5 * mb2 + (1 << 20), walker: walker)     // one THP whole, one in part
        try mm.madviseFree(6 * mb2 + 8 * page, 6 * mb2 + 40 * page, walker: walker)
        let child = try mm.fork(childPID: 2)
        try mm.fault(mb2 + 40 * page, mb2 + 48 * page, write: false)
        try mm.madviseFree(mb2 + 40 * page, mb2 + 64 * page, walker: walker)  // shared with the child now
        // Across two VMAs and the gap between: the mmap-lock path.
        #expect(throws: ModelError.self) { try mm.madviseFree(mb2, 6 * mb2, walker: walker) }
        return (mm, endState(mm) + endState(child))
    }

    @Test func bothWalkersLeaveOneEndState() throws {
        var r: [String] = [], c: [String] = []
        do { (_, r) = try build(.range) } catch { r = ["error \(error)"] }
        do { (_, c) = try build(.callback) } catch { c = ["error \(error)"] }
        #expect(r == c, "\(endStateDifferences(r, c).joined(separator: "\n"))")
    }

    @Test func lazyFreeOnlyWholeAndExclusive() throws {
        for walker in WalkerKind.allCases {
            let mm = try AddressSpace(geometry: .x86_64, memory: PhysicalMemory(budgetBytes: 512 << 20, swapSlots: 4096))
            try mm.mmap(start: 4 * mb2, end: 8 * mb2, access: [.read, .write], extraFlags: [.hugePage])
            try mm.populateLargeFolios(6 * mb2, 6 * mb2 + 64 * page, order: 4)
            try mm.madviseFree(6 * mb2 + 8 * page, 6 * mb2 + 40 * page, walker: walker)
            func lazy(_ a: UInt64) -> Bool {
                guard case .present(_, _, let pfn) = mm.translate(a), let f = mm.memory.folio(containing: pfn) else { return false }
                return !f.test(.swapBacked)
            }
            #expect(lazy(6 * mb2 + 16 * page) && !lazy(6 * mb2 + 8 * page) && !lazy(6 * mb2 + 32 * page), "\(walker)")
        }
    }
}
