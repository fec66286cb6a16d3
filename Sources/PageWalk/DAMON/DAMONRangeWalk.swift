import MemoryModel

extension DAMONVaddr {
    /// One page-table entry at a time, folios looked up, PFN maps skipped
    /// (`walk_page_range()` without `test_walk`): the kernel's handlers
    /// act on single PTEs.
    static let updateOptions = UpdateWalkOptions(batching: false)

    /// The PFN an entry maps at its start (`pte_pfn()`, `pmd_pfn()` of
    /// the head).
    static func entryPFN(_ e: WalkEntry, _ layout: EntryLayout) -> UInt64 { layout.pfn(e.raw) }

    /// A present entry of a PMD or PTE table, outside hugetlb.
    static func isPresentLeaf(_ e: WalkEntry) -> Bool {
        switch e.content {
        case .folio(let f, _, _): return !f.isHugetlb
        case .pfn: return true
        default: return false
        }
    }

    /// `mkold` on the range walker: an update walk of the page; a present
    /// PTE or PMD leaf whose folio `damon_get_folio()` finds is made old,
    /// and a present hugetlb entry (`clearHugetlbYoung()`).
    static func rangeMkold(_ mm: AddressSpace, _ page: UInt64) throws(PageWalkError) -> Bool {
        let layout = mm.geometry.layout
        var marked = false
        try mm.withUpdateWalk(page..<page + Geometry.pageSize, lock: .mmapRead, options: updateOptions) { (walk) throws(PageWalkError) -> Void in
            try walk.forEach { (u) throws(PageWalkError) -> UpdateStep in
                if case .folio(let f, _, _) = u.entry.content, f.isHugetlb {
                    markOld(f, wasYoung: try u.clearHugetlbYoung())
                    marked = true
                    return .next
                }
                guard isPresentLeaf(u.entry), let f = damonGetFolio(mm.memory, entryPFN(u.entry, layout)) else { return .next }
                markOld(f, wasYoung: try u.testAndClearYoung())
                marked = true
                return .next
            }
        }
        return marked
    }

    /// `young` on the range walker: a read walk of the page.
    static func rangeYoung(_ mm: AddressSpace, _ page: UInt64) throws(PageWalkError) -> YoungCheck {
        let layout = mm.geometry.layout
        return try mm.withRangeWalk(page..<page + Geometry.pageSize) { walk -> YoungCheck in
            var check = YoungCheck()
            for e in walk {
                let young = e.entryAttributesContain(.young)
                if case .folio(let f, _, _) = e.content, f.isHugetlb {
                    // pfn_folio(): no LRU test for hugetlb.
                    check.note(entryYoung: young, f, size: f.size)
                    continue
                }
                guard isPresentLeaf(e), let f = damonGetFolio(mm.memory, entryPFN(e, layout)) else { continue }
                check.note(entryYoung: young, f, size: e.level.tableLevel == .pmd ? mm.geometry.entrySize(.pmd) : f.size)
            }
            return check
        }
    }

    /// `stat` on the range walker: an update walk of the region, one entry
    /// at a time. As the kernel's PTE loop, after a folio is judged the
    /// walk steps over as many pages as the folio has, within the PMD's
    /// range; the folio counted last is passed over.
    static func rangeStat(_ mm: AddressSpace, _ range: Range<UInt64>, _ scheme: inout DAMOSScheme) throws(PageWalkError) -> UInt64 {
        let layout = mm.geometry.layout
        let pmdSize = mm.geometry.entrySize(.pmd)
        var passed: UInt64 = 0
        var skipUntil: UInt64 = 0
        var s = scheme
        try mm.withUpdateWalk(range, lock: .mmapRead, options: updateOptions) { (walk) throws(PageWalkError) -> Void in
            try walk.forEach { (u) throws(PageWalkError) -> UpdateStep in
                let e = u.entry
                guard e.start >= skipUntil, isPresentLeaf(e), case .folio(let f, _, _) = e.content,
                      !f.test(.hugeZeroPage), !s.isLastApplied(f) else { return .next }
                let v = filterVerdict(s, f, entryYoung: e.entryAttributesContain(.young))
                if v.makeOld, let g = damonGetFolio(mm.memory, entryPFN(e, layout)) {
                    markOld(g, wasYoung: try u.testAndClearYoung())
                }
                if !v.out { passed += f.size }
                s.lastApplied = f
                if e.level.tableLevel == .pte {
                    let pmdEnd = (e.start & ~(pmdSize - 1)) + pmdSize
                    skipUntil = Swift.min(e.start + UInt64(f.pageCount) * Geometry.pageSize, pmdEnd)
                }
                return .next
            }
        }
        scheme = s
        return passed
    }
}
