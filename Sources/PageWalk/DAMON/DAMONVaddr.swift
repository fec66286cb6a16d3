import MemoryModel

/// Models the page-table walks of DAMON's virtual-address operations in
/// Linux 6.18 (mm/damon/vaddr.c, with mm/damon/ops-common.c):
///
/// - `mkold` (`damon_va_mkold()`, `damon_mkold_ops`): the entry mapping
///   one sampled address is made old (`ptep_clear_young_notify()`,
///   `pmdp_clear_young_notify()`), its folio marked young when it was
///   young, and idle (`folio_set_idle()`), so a later check can tell
///   whether the page was accessed meanwhile;
/// - `young` (`damon_va_young()`, `damon_young_ops`): whether the entry at
///   the address is young or its folio no longer idle, and the folio's
///   size (so nearby samples in the same folio reuse the answer);
/// - `stat` (`damos_va_stat()`, the stat walk ops): over a region, the
///   bytes of each folio that passes the scheme's filters, each folio
///   counted once (`last_applied`); the young filter makes what it tests
///   old.
///
/// Folios come from `damon_get_folio()` for the access checks (an online
/// page on an LRU list, referenced for the check) and from
/// `vm_normal_folio()` for the stat walk. The access checks run over
/// `[address, address + 1)`; the model walks the page holding the address.
/// Each walk holds the mmap read lock (`PGWALK_RDLOCK`). A PMD migration
/// entry is passed over; a PTE table gone between the PMD check and its
/// lock ends the handler without a retry, as since the 6.17 fix.
///
/// Hugetlb pages are made old and checked too (`damon_mkold_hugetlb_entry()`,
/// `damon_young_hugetlb_entry()`); the range version makes them old with
/// the update walk's one hugetlb write, `clearHugetlbYoung()`, which clears
/// the young bit of each entry of the page where the kernel writes the
/// gathered entry back to all of them. Not modelled: the MMU notifier's
/// secondary access bits (KVM).
///
/// `walker`: `.callback` runs the operations through `walkPageRange`;
/// `.range` is an update walk (`mkold`, `stat`) or a read walk (`young`).
public enum DAMONVaddr {
    /// What `damon_va_young()` found.
    public struct YoungCheck: Equatable, Sendable {
        /// Accessed since the last `mkold`.
        public var young = false
        /// The size of the folio mapped there (`*folio_sz`), nil when no
        /// folio was found (the caller keeps its previous value).
        public var folioSize: UInt64?
        public init(young: Bool = false, folioSize: UInt64? = nil) { self.young = young; self.folioSize = folioSize }

        /// One entry found at the address: accessed when the entry is young
        /// or `folio` not idle; `size` is what the handler reports for it.
        mutating func note(entryYoung: Bool, _ folio: Folio, size: UInt64) {
            if isAccessed(entryYoung: entryYoung, folio) { young = true }
            folioSize = size
        }
    }

    /// Models `damon_va_mkold(mm, address)`. Returns whether a folio was
    /// marked idle.
    @discardableResult
    public static func mkold(_ mm: AddressSpace, _ address: UInt64, walker: WalkerKind = .range) throws(PageWalkError) -> Bool {
        let page = address & ~Geometry.pageOffsetMask
        switch walker {
        case .range: return try rangeMkold(mm, page)
        case .callback: return try callbackMkold(mm, page)
        }
    }

    /// Models `damon_va_young(mm, address, &folio_sz)`.
    public static func young(_ mm: AddressSpace, _ address: UInt64, walker: WalkerKind = .range) throws(PageWalkError) -> YoungCheck {
        let page = address & ~Geometry.pageOffsetMask
        switch walker {
        case .range: return try rangeYoung(mm, page)
        case .callback: return try callbackYoung(mm, page)
        }
    }

    /// Models `damos_va_stat(target, region, scheme, &sz_filter_passed)`:
    /// the bytes of folios in `range` that pass `scheme`'s filters, added
    /// once per folio; nothing is walked when the scheme has no filters.
    public static func stat(_ mm: AddressSpace, _ range: Range<UInt64>, scheme: inout DAMOSScheme,
                            walker: WalkerKind = .range) throws(PageWalkError) -> UInt64 {
        guard !scheme.filters.isEmpty else { return 0 }
        switch walker {
        case .range: return try rangeStat(mm, range, &scheme)
        case .callback: return try callbackStat(mm, range, &scheme)
        }
    }

    // MARK: Shared rules

    /// `damon_get_folio()`: the folio of `pfn` when its page is in the
    /// memmap and the folio is on an LRU list.
    static func damonGetFolio(_ memory: PhysicalMemory, _ pfn: UInt64) -> Folio? {
        guard let page = memory.page(pfn), page.folio.test(.lru) else { return nil }
        return page.folio
    }

    /// The end of `damon_ptep_mkold()` / `damon_pmdp_mkold()`: the folio
    /// young when the entry was, and idle.
    static func markOld(_ folio: Folio, wasYoung: Bool) {
        if wasYoung { folio.markYoung() }
        folio.markIdle()
    }

    /// The access test of `damon_young_pmd_entry()` and the young filter:
    /// a young entry, or a folio no longer idle.
    static func isAccessed(entryYoung: Bool, _ folio: Folio) -> Bool { entryYoung || !folio.test(.idle) }

    /// `damos_va_filter_out()`: whether `folio` is filtered out, and
    /// whether the young filter found it accessed, in which case the
    /// caller makes the entry old (`damon_ptep_mkold()`,
    /// `damon_pmdp_mkold()`) as the filter does. A later young filter of
    /// the same scheme sees the entry old and the folio idle.
    static func filterVerdict(_ scheme: DAMOSScheme, _ folio: Folio, entryYoung: Bool) -> (out: Bool, makeOld: Bool) {
        var makeOld = false
        for filter in scheme.filters {
            let test: Bool
            switch filter.kind {
            case .anon: test = folio.isAnon
            case .active: test = folio.test(.active)
            case .hugepageSize(let r): test = r.contains(folio.size)
            case .young:
                test = !makeOld && isAccessed(entryYoung: entryYoung, folio)
                if test { makeOld = true }
            }
            if test == filter.matching { return (!filter.allow, makeOld) }
        }
        return (scheme.defaultReject, makeOld)
    }
}
