import Testing
import MemoryModel
@testable import PageWalk
import TestKit

/// mlock, munlock and mlock2(MLOCK_ONFAULT) on both walkers: one end state
/// over small folios, mTHPs and THPs locked whole and in part, and a fork.
@Suite struct MlockTwinTests {
    func build(_ walker: WalkerKind) throws -> (AddressSpace, [String]) {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: 2 * mb2, access: [.read, .write])
        try mm.fault(mb2, mb2 + 64 * page, write: true)
        try mm.mmap(start: 4 * mb2, end: 8 * mb2, access: [.read, .write], extraFlags: [.hugePage])
        try mm.populateTHP(4 * mb2, 6 * mb2)
        try mm.populateLargeFolios(6 * mb2, 6 * mb2 + 64 * page, order: 4)
        try mm.mlock(mb2 + 8 * page, mb2 + 40 * page, walker: walker)
        try mm.munlock(mb2 + 8 * page, mb2 + 12 * page, walker: walker)
        try mm.mlock(4 * mb2, 5 * mb2, walker: walker)                        // the first THP whole
        try mm.mlock(5 * mb2, 5 * mb2 + (1 << 20), walker: walker)            // the second in part
        try mm.mlock(6 * mb2 + 8 * page, 6 * mb2 + 40 * page, walker: walker) // mTHPs: one whole, two in part
        try mm.mlock2(mb2 + 48 * page, mb2 + 80 * page, onFault: true, walker: walker)
        try mm.fault(mb2 + 60 * page, mb2 + 70 * page, write: true)
        return (mm, endState(mm))
    }

    @Test func bothWalkersLeaveOneEndState() throws {
        let (mm, r) = try build(.range)
        let (_, c) = try build(.callback)
        #expect(r == c, "\(endStateDifferences(r, c).joined(separator: "\n"))")
        func mlocked(_ a: UInt64) -> Bool {
            guard case .present(_, _, let pfn) = mm.translate(a), let f = mm.memory.folio(containing: pfn) else { return false }
            return f.test(.mlocked)
        }
        #expect(mlocked(mb2 + 12 * page) && !mlocked(mb2 + 8 * page))
        #expect(mlocked(4 * mb2) && !mlocked(5 * mb2))
        #expect(mlocked(6 * mb2 + 16 * page) && !mlocked(6 * mb2 + 8 * page) && !mlocked(6 * mb2 + 32 * page))
        #expect(mlocked(mb2 + 60 * page) && mlocked(mb2 + 69 * page) && !mlocked(mb2 + 40 * page))
        #expect(mm.vma(containing: mb2 + 50 * page)?.flags.contains(.lockOnFault) == true)
    }
}
