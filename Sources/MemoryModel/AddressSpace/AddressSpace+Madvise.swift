import Synchronization

extension AddressSpace {
    /// `MADV_FREE` up to its walk: the range's VMAs checked (private
    /// anonymous, not locked, not hugetlb: EINVAL otherwise), then
    /// `freeRange` run on each VMA's part, the walker user (PageWalk's
    /// MADV_FREE walk on either walker). A range inside one VMA runs under
    /// that VMA's lock alone (6.16 and later), else under the mmap read lock.
    package func madviseFree(_ start: UInt64, _ end: UInt64,
                             freeRange: (VMA, UInt64, UInt64) throws(ModelError) -> Void) throws(ModelError) {
        try checkAlive()
        try withMadviseVMAs(start, end, operation: "madv_free") { (vs) throws(ModelError) in
            for vma in vs {
                guard vma.isAnonymous, !vma.flags.contains(.locked), !vma.isHugetlb else {
                    throw .wrongVMAKind(address: vma.start, reason: "MADV_FREE applies to private anonymous, unlocked memory")
                }
                try freeRange(vma, max(start, vma.start), min(end, vma.end))
            }
        }
    }

    /// KSM merging (`ksmd` on a VM_MERGEABLE VMA): the exclusive anonymous
    /// order-0 pages of the range, in address order, are merged into
    /// `distinct` KSM pages (page k gets content `contentBase + k % distinct`;
    /// equal contents share one KSM page across all processes).
    public func ksmMerge(_ start: UInt64, _ end: UInt64, distinct: Int, contentBase: Int = 0) throws(ModelError) {
        guard distinct >= 1 else { throw .invalidArgument(name: "distinct", reason: "must be at least 1") }
        try checkAlive()
        try withMmapReadLock { (_) throws(ModelError) in
            var k = 0
            for vma in try coveredVMAs(start, end, operation: "ksm") {
                guard vma.flags.contains(.mergeable), vma.isAnonymous else {
                    throw .wrongVMAKind(address: vma.start, reason: "KSM needs a VM_MERGEABLE private anonymous VMA")
                }
                try forEachPTE(max(start, vma.start), min(end, vma.end), pmd: { _, _, _ in .skip }) { (t, i, _) throws(ModelError) in
                    let w = arena.entries(t)[i].load(ordering: .relaxed)
                    guard layout.isPresent(w, .pte), !layout.isSpecialPTE(w), let page = memory.page(layout.pfn(w)),
                          page.folio.isAnon, !page.folio.isLarge, !page.folio.isKSM, page.folio.mapcount == 1 else { return }
                    let id = contentBase + k % distinct
                    k += 1
                    let clean = layout.markClean(layout.writeProtect(w))
                    if let stable = memory.ksmStableFolio(id) {
                        stable.addPTEMappings(first: 0, count: 1, delta: 1)
                        stable.addRef(1)
                        storePTE(t, i, (clean & ~layout.pfnMask) | (stable.pfn << Geometry.pageShift))
                        page.folio.addPTEMappings(first: 0, count: 1, delta: -1)
                        memory.put(page.folio)
                    } else {
                        let f = page.folio
                        f.setFlags([.ksm, .dirty], true)
                        f.setPageFlags(0, .anonExclusive, false)
                        storePTE(t, i, clean)
                        memory.setKSMStableFolio(id, f)
                    }
                }
            }
        }
    }

    /// Splits a large folio mapped only by PTEs into order-0 folios
    /// (`split_folio()`); PMD mappings must have been split first.
    package func splitFolio(_ folio: Folio) throws(ModelError) {
        guard folio.isLarge else { return }
        guard !folio.isHugetlb, folio.entireMapcount == 0 else {
            throw .unsupported("splitting a folio that is PMD-mapped or hugetlb")
        }
        let flags = folio.flags.subtracting(.perPage)
        let cacheRefs = folio.isAnon ? (folio.test(.swapCache) ? 1 : 0) : 1
        let node = folio.node, n = folio.pageCount
        for k in 0..<n {
            let r = folio.head + k * RecordWord.wordsPerRecordInline
            let own = PageFlags(rawValue: r[RecordWord.flags].load(ordering: .relaxed)).intersection(.perPage)
            let mapcount = Int(Int32(bitPattern: r[RecordWord.mapcount].load(ordering: .relaxed)))
            // The caller holds the lock of the head only: the new folios
            // after it start unlocked, as __folio_split() unlocks them.
            let inherited = k == 0 ? flags : flags.subtracting(.locked)
            r[RecordWord.flags].store(inherited.union(own).union(.allocated).rawValue, ordering: .relaxed)
            r[RecordWord.counter].store(UInt32(mapcount + cacheRefs), ordering: .relaxed)
            r[RecordWord.compound].store(RecordWord.compound(order: 0, node: node, tailOffset: 0), ordering: .relaxed)
        }
        memory.noteSplit(order: folio.order, into: n)
        // Pages nothing maps or caches any more are freed, not leaked.
        for k in 0..<n {
            let page = memory.folio(containing: folio.pfn + UInt64(k))!
            if page.refcount == 0 { memory.freeFolio(page) }
        }
    }

    /// Memory failure on the page mapped at `address` (`memory_failure()`):
    /// the page is poisoned and every mapping of it becomes a hwpoison entry;
    /// a large folio is split first.
    public func poison(_ address: UInt64) throws(ModelError) {
        try checkAlive()
        try withMmapReadLock { (_) throws(ModelError) in
            guard let vma = vma(containing: address) else { throw .noVMA(address: address) }
            guard !vma.isHugetlb else { throw .unsupported("hwpoison of hugetlb pages") }
            let page4k = address & ~Geometry.pageOffsetMask
            if case .slot(let s)? = try? slot(page4k, at: .pmd, allocate: false), load(s) != 0,
               !layout.isTable(load(s), .pmd) {
                try splitHugePMD(at: s)
            }
            guard case .present(_, let raw, let pfn) = translate(page4k), !layout.isSpecialPTE(raw),
                  var page = memory.page(pfn) else {
                throw .invalidArgument(name: "address", reason: "\(hex(address)) maps no normal page")
            }
            if page.folio.isLarge {
                try unfoldContiguousMappings(of: page.folio, at: page4k - UInt64(page.index) << Geometry.pageShift)
                try splitFolio(page.folio)
                page = memory.page(pfn)!
            }
            let folio = page.folio
            folio.setPageFlags(0, .hwpoison, true)
            let walk = beginRmapWalk(folio)
            defer { walk.end() }
            folio.addRef(1)
            for mm in walk.spaces {
                try withPTEMapping(in: mm, page4k, pfn: pfn) { (t, i, w) throws(ModelError) in
                    mm.storePTE(t, i, try SoftLeafEntry(.hwpoison(pfn: pfn)).encode(mm.layout))
                    folio.addPTEMappings(first: 0, count: 1, delta: -1)
                    if let c = mm.rssCounter(for: folio) { mm.addRSS(c, -1) }
                    memory.put(folio)
                }
            }
            if !folio.isAnon, let file = vma.file {
                let index = vma.pageIndex(page4k)
                if file.cachedPFN(index) == pfn { file.setCached(index, nil); memory.put(folio) }
            }
            memory.put(folio)
        }
    }

    /// `/proc/PID/clear_refs`.
    public enum ClearRefs: Sendable, Hashable {
        /// 1: clear young bits and PG_referenced of all pages.
        case all
        /// 2 and 3: anonymous or file pages only.
        case anonymous, file
        /// 4: clear soft-dirty bits (write-protecting the PTEs) and VM_SOFTDIRTY.
        case softDirty
        /// 5: reset the peak RSS (VmHWM) to the RSS now; no walk.
        case hiwaterRSS
    }

    /// `UFFDIO_WRITEPROTECT` on a VM_UFFD_WP VMA: present entries get the
    /// uffd-wp bit and lose write; none entries get uffd-wp markers
    /// (`UFFD_FEATURE_WP_UNPOPULATED`); swap entries get the swap uffd-wp bit.
    /// PTE markers are left as they are (`change_pte_range()`): guard and
    /// poison markers never take the uffd-wp bit, and a uffd-wp marker has it.
    /// In an anonymous VMA a PMD leaf or PMD migration entry wholly inside
    /// the range keeps its huge mapping and takes the bit there
    /// (`change_huge_pmd()`; only VMAs that need PTE markers under a huge
    /// entry split it); a PMD the range covers in part is split.
    public func userfaultWriteProtect(_ start: UInt64, _ end: UInt64) throws(ModelError) {
        try checkAlive()
        try withMmapReadLock { (_) throws(ModelError) in
            for vma in try coveredVMAs(start, end, operation: "uffd_wp") {
                guard vma.flags.contains(.uffdWP), !vma.isHugetlb else {
                    throw .wrongVMAKind(address: vma.start, reason: "userfaultfd write-protect needs a VM_UFFD_WP, non-hugetlb VMA")
                }
                let marker = try SoftLeafEntry(.marker(.uffdWP)).encode(layout)
                let wholePMD = { (s: EntrySlot, a: UInt64, next: UInt64) throws(ModelError) -> PMDDecision in
                    guard vma.isAnonymous, a % AddressSpace.pmdSize == 0, next - a == AddressSpace.pmdSize else { return .split }
                    let l = self.lock(forEntriesOf: s.table, level: .pmd)
                    l.lock()
                    let w = self.load(s)
                    defer { l.unlock() }
                    if self.layout.isPresent(w, .pmd) { self.store(s, self.layout.writeProtect(w) | self.layout.uffdWP) }
                    else if w != 0 { self.store(s, try self.uffdWriteProtected(swapEntry: w)) }
                    return .skip
                }
                try forEachPTE(max(start, vma.start), min(end, vma.end), allocate: true, pmd: wholePMD) { (t, i, _) throws(ModelError) in
                    let w = arena.entries(t)[i].load(ordering: .relaxed)
                    if w == 0 { storePTE(t, i, marker); return }
                    if layout.isPresent(w, .pte) {
                        storePTE(t, i, layout.writeProtect(w) | layout.uffdWP)
                        return
                    }
                    if case .marker = SoftLeafEntry(decoding: w, layout: layout).leaf { return }
                    storePTE(t, i, try uffdWriteProtected(swapEntry: w))
                }
            }
        }
    }

    /// A swap-format entry (no marker) with the swap uffd-wp bit, a writable
    /// migration entry made readable first: finishing the migration must
    /// not map a writable uffd-wp page.
    private func uffdWriteProtected(swapEntry w: UInt64) throws(ModelError) -> UInt64 {
        guard var leaf = readableMigrationEntry(SoftLeafEntry(decoding: w, layout: layout)) else { return w | layout.swapUffdWP }
        leaf.bits.insert(.uffdWP)
        return try leaf.encode(layout)
    }

    /// Installs PFN mappings of `pfn …` over `[start, end)` of a VM_PFNMAP or
    /// VM_MIXEDMAP VMA (`remap_pfn_range()` / `vmf_insert_mixed()`): special
    /// PTEs with no folio behind them. Without `pfn`, the VMA's own first PFN.
    public func remapPFN(_ start: UInt64, _ end: UInt64, pfn: UInt64? = nil) throws(ModelError) {
        try checkAlive()
        try withMmapReadLock { (_) throws(ModelError) in
            for vma in try coveredVMAs(start, end, operation: "remap_pfn") {
                guard case .pfnRange(let vmaBase) = vma.backing else {
                    throw .wrongVMAKind(address: vma.start, reason: "remap_pfn needs a VM_PFNMAP or VM_MIXEDMAP VMA")
                }
                var attrs: LeafAttributes = [.user, .young, .special]
                if vma.flags.contains(.write) && vma.isShared { attrs.formUnion([.writable, .dirty]) }
                if vma.flags.contains(.exec) { attrs.insert(.executable) }
                if vma.flags.contains(.io) { attrs.insert(.uncached) }
                let base = pfn.map { $0 &- (max(start, vma.start) - vma.start) / Geometry.pageSize } ?? vmaBase
                guard base &+ (vma.end - vma.start) / Geometry.pageSize <= geometry.maxPFN else {
                    throw .invalidArgument(name: "pfn", reason: "range exceeds the architecture's frames")
                }
                try forEachPTE(max(start, vma.start), min(end, vma.end), allocate: true) { (t, i, a) throws(ModelError) in
                    guard arena.entries(t)[i].load(ordering: .relaxed) == 0 else { return }
                    storePTE(t, i, layout.leaf(pfn: base + (a - vma.start) / Geometry.pageSize, level: .pte, attrs))
                }
            }
        }
    }

    /// `is_valid_guard_vma()`: guard markers may live in `vma` unless it is
    /// VM_SPECIAL (IO, DONTEXPAND, PFNMAP, MIXEDMAP), hugetlb, or VM_LOCKED
    /// (removing markers is allowed there: `allowLocked`). The madvise
    /// behaviours themselves are the walker's (PageWalk's
    /// `madviseGuardInstall` / `madviseGuardRemove`), as in mm/madvise.c.
    package static func isValidGuardVMA(_ vma: VMA, allowLocked: Bool) -> Bool {
        vma.flags.intersection(AddressSpace.specialFlags).isEmpty && !vma.isHugetlb
            && (allowLocked || !vma.flags.contains(.locked))
    }

    /// Marks the VMAs of `[start, end)` VM_MAYBE_GUARD as
    /// `MADV_GUARD_INSTALL` does before installing markers in each: in
    /// address order, up to the first VMA that may not hold them (where the
    /// kernel stops with -EINVAL); gaps are stepped over. The flag is sticky
    /// and makes fork copy the VMA's page tables, so the markers survive
    /// into the child. Set atomically under the mmap read lock, as the
    /// kernel sets it (`vma_flag_set_atomic()`): faults under a VMA lock
    /// may read the flags meanwhile. An anonymous VMA gets its anon_vma.
    package func markMaybeGuard(_ start: UInt64, _ end: UInt64) throws(ModelError) {
        try checkAlive()
        withMmapReadLock { _ in
            for vma in vmas(intersecting: start, end) {
                guard Self.isValidGuardVMA(vma, allowLocked: false) else { return }
                vma.insertFlagsAtomically(.maybeGuard)
                // Page-table entries in an anonymous VMA come with an anon_vma
                // (anon_vma_prepare()).
                if vma.isAnonymous { vma.hasAnonVMA = true }
            }
        }
    }
}
