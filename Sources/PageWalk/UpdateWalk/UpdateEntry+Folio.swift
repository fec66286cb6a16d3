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
        guard case .folio(let f, _, _) = entry.content, !f.isZero else { return nil }
        return f
    }

    /// Whether the entry maps every page of its folio.
    var mapsWholeFolio: Bool {
        guard case .folio(let f, let first, let count) = entry.content else { return false }
        return first == 0 && count == f.pageCount
    }

    /// `folio_isolate_lru()`: the folio off its LRU list with a reference
    /// for the caller, who must give it back with
    /// `UpdateWalk.putBack(_:)` (or keep it for reclaim); nil when it is
    /// not on a list or the entry maps no folio.
    public func isolateFolio() throws(PageWalkError) -> Folio? {
        guard let f = try folioForAction("isolateFolio"), mm.isolateFromLRU(f) else { return nil }
        return f
    }

    /// `folio_deactivate()` (MADV_COLD): to the inactive list, not referenced.
    public func deactivateFolio() throws(PageWalkError) {
        if let f = try folioForAction("deactivateFolio") { f.deactivate() }
    }

    /// `folio_clear_referenced()` and `folio_test_clear_young()`.
    public func clearFolioReferenced() throws(PageWalkError) {
        if let f = try folioForAction("clearFolioReferenced") { f.clearReferenced() }
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
    /// Returns whether the folio was mlocked.
    @discardableResult
    public func mlockFolio() throws(PageWalkError) -> Bool {
        guard let f = try folioForAction("mlockFolio") else { return false }
        guard !f.isLarge || mapsWholeFolio else { return false }
        f.mlock()
        return true
    }

    /// `munlock_folio()`: always allowed.
    public func munlockFolio() throws(PageWalkError) {
        if let f = try folioForAction("munlockFolio") { f.munlock() }
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
