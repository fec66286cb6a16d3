import MemoryModel

// Folio actions under the table lock, with the kernel's rules for large
// folios that the entry maps only in part, or that are shared.
extension UpdateEntry {
    /// The folio, whether the entry maps all of it, and whether it may be
    /// mapped by another process (`folio_maybe_mapped_shared()`).
    public var folioMapping: (folio: Folio, whole: Bool, maybeShared: Bool)? {
        guard case .folio(let f, let first, let count) = entry.content, !f.isZero else { return nil }
        let whole = first == 0 && count == f.pageCount
        return (f, whole, f.maybeMappedShared)
    }

    @inline(__always)
    func folioForAction(_ what: String) throws(PageWalkError) -> Folio? {
        try checkHeld()
        if case .hugetlb = target {
            throw .misuse("\(what) on the hugetlb entry at 0x\(String(entry.start, radix: 16)): hugetlb folios are not on the LRU")
        }
        if case .present = entry.content {
            throw .misuse("\(what) on the unresolved run at 0x\(String(entry.start, radix: 16)): it needs one folio, and the walk was opened with lookUpFolios off")
        }
        guard case .folio(let f, _, _) = entry.content, !f.isZero else { return nil }
        return f
    }

    /// Runs `body` for each folio the entry maps, with the pages of it the
    /// entry maps (`first ..< first + count`) and whether that is all of
    /// it. A `.present` run is resolved page by page, as the kernel's
    /// per-PTE handlers call `vm_normal_folio()`: consecutive pages of one
    /// large folio are met once.
    @inline(__always)
    func forEachFolio(_ what: String, _ body: (Folio, _ whole: Bool) -> Void) throws(PageWalkError) {
        try checkHeld()
        if case .hugetlb = target {
            throw .misuse("\(what) on the hugetlb entry at 0x\(String(entry.start, radix: 16)): hugetlb folios are not on the LRU")
        }
        switch entry.content {
        case .folio(let f, let first, let count):
            if !f.isZero { body(f, first == 0 && count == f.pageCount) }
        case .present:
            guard !entry.entryAttributesContain(.special), case .ptes(_, let first, let words) = target else { return }
            let l = layout
            var cursor = MemmapCursor(mm.memory)
            var i = first
            let end = first &+ entry.count
            while i < end {
                let pfn = l.pfn(words[i].load(ordering: .relaxed))
                guard let (f, large) = cursor.folioAndSize(containing: pfn) else { i &+= 1; continue }
                var n = 1
                if large {
                    // The following PTEs that map the next pages of this folio.
                    let left = f.pageCount - Int(pfn &- f.pfn)
                    while n < left, i &+ n < end, l.pfn(words[i &+ n].load(ordering: .relaxed)) == pfn &+ UInt64(n) { n &+= 1 }
                }
                if !f.isZero { body(f, !large || (pfn == f.pfn && n == f.pageCount)) }
                i &+= n
            }
        default:
            return
        }
    }

    /// `folio_isolate_lru()`: the folio off its LRU list with a reference
    /// for the caller, who must give it back with
    /// `UpdateWalk.putBack(_:)` (or keep it for reclaim); nil when it is
    /// not on a list or the entry maps no folio.
    public func isolateFolio() throws(PageWalkError) -> Folio? {
        guard let f = try folioForAction("isolateFolio"), mm.isolateFromLRU(f) else { return nil }
        return f
    }

    /// `folio_deactivate()` (MADV_COLD): to the inactive list, not
    /// referenced; each folio of a `.present` run.
    public func deactivateFolio() throws(PageWalkError) {
        try forEachFolio("deactivateFolio") { f, _ in f.deactivate() }
    }

    /// `folio_clear_referenced()` and `folio_test_clear_young()`; each folio
    /// of a `.present` run.
    public func clearFolioReferenced() throws(PageWalkError) {
        try forEachFolio("clearFolioReferenced") { f, _ in f.clearReferenced() }
    }

    /// MADV_FREE's folio step: the folio made clean and lazily freeable
    /// (`folio_clear_dirty()`, `folio_mark_lazyfree()`). Refused (false) for
    /// a folio the entry maps in part or that may be shared, and for one in
    /// the swap cache, as the kernel skips them.
    @discardableResult
    public func markFolioLazyFree() throws(PageWalkError) -> Bool {
        guard try folioForAction("markFolioLazyFree") != nil, let (f, whole, shared) = folioMapping,
              f.isAnon, whole, !shared, !f.isKSM, !f.test(.swapCache) else { return false }
        f.clearDirty()
        f.markLazyFree()
        return true
    }

    /// `mlock_folio()` as `mlock_pte_range()` applies it: a small folio
    /// always; a large one only when this entry maps all of it inside the
    /// VMA (`allow_mlock_munlock()`): a THP locked in part stays evictable.
    /// Returns whether a folio was mlocked (each folio of a `.present` run
    /// by the same rule).
    @discardableResult
    public func mlockFolio() throws(PageWalkError) -> Bool {
        var any = false
        try forEachFolio("mlockFolio") { f, whole in
            guard whole else { return }
            f.mlock()
            any = true
        }
        return any
    }

    /// `munlock_folio()`: always allowed.
    public func munlockFolio() throws(PageWalkError) {
        try forEachFolio("munlockFolio") { f, _ in f.munlock() }
    }
}

extension Folio {
    /// `folio_maybe_mapped_shared()`: mapped more than once by a PMD, or
    /// by more PTEs than it has pages (with a PMD mapping, by any PTE as
    /// well). A folio mapped in part by two processes can pass for
    /// exclusive here, where the kernel's per-mm tracking says shared.
    var maybeMappedShared: Bool {
        entireMapcount > 1 || mapcount > (entireMapcount > 0 ? 1 : pageCount)
    }
}

extension UpdateWalk {
    /// `folio_putback_lru()` for a folio `isolateFolio()` returned.
    public func putBack(_ folio: Folio) { mm.putBackOnLRU(folio) }
}
