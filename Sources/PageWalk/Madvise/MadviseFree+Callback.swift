import MemoryModel

// MADV_FREE as mm/madvise.c writes it: one `pmd_entry` that takes a THP
// the range covers whole, or locks the PTE table and goes through it:
// swap entries freed, each folio met at its first page with all its pages
// mapped here made old, clean and lazily freeable.
extension MadviseFreeWalk {
    static func callback(_ mm: AddressSpace, _ vma: VMA, _ start: UInt64, _ end: UInt64) throws(PageWalkError) {
        let access = LevelAccess(mm)
        // The lock madvise took: the VMA's own, or the mmap lock.
        let walkLock: PageWalkLock = mm.isMmapLockHeldByCurrentThread(.read) ? .read : .vmaReadVerify
        let layout = mm.geometry.layout
        let pmdSize = mm.geometry.entrySize(.pmd)
        let ops = MMWalkOps<Void>(
            pmdEntry: { p, addr, next, walk in
                walk.action = .continue
                let pmd = p.entry
                if !p.hasTrivialEntries && pmd.isLeaf {
                    // madvise_free_huge_pmd(): only a THP the range covers whole.
                    guard addr % pmdSize == 0, next - addr == pmdSize, pmd.isPresent else { return 0 }
                    let l = mm.lock(forEntriesOf: p.slot.table, level: .pmd)
                    l.lock()
                    defer { l.unlock() }
                    guard let f = mm.memory.folio(containing: pmd.pfn), freeable(f) else { return 0 }
                    mm.setEntry(at: p.slot, layout.markClean(p.rawValue) & ~layout.young)
                    lazyFree(mm, f)
                    return 0
                }
                guard let table = access.lockPTETable(p.slot) else { return 0 }
                defer { mm.memory.tables.lock(table).unlock() }
                let words = mm.memory.tables.entries(table)
                var a = addr
                while a < next {
                    let i = mm.geometry.tableIndex(a, .pte)
                    let w = words[i].load(ordering: .relaxed)
                    defer { a += Geometry.pageSize }
                    if w == 0 { continue }
                    if !layout.isPresent(w, .pte) {
                        if case .swap? = SoftLeafEntry(decoding: w, layout: layout).leaf as SoftLeaf? {
                            mm.zapPTE(vma, table, i, dropMarkers: false)
                        }
                        continue
                    }
                    guard !layout.isSpecialPTE(w), let page = mm.memory.page(layout.pfn(w)), page.index == 0 else { continue }
                    let f = page.folio
                    let n = f.pageCount
                    guard freeable(f), i + n <= Geometry.entriesPerTable, a + UInt64(n) << Geometry.pageShift <= next,
                          (0..<n).allSatisfy({ k in
                              let wk = words[i + k].load(ordering: .relaxed)
                              return layout.isPresent(wk, .pte) && layout.pfn(wk) == f.pfn + UInt64(k)
                          }) else { continue }
                    mm.clearYoungDirtyPTEs(table, i, count: n, young: true, dirty: true)
                    lazyFree(mm, f)
                }
                return 0
            },
            walkLock: walkLock)
        var none: Void = ()
        _ = try walkPageRangeVMA(mm, vma, start, end, ops: ops, private: &none)
    }

    /// MADV_FREE's folio step: clean, then `folio_mark_lazyfree()`; a folio
    /// in the swap cache keeps its state.
    static func lazyFree(_ mm: AddressSpace, _ f: Folio) {
        guard !f.test(.swapCache) else { return }
        f.clearDirty()
        f.markLazyFree()
    }
}
