import Synchronization

extension AddressSpace {
    /// `MADV_DONTNEED`: unmaps the pages of `[start, end)` and frees PTE
    /// tables left empty (`CONFIG_PT_RECLAIM`). Guard markers survive; uffd-wp
    /// markers survive, and a uffd-wp-protected page leaves one, in
    /// file-backed VMAs only (anonymous memory is dropped whole). Refused for
    /// VM_LOCKED and VM_PFNMAP VMAs, as the kernel does (-EINVAL, once the
    /// VMAs before the refused one are done). A range
    /// inside one VMA is zapped under that VMA's lock alone (6.16 and later).
    public func zap(_ start: UInt64, _ end: UInt64) throws(ModelError) {
        try checkAlive()
        try withMadviseVMAs(start, end, operation: "zap") { (vs) throws(ModelError) in
            // VMA by VMA: a refused one stops the call, the earlier ones stay zapped.
            for vma in vs {
                guard !vma.flags.contains(.locked), !vma.flags.contains(.pfnMap) else {
                    throw .wrongVMAKind(address: vma.start, reason: "MADV_DONTNEED on a VM_LOCKED or VM_PFNMAP VMA")
                }
                try zapRange(vma, max(start, vma.start), min(end, vma.end), dropMarkers: false)
            }
        }
    }

    /// `munmap()`: zaps everything (markers too), removes the VMAs and frees
    /// the page tables no remaining VMA needs (`free_pgtables()`).
    public func munmap(_ start: UInt64, _ end: UInt64) throws(ModelError) {
        try checkAlive()
        try withMmapWriteLock { (_) throws(ModelError) in try munmapLocked(start, end) }
    }

    func munmapLocked(_ start: UInt64, _ end: UInt64) throws(ModelError) {
        guard start & Geometry.pageOffsetMask == 0, end & Geometry.pageOffsetMask == 0, start < end else {
            throw .invalidRange(start: start, end: end, reason: "munmap needs a page-aligned, non-empty range")
        }
        // do_vmi_munmap(): -EINVAL beyond TASK_SIZE.
        guard end <= geometry.userAddressLimit else {
            throw .invalidRange(start: start, end: end, reason: "beyond the user address space (\(hex(geometry.userAddressLimit)))")
        }
        for v in vmas(intersecting: start, end) where v.isHugetlb {
            if max(start, v.start) % v.hugePageSize != 0 || min(end, v.end) % v.hugePageSize != 0 {
                throw .unaligned(name: "hugetlb munmap", value: start, alignment: v.hugePageSize)
            }
        }
        let vs = Array(try isolateVMAs(start, end))
        for vma in vs { vmaStartWrite(vma) }
        for vma in vs { try zapRange(vma, vma.start, vma.end, dropMarkers: true) }
        changeVMAs { list in list.removeAll { v in vs.contains { $0 === v } } }
        freeEmptyTables(start, end)
    }

    /// Tears the address space down (`exit_mmap()`): every VMA unmapped,
    /// every table freed. Later operations fail with `.tornDown`.
    public func tearDown() throws(ModelError) {
        try checkAlive()
        try withMmapWriteLock { (_) throws(ModelError) in
            releaseEverything()
        }
    }

    /// Unmaps everything and frees all tables, root included. Marked torn
    /// down first, the space drops out of later reverse-map walks; one
    /// already walking it may still meet its entries (under their PTLs)
    /// while they are zapped, and the VMAs go (`unlink_anon_vmas()`, under
    /// the anon_vma lock) only once it is done, before any table is freed.
    func releaseEverything() {
        guard !tornDown.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for vma in vmaList { vmaStartWrite(vma) }
        for vma in vmaList { try? zapRange(vma, vma.start, vma.end, dropMarkers: true) }
        changeVMAs { $0.removeAll() }
        freeAllTables(root, level: tableLevels[0])
        arena.free(root)
    }

    private func freeAllTables(_ table: TableID, level: PageTableLevel) {
        guard level != .pte else { return }
        let e = arena.entries(table)
        for i in 0..<Geometry.entriesPerTable {
            let w = e[i].load(ordering: .relaxed)
            guard layout.isTable(w, level) else { continue }
            let child = arena.uncheckedTable(atPFN: layout.pfn(w))
            let childLevel = childLevel(of: level)
            if arena.shareCount(child) > 0 { arena.adjustShares(child, -1); continue }
            freeAllTables(child, level: childLevel)
            e[i].store(0, ordering: .relaxed)
            arena.free(child)
            addTables(childLevel, -1)
        }
    }

    /// Zaps `[start, end)` inside one VMA (`zap_page_range_single()`).
    func zapRange(_ vma: VMA, _ start: UInt64, _ end: UInt64, dropMarkers: Bool) throws(ModelError) {
        updateHiwaterRSS()
        if vma.isHugetlb { try zapHugetlb(vma, start, end); return }
        try forEachPTE(start, end, pmd: { (s, a, next) throws(ModelError) -> PMDDecision in
            guard a % AddressSpace.pmdSize == 0 && next - a == AddressSpace.pmdSize else { return .split }
            self.zapPMD(s)
            return .skip
        }, afterTable: { (t, pmd) in
            if self.arena.usedEntries(t) == 0 { self.reclaimPTETableIfEmpty(pmd: pmd) }
        }) { (t, i, _) in
            zapPTE(vma, t, i, dropMarkers: dropMarkers)
        }
    }

    /// Clears one PTE of a locked table, undoing what it accounted.
    package func zapPTE(_ vma: VMA, _ t: TableID, _ i: Int, dropMarkers: Bool) {
        let e = arena.entries(t)
        let old = e[i].load(ordering: .relaxed)
        guard old != 0 else { return }
        if layout.isPresent(old, .pte) {
            storePTE(t, i, 0)
            if !layout.isSpecialPTE(old), let page = memory.page(layout.pfn(old)) {
                let f = page.folio
                // The unmapped folio may be left in the swap cache with no
                // swap entry referring to it: free_pages_and_swap_cache()
                // then drops it from the cache. Hold it across the unmap.
                let swapCached = f.isAnon && f.test(.swapCache)
                if swapCached { f.addRef(1) }
                // zap_present_folio_ptes(): a young file PTE is an access.
                if !f.isAnon && old & layout.young != 0 { f.markAccessed() }
                unmapPage(page, old)
                if swapCached {
                    freeSwapCache(f)
                    memory.put(f)
                }
            }
            // zap_install_uffd_wp_if_needed(): only file-backed VMAs keep
            // the protection as a marker; a zap of anonymous memory drops
            // everything.
            if !dropMarkers && !vma.isAnonymous && vma.flags.contains(.uffdWP) && old & layout.uffdWP != 0 {
                storePTE(t, i, (try? SoftLeafEntry(.marker(.uffdWP)).encode(layout)) ?? 0)
            }
            return
        }
        let leaf = SoftLeafEntry(decoding: old, layout: layout)
        switch leaf.leaf {
        case .marker(let m):
            if Self.zapDrops(m, anonymous: vma.isAnonymous, dropMarkers: dropMarkers) { storePTE(t, i, 0) }
            return
        case .swap(let s):
            storePTE(t, i, 0)
            releaseSwapReference(s)
            addRSS(.swapEntries, -1)
        case .migration(_, let pfn, _, _):
            storePTE(t, i, 0)
            if let f = memory.folio(containing: pfn) {
                if let c = rssCounter(for: f) { addRSS(c, -1) }
                memory.put(f)
            }
        case .devicePrivate(_, let pfn), .deviceExclusive(let pfn):
            storePTE(t, i, 0)
            if let p = memory.page(pfn) {
                p.folio.addPTEMappings(first: p.index, count: 1, delta: -1)
                if let c = rssCounter(for: p.folio) { addRSS(c, -1) }
                memory.put(p.folio)
            }
        case .hwpoison:
            storePTE(t, i, 0)
        }
    }

    /// Drops one swap entry's reference; a slot left with only its cached
    /// folio releases the folio from the swap cache (`free_swap_and_cache()`).
    func releaseSwapReference(_ s: SwapEntry) {
        let slot = Int(s.offset)
        memory.swap.adjust(slot, -1)
        // Under the PTL the folio lock can only be tried; a busy folio is
        // being swapped out or in, and that path settles the cache. The
        // reference the swap-cache lookup takes is held across (as
        // __try_to_reclaim_swap() does), so that the folio cannot be freed
        // between the lookup and the trylock, nor by dropping the cache's
        // reference before it is unlocked.
        if memory.swap.count(slot) == 0, let page = memory.swap.cachedPage(slot, getting: memory) {
            let f = page.folio
            if f.tryLock() {
                if !f.isMapped && memory.swap.cachedFolioPFN(slot) == page.pfn && memory.swap.count(slot) == 0 {
                    memory.swap.setCache(slot, nil)
                    if f.pageCount == 1 { f.setFlags(.swapCache, false) }
                    memory.put(f)
                }
                f.unlock()
            }
            memory.put(f)
        }
    }

    /// `free_swap_cache()` / `folio_free_swap()`: an anonymous folio that is
    /// no longer mapped and whose swap slots no swap entry refers to leaves
    /// the swap cache. The caller holds a reference; the folio lock is only
    /// tried (a busy folio is settled by whoever holds it).
    func freeSwapCache(_ f: Folio) {
        guard f.test(.swapCache), !f.isMapped, f.tryLock() else { return }
        defer { f.unlock() }
        guard !f.isMapped else { return }
        memory.folioFreeSwap(f)
    }

    /// Clears a whole PMD-level leaf or migration entry (`zap_huge_pmd()`).
    func zapPMD(_ s: EntrySlot) {
        let l = lock(forEntriesOf: s.table, level: .pmd)
        l.lock()
        defer { l.unlock() }
        zapPMDLocked(s)
    }

    /// `zapPMD` for a caller that holds the PMD lock.
    package func zapPMDLocked(_ s: EntrySlot) {
        let w = load(s)
        guard w != 0, !layout.isTable(w, .pmd) else { return }
        store(s, 0)
        if layout.isPresent(w, .pmd) {
            guard let f = memory.folio(containing: layout.pfn(w)) else { return }
            if depositsTable(f) { addTables(.pte, -1) }
            if f.test(.hugeZeroPage) { return }
            if layout.isDirtyPTE(w) && !f.isAnon { f.setFlags(.dirty, true) }
            // zap_huge_pmd(): a young file PMD is an access.
            if !f.isAnon && w & layout.young != 0 { f.markAccessed() }
            f.addEntireMapping(-1)
            if let c = rssCounter(for: f) { addRSS(c, -f.pageCount) }
            memory.put(f)
        } else if case .migration(_, let pfn, _, _) = SoftLeafEntry(decoding: w, layout: layout).leaf,
                  let f = memory.folio(containing: pfn) {
            if depositsTable(f) { addTables(.pte, -1) }
            if let c = rssCounter(for: f) { addRSS(c, -f.pageCount) }
            memory.put(f)
        }
    }

    /// Unmaps the huge pages of a hugetlb VMA in `[start, end)`
    /// (`unmap_hugepage_range()`); the range must be huge-page aligned.
    func zapHugetlb(_ vma: VMA, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let size = vma.hugePageSize
        guard start % size == 0, end % size == 0 else {
            throw .unaligned(name: "hugetlb range", value: start % size == 0 ? end : start, alignment: size)
        }
        vma.hugetlbLock.lockWrite()
        defer { vma.hugetlbLock.unlockWrite() }
        let (level, count) = hugetlbEntryShape(forSize: size)
        var a = start
        while a < end {
            defer { a += size }
            guard let s = hugetlbSlot(a, level: level) else { continue }
            let l = hugePTELock(forEntriesOf: s.table, level: level)
            l.lock()
            let w = load(s)
            for k in 0..<count { store(EntrySlot(s.table, s.index + k, level), 0) }
            l.unlock()
            guard w != 0 else { continue }
            if layout.isPresent(w, level), let f = memory.folio(containing: layout.pfn(w)) {
                f.addEntireMapping(-1)
                addHugetlb(-Int(size))
                memory.put(f)
            }
        }
    }

    /// The first slot of the hugetlb entries mapping `address`, if tables exist.
    func hugetlbSlot(_ address: UInt64, level: PageTableLevel) -> EntrySlot? {
        if level == .pte {
            guard case .slot(let pmd)? = try? slot(address, at: .pmd, allocate: false) else { return nil }
            let w = load(pmd)
            guard layout.isTable(w, .pmd) else { return nil }
            return EntrySlot(arena.uncheckedTable(atPFN: layout.pfn(w)), geometry.tableIndex(address, .pte), .pte)
        }
        guard case .slot(let s)? = try? slot(address, at: level, allocate: false) else { return nil }
        return s
    }
}

extension AddressSpace {
    /// Whether a zap clears marker `m` (`zap_nonpresent_ptes()`): uffd-wp
    /// markers always on anonymous VMAs, on file VMAs only when markers are
    /// dropped (munmap, teardown); guard markers only then; poison markers
    /// always.
    static func zapDrops(_ m: PTEMarker, anonymous: Bool, dropMarkers: Bool) -> Bool {
        if m.contains(.uffdWP) { return anonymous || dropMarkers }
        if m.contains(.guardRegion) { return dropMarkers }
        return true
    }
}
