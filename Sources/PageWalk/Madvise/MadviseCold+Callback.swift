import MemoryModel

// MADV_COLD and MADV_PAGEOUT as mm/madvise.c writes them: `cold_walk_ops`
// with one `pmd_entry` (`madvise_cold_or_pageout_pte_range()`) that handles
// a THP under the PMD lock, or locks the PTE table and steps through it a
// folio batch at a time, dropping the lock to split a large folio the range
// covers in part, and reclaims what it isolated once the lock is gone.
extension ColdWalk {
    /// The walk's private data: `madvise_walk_private` with its mmu_gather,
    /// plus what reclaim did.
    struct Private {
        var tlb = MMUGather()
        var result = LRUAdviceResult()
    }

    static func callback(_ mm: AddressSpace, _ vma: VMA, _ start: UInt64, _ end: UInt64, _ mode: Mode,
                         _ result: inout LRUAdviceResult) throws(PageWalkError) {
        let access = LevelAccess(mm)
        let layout = mm.geometry.layout
        let pmdSize = mm.geometry.entrySize(.pmd)
        let page = Geometry.pageSize

        func reclaim(_ list: [(Folio, UInt64)], _ data: inout Private) {
            for (f, a) in list {
                let pages = f.pageCount   // read before reclaim frees it
                data.result.count(mm.reclaimIsolatedFolio(f, at: a, in: vma), pages: pages)
            }
        }
        // folio_clear_referenced() and folio_test_clear_young(), then
        // folio_isolate_lru() (an unevictable folio goes back) or
        // folio_deactivate().
        func advise(_ f: Folio, firstPageAt address: UInt64, _ list: inout [(Folio, UInt64)]) {
            f.clearReferenced()
            if mode.pageout {
                if mm.isolateFromLRU(f) {
                    if f.test(.unevictable) { mm.putBackOnLRU(f) } else { list.append((f, address)) }
                }
            } else {
                f.deactivate()
            }
        }

        let ops = MMWalkOps<Private>(
            pmdEntry: { p, addr, next, walk in
                var list: [(Folio, UInt64)] = []
                let pmd = p.entry
                if !p.hasTrivialEntries && pmd.isLeaf {
                    // pmd_trans_huge_lock()
                    let l = mm.lock(forEntriesOf: p.slot.table, level: .pmd)
                    l.lock()
                    let w = p.rawValue
                    guard w != 0, layout.isPresent(w, .pmd), !layout.isTable(w, .pmd),
                          let f = mm.memory.folio(containing: layout.pfn(w)), !f.isZero, !f.test(.zoneDevice),
                          !f.maybeMappedShared, !(mode.anonOnly && !f.isAnon) else {
                        l.unlock()
                        return 0
                    }
                    if next - addr != pmdSize {
                        l.unlock()
                        // A failed split leaves the whole PMD alone.
                        guard mm.splitPMDMappedFolio(at: p.slot, folio: f) else { return 0 }
                    } else {
                        if !mode.pageout && w & layout.young != 0 {
                            mm.setEntry(at: p.slot, w & ~layout.young)
                            walk.privateData.tlb.adjust(addr, next)   // tlb_remove_pmd_tlb_entry()
                        }
                        advise(f, firstPageAt: addr, &list)
                        l.unlock()
                        reclaim(list, &walk.privateData)
                        return 0
                    }
                }
                // The PTEs: a table now, or after the split above.
                guard var table = access.lockPTETable(p.slot) else { return 0 }
                var locked = true
                var a = addr
                while a < next {
                    var nr = 1
                    defer { a += UInt64(nr) * page }
                    let words = mm.memory.tables.entries(table)
                    let i = mm.geometry.tableIndex(a, .pte)
                    let w = words[i].load(ordering: .relaxed)
                    guard w != 0, layout.isPresent(w, .pte), !layout.isSpecialPTE(w),
                          let pg = mm.memory.page(layout.pfn(w)), !pg.folio.isZero, !pg.folio.test(.zoneDevice) else { continue }
                    let f = pg.folio
                    if f.isLarge {
                        // madvise_folio_pte_batch(): the PTEs from here that
                        // map the folio's next pages, young, dirty, soft-dirty
                        // and write bits merged, up to the folio's end or `next`.
                        let most = min(f.pageCount - pg.index, Int((next - a) / page))
                        while nr < most {
                            let x = words[i + nr].load(ordering: .relaxed)
                            guard x != 0, layout.isPresent(x, .pte), layout.pfn(x) == pg.pfn + UInt64(nr),
                                  x & layout.uffdWP == w & layout.uffdWP else { break }
                            nr += 1
                        }
                        if nr < f.pageCount {
                            if f.maybeMappedShared || (mode.anonOnly && !f.isAnon) || !f.tryLock() { continue }
                            mm.memory.tables.lock(table).unlock()
                            locked = false
                            let split = mm.splitLockedFolio(f, mappedAt: a - UInt64(pg.index) * page)
                            f.unlock()
                            guard let again = access.lockPTETable(p.slot) else { break }
                            table = again
                            locked = true
                            if split { nr = 0 }
                            continue
                        }
                    }
                    // A folio off the LRU, or mapped elsewhere too, is left.
                    guard f.test(.lru), f.mapcount == f.pageCount, !(mode.anonOnly && !f.isAnon) else { continue }
                    if !mode.pageout {
                        var young = false
                        for k in 0..<nr where layout.ptepGet(words, i + k) & layout.young != 0 { young = true }
                        if young { mm.clearYoungDirtyPTEs(table, i, count: nr, young: true, dirty: false) }
                        // clear_young_dirty_ptes() and tlb_remove_tlb_entries()
                        if young { walk.privateData.tlb.adjust(a, a + UInt64(nr) * page) }
                    }
                    advise(f, firstPageAt: a - UInt64(pg.index) * page, &list)
                }
                if locked { mm.memory.tables.lock(table).unlock() }
                reclaim(list, &walk.privateData)
                return 0
            },
            walkLock: .read)
        var data = Private()
        _ = try walkPageRangeVMA(mm, vma, start, end, ops: ops, private: &data)
        data.tlb.flush(.finish)   // tlb_finish_mmu()
        result.flushes += data.tlb.flushes
        result.reclaimedPages += data.result.reclaimedPages
        result.activatedPages += data.result.activatedPages
        result.keptPages += data.result.keptPages
    }
}
