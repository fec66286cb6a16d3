import MemoryModel

/// What one MADV_COLD or MADV_PAGEOUT call did.
public struct LRUAdviceResult: Sendable, Hashable {
    /// The TLB flushes gathered, one `mmu_gather` per VMA: ranges whose
    /// young bits MADV_COLD cleared (MADV_PAGEOUT gathers none itself; its
    /// unmapping is reclaim's).
    public internal(set) var flushes: [TLBFlush] = []
    /// Pages of the folios handed to reclaim that were unmapped and freed.
    public internal(set) var reclaimedPages = 0
    /// Pages of those put back active (no swap, still mapped, dirty file).
    public internal(set) var activatedPages = 0
    /// Pages of those put back as they were.
    public internal(set) var keptPages = 0

    public init() {}

    mutating func count(_ outcome: AddressSpace.ReclaimOutcome, pages: Int) {
        switch outcome {
        case .reclaimed: reclaimedPages += pages
        case .activated: activatedPages += pages
        case .kept: keptPages += pages
        }
    }
}

/// Models `madvise(MADV_COLD)`: the folios mapped in `[start, end)` that
/// this process alone maps are made old and moved to the inactive list
/// (`folio_deactivate()`), their referenced bits cleared. A THP the range
/// covers only in part is split first, as is a PTE-mapped large folio the
/// range covers in part; shared folios are left alone. Refused (-EINVAL)
/// for VM_LOCKED, VM_PFNMAP and hugetlb VMAs (`can_madv_lru_vma()`), VMA by
/// VMA: the VMAs before the refused one keep the advice. Runs under the
/// mmap read lock, on `walker`: the update walk, or `cold_walk_ops` as
/// mm/madvise.c writes it.
@discardableResult
public func madviseCold(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64,
                        walker: WalkerKind = .range) throws(MadviseError) -> LRUAdviceResult {
    try ColdWalk.madvise(mm, start, end, pageout: false, mayPageOutFiles: true, walker: walker)
}

/// Models `madvise(MADV_PAGEOUT)`: as MADV_COLD picks folios, but each is
/// isolated from the LRU and reclaimed (`reclaim_pages()`): anonymous
/// folios go to swap when a swap device has room (and are activated when
/// none has), clean file folios leave the page cache, dirty ones are
/// unmapped and activated. The reclaim choices are in
/// `AddressSpace.reclaimIsolatedFolio`.
///
/// `mayPageOutFiles` is `can_do_file_pageout()`: the caller owns the file
/// or may open it for writing (true for root). Without it, page-cache
/// folios of a file VMA are skipped (`pageout_anon_only_filter`), and a
/// shared file VMA is skipped whole.
@discardableResult
public func madvisePageout(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64, mayPageOutFiles: Bool = true,
                           walker: WalkerKind = .range) throws(MadviseError) -> LRUAdviceResult {
    try ColdWalk.madvise(mm, start, end, pageout: true, mayPageOutFiles: mayPageOutFiles, walker: walker)
}

/// The users of `cold_walk_ops` on both walkers.
enum ColdWalk {
    /// What one VMA's walk does: `madvise_walk_private.pageout` and the
    /// `pageout_anon_only_filter` the handler derives.
    struct Mode {
        let pageout: Bool
        let anonOnly: Bool
    }

    /// `can_madv_lru_vma()`.
    static func canAdviseLRU(_ vma: VMA) -> Bool {
        !vma.flags.contains(.locked) && !vma.isPFNMap && !vma.isHugetlb
    }

    static func madvise(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64, pageout: Bool, mayPageOutFiles: Bool,
                        walker: WalkerKind) throws(MadviseError) -> LRUAdviceResult {
        var result = LRUAdviceResult()
        try GuardRegionOps.madvise(mm, start, end) { (vma, s, e) throws(MadviseError) in
            guard canAdviseLRU(vma) else {
                throw .invalidVMA(address: vma.start, reason: "MADV_COLD and MADV_PAGEOUT need a VMA that is not locked, PFN-mapped or hugetlb")
            }
            // madvise_pageout(): a shared file mapping of a file the caller
            // could not write is left alone (a side channel otherwise).
            if pageout && !vma.isAnonymous && !mayPageOutFiles && vma.flags.contains(.mayShare) { return }
            let mode = Mode(pageout: pageout, anonOnly: pageout && !vma.isAnonymous && !mayPageOutFiles)
            do throws(PageWalkError) {
                switch walker {
                case .range: try range(mm, vma, s, e, mode, &result)
                case .callback: try callback(mm, vma, s, e, mode, &result)
                }
            } catch {
                throw .walk(error)
            }
        }
        return result
    }

    /// The range version: one update walk over the VMA's part of the range.
    ///
    /// Batches follow `folio_pte_batch_flags(FPB_MERGE_YOUNG_DIRTY)`:
    /// young, dirty, soft-dirty and writable bits may differ inside one,
    /// uffd-wp may not. Folios isolated for reclaim are reclaimed with the
    /// table lock dropped when the walk leaves their PMD range (the kernel
    /// reclaims at the end of each `pmd_entry` call), the last ones after
    /// the walk.
    static func range(_ mm: AddressSpace, _ vma: VMA, _ start: UInt64, _ end: UInt64, _ mode: Mode,
                      _ result: inout LRUAdviceResult) throws(PageWalkError) {
        var state = RangeState()
        try withUnsafeMutablePointer(to: &state) { (p) throws(PageWalkError) in
            try range(mm, vma, start, end, mode, p)
        }
        result.flushes += state.outcome.flushes
        result.reclaimedPages += state.outcome.reclaimedPages
        result.activatedPages += state.outcome.activatedPages
        result.keptPages += state.outcome.keptPages
    }

    /// What the range version's loop body keeps between entries. It lives
    /// behind a pointer: variables captured by the `.unlockAndRetry`
    /// closure would be boxed, with an exclusivity check at every access.
    struct RangeState {
        /// Folios isolated for reclaim, with the address of their first page,
        /// and the PMD range they came from.
        var pending: [(Folio, UInt64)] = []
        var pendingSpan: UInt64 = 0
        var outcome = LRUAdviceResult()
        /// Where the body last asked for a split: met again there with
        /// `isRetry`, a folio still large means the split failed.
        var splitAt: UInt64?
    }

    static func range(_ mm: AddressSpace, _ vma: VMA, _ start: UInt64, _ end: UInt64, _ mode: Mode,
                      _ st: UnsafeMutablePointer<RangeState>) throws(PageWalkError) {
        let pmdSize = mm.geometry.entrySize(.pmd)
        func reclaim(_ list: [(Folio, UInt64)], _ st: UnsafeMutablePointer<RangeState>) {
            for (f, a) in list {
                let pages = f.pageCount   // read before reclaim frees it
                st.pointee.outcome.count(mm.reclaimIsolatedFolio(f, at: a, in: vma), pages: pages)
            }
        }
        // The folio's referenced state goes, then the LRU action: made
        // inactive, or isolated for reclaim (an unevictable one goes back).
        func advise(_ e: borrowing UpdateEntry, _ folio: Folio, firstPageAt address: UInt64) throws(PageWalkError) {
            // clear_young_dirty_ptes() only when some PTE of the batch is young.
            if !mode.pageout && e.entry.entryAttributesContain(.young) { try e.clearYoungDirty(young: true, dirty: false) }
            try e.clearFolioReferenced()
            guard mode.pageout else {
                try e.deactivateFolio()
                return
            }
            guard let isolated = try e.isolateFolio() else { return }
            if isolated.test(.unevictable) {
                mm.putBackOnLRU(isolated)
            } else {
                st.pointee.pending.append((isolated, address))
                st.pointee.pendingSpan = e.start / pmdSize
            }
        }
        let options = UpdateWalkOptions(respect: [.uffdWP])
        let tlb = try mm.withUpdateWalk(start..<end, lock: .mmapRead, options: options) { (walk) throws(PageWalkError) -> MMUGather in
            try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in
                if !st.pointee.pending.isEmpty && e.start / pmdSize != st.pointee.pendingSpan {
                    let list = st.pointee.pending
                    st.pointee.pending = []
                    return .unlockAndRetry { reclaim(list, st) }
                }
                // vm_normal_folio(): the zero pages, PFN maps and device
                // memory have none to advise. (The folio's flags are read
                // once; whether it is shared only where a rule asks.)
                guard case .folio(let folio, let first, let count) = e.content else { return .next }
                let flags = folio.flags
                guard flags.isDisjoint(with: [.zeroPage, .hugeZeroPage, .zoneDevice]) else { return .next }
                let pages = folio.pageCount
                switch e.level.tableLevel {
                case .pmd:
                    if folio.maybeMappedShared || (mode.anonOnly && !flags.contains(.anon)) { return .next }
                    if e.end - e.start != pmdSize {
                        // The range covers the THP in part: split it, then
                        // walk its PTEs; a failed split leaves the PMD.
                        if e.isRetry && st.pointee.splitAt == e.start { return .next }
                        st.pointee.splitAt = e.start
                        return .splitFolio
                    }
                    try advise(e, folio, firstPageAt: e.start)
                case .pte:
                    if pages > 1 && !(first == 0 && count == pages) {
                        if folio.maybeMappedShared || (mode.anonOnly && !flags.contains(.anon)) { return .next }
                        if e.isRetry && st.pointee.splitAt == e.start { return .next }
                        st.pointee.splitAt = e.start
                        return .splitFolio
                    }
                    // Off the LRU (isolated, in a per-CPU batch) or mapped
                    // elsewhere too: left alone.
                    guard flags.contains(.lru), folio.mapcount == pages else { return .next }
                    if mode.anonOnly && !flags.contains(.anon) { return .next }
                    try advise(e, folio, firstPageAt: e.start - UInt64(first) << Geometry.pageShift)
                default:
                    break
                }
                return .next
            }
            return walk.tlb
        }
        reclaim(st.pointee.pending, st)
        st.pointee.pending = []
        st.pointee.outcome.flushes = tlb.flushes
    }
}
