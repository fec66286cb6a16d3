import Testing
import MemoryModel
import PageWalk
import TestKit
@testable import ProcFS

/// pagemap_read() copies its words to user space with no lock held: a
/// reader that stalls in the copy must not keep a fault waiting on a
/// page-table lock or the mmap lock.
@Suite struct PagemapLockingTests {
    /// A sink that, at every chunk it is handed (the reader's copy), records
    /// which of the locks a fault in the range would need are held.
    final class Probe: @unchecked Sendable {
        let mm: AddressSpace
        let tables: [TableID]
        var chunks = 0
        var heldTableLocks: [Int] = []
        var mmapLockHeld = 0
        init(_ mm: AddressSpace, tables: [TableID]) { self.mm = mm; self.tables = tables }
    }

    struct StallingSink: ProcSink {
        let probe: Probe
        var bytes = 0
        mutating func write(_ chunk: UnsafeRawBufferPointer) {
            probe.chunks += 1
            bytes += chunk.count
            probe.heldTableLocks.append(probe.tables.filter { probe.mm.memory.tables.lock($0).isLocked }.count)
            if (try? probe.mm.assertMmapLocked(.read)) != nil { probe.mmapLockHeld += 1 }
        }
    }

    @Test(arguments: [ProcWalker.range, .callback])
    func noLockIsHeldWhileTheReaderCopies(walker: ProcWalker) throws {
        let mm = try AddressSpace(geometry: .x86_64, memory: PhysicalMemory(budgetBytes: 64 << 20))
        let start: UInt64 = 0x4000_0000, end: UInt64 = start + 4 * mb2
        try mm.mmap(start: start, end: end, access: [.read, .write])
        try mm.fault(start, end, write: true)
        let tables = try stride(from: start, to: end, by: Int(mb2)).map { try #require(pteTable(mm, $0)) }
        let probe = Probe(mm, tables: tables)
        // A writer buffer smaller than a chunk's words: every word reaches
        // the sink through a copy, several times per chunk.
        var w = ProcWriter(StallingSink(probe: probe), capacity: 1024)
        try Pagemap.read(mm, start..<end, privileged: true, to: &w, options: ProcOptions(walker: walker))
        let sink = w.finish()
        #expect(sink.bytes == Int((end - start) / page) * 8)
        #expect(probe.chunks >= 4)
        #expect(probe.heldTableLocks.allSatisfy { $0 == 0 }, "table locks held during copies: \(probe.heldTableLocks)")
        #expect(probe.mmapLockHeld == 0, "the mmap lock was held during \(probe.mmapLockHeld) of \(probe.chunks) copies")
        // The words are those of one walk of the whole range.
        let words = try Pagemap.words(mm, start..<end, privileged: true, options: ProcOptions(walker: walker))
        #expect(words.count == 4 * 512 && words.allSatisfy { $0 & PagemapBits.present != 0 })
    }
}
