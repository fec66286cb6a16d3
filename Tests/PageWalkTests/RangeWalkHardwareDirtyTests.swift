import Testing
import MemoryModel
import TestKit
@testable import PageWalk

/// arm64's `pte_dirty()` is the software PTE_DIRTY bit or hardware dirty:
/// DBM (the write bit) set with PTE_RDONLY clear. A batch that respects
/// `.dirty` must never merge a hardware-dirty entry with a clean one, even
/// when it does not respect `.writable`.
@Suite struct RangeWalkHardwareDirtyTests {
    @Test func hardwareDirtyAndCleanEntriesDoNotMerge() throws {
        let mm = try makeSpace(.arm64)
        let start: UInt64 = 0x4000_0000
        try mm.mmap(start: start, end: start + 0x10000, access: [.read, .write])
        try mm.populateLargeFolios(start, start + 0x4000, order: 2)
        let l = mm.geometry.layout
        let table = try #require(pteTable(mm, start))
        let first = mm.geometry.tableIndex(start, .pte)
        let entries = mm.memory.tables.entries(table)
        // Four PTEs of one folio, writable and clean (DBM and RDONLY set, no
        // PTE_DIRTY); the second becomes hardware dirty (RDONLY cleared).
        var words: [UInt64] = []
        for k in 0..<4 {
            var w = entries[first + k].load(ordering: .relaxed)
            w = (w | l.write | l.readOnly) & ~l.dirty
            if k == 1 { w &= ~l.readOnly }
            mm.storePTE(table, first + k, w)
            words.append(w)
        }
        let expected = words.map { $0 & l.dirty != 0 || ($0 & l.write != 0 && $0 & l.readOnly == 0) }
        #expect(expected == [false, true, false, false])
        let options = RangeWalkOptions(batching: true, respect: [.dirty])
        let seen: [Bool] = try mm.withMmapReadLock { (lock) throws(PageWalkError) in
            var out: [Bool] = []
            for e in try mm.walk(start..<start + 0x4000, lock: lock, options: options) {
                out += Array(repeating: e.entryAttributes.contains(.dirty), count: e.pageCount)
            }
            return out
        }
        #expect(seen == expected)
    }
}
