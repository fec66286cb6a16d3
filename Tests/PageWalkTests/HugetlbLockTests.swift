import Testing
import MemoryModel
import TestKit
import Foundation
import Synchronization
@testable import PageWalk

/// `huge_pte_lockptr()` since Linux 6.11: hugetlb entries take the same
/// split lock a core-mm walker takes for an entry of that table, which is
/// what makes reading hugetlb through the generic walk safe.
@Suite struct HugetlbLockTests {
    final class Flag: Sendable {
        let value = Atomic(false)
        var isSet: Bool { value.load(ordering: .acquiring) }
    }

    /// The table holding the entries at `level` for `address`.
    func table(_ mm: AddressSpace, _ address: UInt64, holding level: PageTableLevel) throws -> TableID {
        var table = mm.root
        for l in mm.tableLevels {
            if l == level { return table }
            let w = mm.memory.tables.entries(table)[mm.geometry.tableIndex(address, l)].load(ordering: .relaxed)
            guard mm.geometry.layout.isTable(w, l) else { break }
            table = mm.lowerTable(w)
        }
        throw PageWalkError.invalidRange(start: address, end: address)
    }

    @Test(arguments: [(UInt64(64 << 10), PageTableLevel.pte), (UInt64(2 << 20), .pmd), (UInt64(32 << 20), .pmd)])
    func theWalkerHoldsTheSplitLockOfTheEntrysTable(size: UInt64, level: PageTableLevel) throws {
        let mm = try makeSpace(.arm64, budget: 256 << 20)
        let start: UInt64 = 0x4000_0000
        try mm.mmap(start: start, end: start + 2 * size, access: [.read, .write], kind: .hugetlb(pageSize: size, file: nil))
        try mm.populateHugetlb(start, start + 2 * size)
        let expected = mm.memory.tables.lock(try table(mm, start, holding: level))
        var seen = 0
        try mm.withMmapReadLock { (lock) throws(PageWalkError) in
            for e in try mm.walk(start..<start + 2 * size, lock: lock) {
                guard case .folio = e.content else { continue }
                seen += 1
                #expect(expected.isHeldByCurrentThread, "\(e): the \(level) table's split lock")
                #expect(!mm.pageTableLock.ref.isLocked, "\(e): page_table_lock")
            }
        }
        #expect(seen == 2)
        #expect(!expected.isLocked)
    }

    /// A fault on a hugetlb page waits for the lock the walker holds: the
    /// model's mutator takes the same lock.
    @Test func theFaultTakesTheSameLockAsTheWalker() throws {
        let mm = try makeSpace(.arm64, budget: 64 << 20)
        let size: UInt64 = 64 << 10, start: UInt64 = 0x4000_0000
        try mm.mmap(start: start, end: start + 2 * size, access: [.read, .write], kind: .hugetlb(pageSize: size, file: nil))
        try mm.populateHugetlb(start, start + size)
        let ptl = mm.memory.tables.lock(try table(mm, start, holding: .pte))
        // Held by this thread, the PTE table's lock makes the other
        // thread's fault of the second huge page fail to take it.
        ptl.lock()
        let done = Flag()
        let t = Thread { try? mm.populateHugetlb(start + size, start + 2 * size); done.value.store(true, ordering: .releasing) }
        t.start()
        // Giving it time can only let a wrong fault finish; a right one
        // waits however long this is.
        var spins = 0
        while spins < 2_000 && !done.isSet { spins += 1; usleep(100) }
        let finishedUnderTheLock = done.isSet
        #expect(!finishedUnderTheLock, "the fault ran without the PTE table's lock")
        ptl.unlock()
        while !done.isSet { usleep(100) }
        #expect(mm.translate(start + size) != nil)
        try mm.munmap(start, start + 2 * size)
    }

    /// And not `page_table_lock`: with it held elsewhere, the fault of a
    /// cont-PTE huge page completes (the bound only limits how long a
    /// wrong fault keeps the test waiting).
    @Test func theFaultDoesNotTakePageTableLock() throws {
        let mm = try makeSpace(.arm64, budget: 64 << 20)
        let size: UInt64 = 64 << 10, start: UInt64 = 0x4000_0000
        try mm.mmap(start: start, end: start + 2 * size, access: [.read, .write], kind: .hugetlb(pageSize: size, file: nil))
        try mm.populateHugetlb(start, start + size)
        let ptl = mm.pageTableLock.ref
        ptl.lock()
        let done = Flag()
        let t = Thread { try? mm.populateHugetlb(start + size, start + 2 * size); done.value.store(true, ordering: .releasing) }
        t.start()
        var spins = 0
        while spins < 300_000 && !done.isSet { spins += 1; usleep(100) }
        let finishedUnderTheLock = done.isSet
        ptl.unlock()
        #expect(finishedUnderTheLock, "the fault of a cont-PTE hugetlb page waited for page_table_lock")
        while !done.isSet { usleep(100) }
    }
}
