import MemoryModel

// mlock as mm/mlock.c writes it: `mlock_walk_ops` with one `pmd_entry`
// that handles a THP under the PMD lock, or locks the PTE table and steps
// through it a folio at a time (`folio_mlock_step()`), and
// `allow_mlock_munlock()` deciding for large folios.
extension MlockWalk {
    static func callback(_ mm: AddressSpace, _ vma: VMA, lock: Bool) throws(PageWalkError) {
        let access = LevelAccess(mm)
        let layout = mm.geometry.layout
        func apply(_ f: Folio) { if lock { f.mlock() } else { f.munlock() } }
        let ops = MMWalkOps<Void>(
            pmdEntry: { p, addr, next, walk in
                walk.action = .continue
                let pmd = p.entry
                if !p.hasTrivialEntries && pmd.isLeaf {
                    let l = mm.lock(forEntriesOf: p.slot.table, level: .pmd)
                    l.lock()
                    defer { l.unlock() }
                    if pmd.isPresent, let f = mm.memory.folio(containing: pmd.pfn), !f.isZero { apply(f) }
                    return 0
                }
                guard let table = access.lockPTETable(p.slot) else { return 0 }
                defer { mm.memory.tables.lock(table).unlock() }
                let words = mm.memory.tables.entries(table)
                var a = addr
                while a < next {
                    let i = mm.geometry.tableIndex(a, .pte)
                    let w = words[i].load(ordering: .relaxed)
                    guard w != 0, layout.isPresent(w, .pte), !layout.isSpecialPTE(w),
                          let page = mm.memory.page(layout.pfn(w)), !page.folio.isZero else {
                        a += Geometry.pageSize
                        continue
                    }
                    let f = page.folio
                    // folio_mlock_step(): the PTEs from here mapping the
                    // folio's next pages, up to the folio's end or `next`.
                    var step = 1
                    let left = min(f.pageCount - page.index, Int((next - a) >> Geometry.pageShift))
                    while step < left, words[i + step].load(ordering: .relaxed) & layout.pfnMask == (w & layout.pfnMask) + UInt64(step) << Geometry.pageShift,
                          layout.isPresent(words[i + step].load(ordering: .relaxed), .pte) {
                        step += 1
                    }
                    // allow_mlock_munlock(): munlock always; a large folio is
                    // mlocked only when it lies in the range and all of it is
                    // mapped here.
                    let folioStart = a - UInt64(page.index) << Geometry.pageShift
                    let inside = folioStart >= vma.start && folioStart + f.size <= vma.end
                    if !lock || !f.isLarge || (inside && step == f.pageCount) { apply(f) }
                    a += UInt64(step) << Geometry.pageShift
                }
                return 0
            },
            walkLock: .writeVerify)
        var none: Void = ()
        _ = try walkPageRangeVMA(mm, vma, vma.start, vma.end, ops: ops, private: &none)
    }
}
