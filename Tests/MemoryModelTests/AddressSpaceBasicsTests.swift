import Testing
@testable import MemoryModel

@Suite struct AddressSpaceBasicsTests {
    func makeSpace(_ g: Geometry = .x86_64) throws -> AddressSpace {
        let mem = try PhysicalMemory(budgetBytes: 256 << 20)
        return try AddressSpace(geometry: g, memory: mem)
    }

    @Test func anonymousWriteFaultMapsExclusivePages() throws {
        let mm = try makeSpace()
        try mm.mmap(start: 0x10_0000, end: 0x20_0000, access: [.read, .write])
        try mm.fault(0x10_0000, 0x10_4000, write: true)
        let c = mm.counterSnapshot
        #expect(c.anon == 4)
        #expect(c.pteTables == 1 && c.pmdTables == 1 && c.pudTables == 1)
        guard case .present(.pte, let raw, let pfn) = mm.translate(0x10_1000) else { Issue.record("not present"); return }
        let pte = PTE(rawValue: raw, architecture: .x86_64)
        #expect(pte.isWritable && pte.isDirty && pte.isYoung && !pte.isSpecial)
        let page = try #require(mm.memory.page(pfn))
        #expect(page.mapcount == 1 && page.folio.refcount == 1 && page.isAnonExclusive)
    }

    @Test func readFaultMapsZeroPage() throws {
        let mm = try makeSpace()
        try mm.mmap(start: 0x10_0000, end: 0x20_0000, access: [.read, .write])
        try mm.fault(0x10_0000, 0x10_2000, write: false)
        guard case .present(_, let raw, let pfn) = mm.translate(0x10_0000) else { Issue.record("not present"); return }
        #expect(pfn == mm.memory.zeroPage.pfn)
        #expect(PTE(rawValue: raw, architecture: .x86_64).isSpecial)
        #expect(mm.counterSnapshot.anon == 0)
        try mm.fault(0x10_0000, 0x10_1000, write: true)
        guard case .present(_, _, let pfn2) = mm.translate(0x10_0000) else { Issue.record("not present"); return }
        #expect(pfn2 != mm.memory.zeroPage.pfn)
        #expect(mm.counterSnapshot.anon == 1)
    }

    @Test func forkSharesAnonPagesCopyOnWrite() throws {
        let mm = try makeSpace()
        try mm.mmap(start: 0x40_0000, end: 0x80_0000, access: [.read, .write])
        try mm.fault(0x40_0000, 0x40_8000, write: true)
        let child = try mm.fork(childPID: 2)
        guard case .present(_, let praw, let pfn) = mm.translate(0x40_0000),
              case .present(_, let craw, let cpfn) = child.translate(0x40_0000) else { Issue.record("missing"); return }
        #expect(pfn == cpfn)
        #expect(!PTE(rawValue: praw, architecture: .x86_64).isWritable)
        #expect(!PTE(rawValue: craw, architecture: .x86_64).isWritable)
        let page = try #require(mm.memory.page(pfn))
        #expect(page.mapcount == 2 && page.folio.refcount == 2 && !page.isAnonExclusive)
        try child.fault(0x40_0000, 0x40_1000, write: true)
        #expect(page.mapcount == 1 && page.folio.refcount == 1)
        try mm.fault(0x40_0000, 0x40_1000, write: true)   // reuse: refcount 1, mapcount 1
        guard case .present(_, _, let pfnAfter) = mm.translate(0x40_0000) else { Issue.record("missing"); return }
        #expect(pfnAfter == pfn)
    }

    @Test func thpSplitAndZapFreesTables() throws {
        let mm = try makeSpace()
        try mm.mmap(start: 0x4000_0000, end: 0x4040_0000, access: [.read, .write], extraFlags: [.hugePage])
        try mm.populateTHP(0x4000_0000, 0x4020_0000)
        guard case .present(.pmd, _, let pfn) = mm.translate(0x4000_0000) else { Issue.record("no PMD"); return }
        let folio = try #require(mm.memory.folio(containing: pfn))
        #expect(folio.order == 9 && folio.entireMapcount == 1 && folio.mapcount == 1)
        #expect(mm.counterSnapshot.anon == 512 && mm.counterSnapshot.pteTables == 1)
        try mm.zap(0x4000_0000, 0x4000_1000)   // partial: splits the PMD
        #expect(folio.entireMapcount == 0 && folio.mapcount == 511 && folio.refcount == 511)
        #expect(mm.counterSnapshot.anon == 511)
        try mm.zap(0x4000_0000, 0x4020_0000)
        #expect(mm.counterSnapshot.anon == 0 && mm.counterSnapshot.pteTables == 0)
        #expect(mm.memory.folioCount == 0)
    }

    @Test func swapOutAndInKeepCounts() throws {
        let mm = try makeSpace()
        try mm.mmap(start: 0x10_0000, end: 0x20_0000, access: [.read, .write])
        try mm.fault(0x10_0000, 0x10_8000, write: true)
        let child = try mm.fork(childPID: 2)
        try mm.swapOut(0x10_0000, 0x10_8000)
        #expect(mm.counterSnapshot.swapEntries == 8 && child.counterSnapshot.swapEntries == 8)
        guard case .softLeaf(_, _, let e) = mm.translate(0x10_0000), case .swap(let s) = e.leaf else { Issue.record("no swap"); return }
        #expect(mm.memory.swap.count(Int(s.offset)) == 2)
        #expect(!e.bits.contains(.exclusive))
        try mm.swapIn(0x10_0000, 0x10_1000)
        #expect(mm.memory.swap.count(Int(s.offset)) == 1)
        try child.swapIn(0x10_0000, 0x10_1000)
        guard case .present(_, _, let p1) = mm.translate(0x10_0000), case .present(_, _, let p2) = child.translate(0x10_0000) else { Issue.record("x"); return }
        #expect(p1 == p2)
        #expect(mm.memory.page(p1)!.mapcount == 2)
    }
}

/// `MemmapCursor.folioAndSize(containing:)` reads a frame's folio and
/// `folio_test_large()` from the frame's own record; both must be what
/// `PhysicalMemory.folio(containing:)` and the folio's order say, for heads,
/// tails, order-0 folios and frames in no folio.
@Suite struct MemmapCursorTests {
    @Test func folioAndSizeAgreeWithTheFolioLookup() throws {
        let memory = try PhysicalMemory(budgetBytes: 64 << 20, nodes: 1)
        var folios: [Folio] = []
        for order in [0, 2, 4, 9, 0, 1] { folios.append(try memory.allocateFolio(order: order, flags: [.anon])) }
        var cursor = MemmapCursor(memory)
        for f in folios {
            for pfn in f.pfn..<(f.pfn + UInt64(f.pageCount)) {
                let lookup = cursor.folioAndSize(containing: pfn)
                let found = try #require(lookup)
                #expect(found.folio == memory.folio(containing: pfn))
                #expect(found.folio.pfn == f.pfn)
                #expect(found.isLarge == (f.order > 0), "pfn \(pfn) of an order-\(f.order) folio")
                #expect(cursor.folio(containing: pfn) == found.folio)
            }
        }
        // A frame past every allocation belongs to no folio.
        let beyond = folios.map { $0.pfn + UInt64($0.pageCount) }.max()! + 4096
        #expect(cursor.folioAndSize(containing: beyond) == nil)
        #expect(memory.folio(containing: beyond) == nil)
    }
}

extension AddressSpaceBasicsTests {
    /// zap only tries the folio lock when it drops the last mapping of a
    /// swap-cache folio (`free_swap_and_cache()`); with the lock held
    /// elsewhere the folio stays in the swap cache, unmapped, until reclaim
    /// frees it. A folio someone still holds stays even then.
    @Test func swapCacheLeftByABusyFolioIsReclaimed() throws {
        let mm = try makeSpace()
        try mm.mmap(start: 0x10_0000, end: 0x20_0000, access: [.read, .write])
        try mm.fault(0x10_0000, 0x10_1000, write: true)
        try mm.swapOut(0x10_0000, 0x10_1000)
        try mm.swapIn(0x10_0000, 0x10_1000)        // a read: mapped, still in the swap cache
        guard case .present(_, _, let pfn) = mm.translate(0x10_0000) else { Issue.record("not swapped in"); return }
        let folio = try #require(mm.memory.folio(containing: pfn))
        #expect(folio.test(.swapCache))
        #expect(folio.tryLock())                   // another path holds the folio
        try mm.zap(0x10_0000, 0x10_1000)
        folio.unlock()
        #expect(mm.memory.folioCount == 1 && mm.memory.swap.usedSlots == 1)
        #expect(folio.refcount == 1 && !folio.isMapped)
        // Held by someone (a reference besides the cache's): reclaim leaves it.
        #expect(folio.tryGet())
        #expect(mm.memory.reclaimUnusedSwapCache() == 0 && mm.memory.folioCount == 1)
        mm.memory.put(folio)
        #expect(mm.memory.reclaimUnusedSwapCache() == 1)
        #expect(mm.memory.folioCount == 0 && mm.memory.swap.usedSlots == 0)
    }
}
