import Synchronization

extension AddressSpace {
    /// Reclaims the anonymous folios mapped wholly inside `[start, end)` to
    /// swap (`MADV_PAGEOUT` → `shrink_folio_list()` → `try_to_unmap()`):
    /// each folio gets consecutive swap slots, every PTE mapping it in any
    /// process of the fork family becomes a swap entry (PMD mappings are
    /// split first), and the folio is freed. Mlocked, KSM, hugetlb and
    /// partially covered large folios stay resident, as the kernel would
    /// leave them on this path (it would split partial ones first).
    public func swapOut(_ start: UInt64, _ end: UInt64) throws(ModelError) {
        try checkAlive()
        try withMmapReadLock { (_) throws(ModelError) in
            for vma in try coveredVMAs(start, end, operation: "swapout") {
                guard vma.isPrivate, !vma.isHugetlb, !vma.isPFNMap else {
                    throw .wrongVMAKind(address: vma.start, reason: "swap-out applies to private memory")
                }
                if vma.flags.contains(.locked) { continue }
                let folios = try anonFoliosFullyInside(vma, max(start, vma.start), min(end, vma.end)) { f in
                    !f.isKSM && !f.isHugetlb && !f.test(.mlocked) && !f.test(.swapCache) && !f.test(.zoneDevice)
                }
                // Each folio comes with a reference taken under its PTL.
                var failure: ModelError?
                for (folio, address) in folios {
                    if failure == nil {
                        do throws(ModelError) { try swapOutFolio(folio, at: address) } catch { failure = error }
                    }
                    memory.put(folio)
                }
                if let failure { throw failure }
            }
        }
    }

    /// Unmaps `folio` (first page at `address`; the caller holds a
    /// reference) into fresh swap slots, under the folio lock: the folio
    /// enters the swap cache, every PTE mapping it becomes a swap entry, and
    /// the folio leaves the cache (and is freed) once nothing maps it.
    func swapOutFolio(_ folio: Folio, at address: UInt64) throws(ModelError) {
        folio.lock()
        defer { folio.unlock() }
        try swapOutLockedFolio(folio, at: address)
    }

    /// `swapOutFolio` for a caller that holds the folio lock already
    /// (reclaim, which locks the folio before it decides what to do). With
    /// `reuseCache`, a folio already in the swap cache (read back and not
    /// written since) is unmapped into the slots it has, as
    /// `shrink_folio_list()` does without `add_to_swap()`.
    func swapOutLockedFolio(_ folio: Folio, at address: UInt64, reuseCache: Bool = false) throws(ModelError) {
        // Re-check under the lock: another thread may have swapped,
        // migrated or unmapped it since it was found.
        guard folio.isMapped, folio.isAnon, reuseCache || !folio.test(.swapCache) else { return }
        let n = folio.pageCount
        var slots: [Int] = []
        if folio.test(.swapCache) {
            for k in 0..<n {
                guard let slot = memory.swap.cachedSlot(ofPFN: folio.pfn + UInt64(k)) else { return }
                slots.append(slot)
            }
        } else {
            let first = try memory.swap.allocate(n, folioPFN: folio.pfn)
            folio.setFlags(.swapCache, true)
            folio.addRef(n)   // the swap cache's references
            slots = Array(first..<(first + n))
        }
        let walk = beginRmapWalk(folio)
        defer { walk.end() }
        for mm in walk.spaces {
            for k in 0..<n {
                try withPTEMapping(in: mm, address + UInt64(k) * Geometry.pageSize, pfn: folio.pfn + UInt64(k)) { (t, i, w) throws(ModelError) in
                    var bits: SwapPTEBits = []
                    if folio.pageFlags(k).contains(.anonExclusive) { bits.insert(.exclusive) }
                    if w & mm.layout.softDirty != 0 { bits.insert(.softDirty) }
                    if w & mm.layout.uffdWP != 0 { bits.insert(.uffdWP) }
                    let entry = try SoftLeafEntry(.swap(SwapEntry(type: 0, offset: UInt64(slots[k]))), bits: bits).encode(mm.layout)
                    memory.swap.adjust(slots[k], 1)
                    mm.storePTE(t, i, entry)
                    folio.addPTEMappings(first: k, count: 1, delta: -1)
                    mm.addRSS(.anon, -1)
                    mm.addRSS(.swapEntries, 1)
                    memory.put(folio)
                }
            }
        }
        guard folio.mapcount == 0 else { return }   // still mapped: stays cached
        // Written out and unmapped everywhere: leave the swap cache.
        for k in 0..<n {
            folio.setPageFlags(k, .anonExclusive, false)
            memory.swap.setCache(slots[k], nil)
        }
        folio.setFlags(.swapCache, false)
        memory.put(folio, n)
    }

    /// Swaps in every swap entry of `[start, end)` (`do_swap_page()` for a
    /// read access).
    public func swapIn(_ start: UInt64, _ end: UInt64) throws(ModelError) {
        try checkAlive()
        try withMmapReadLock { (_) throws(ModelError) in
            for vma in try coveredVMAs(start, end, operation: "swapin") {
                try forEachPTE(max(start, vma.start), min(end, vma.end), pmd: { _, _, _ in .skip }) { (t, i, a) throws(ModelError) in
                    let w = arena.entries(t)[i].load(ordering: .relaxed)
                    guard w != 0, !layout.isPresent(w, .pte),
                          case .swap = SoftLeafEntry(decoding: w, layout: layout).leaf else { return }
                    try swapInPTE(vma, t, i, a, write: false)
                }
            }
        }
    }

    /// Swaps in the swap entry at PTE `i` of locked table `t`: through the
    /// swap cache, as for a swap file (the folio stays cached until the
    /// slot's last reference goes, or a write makes it exclusive).
    func swapInPTE(_ vma: VMA, _ t: TableID, _ i: Int, _ address: UInt64, write: Bool) throws(ModelError) {
        let old = arena.entries(t)[i].load(ordering: .relaxed)
        let leaf = SoftLeafEntry(decoding: old, layout: layout)
        guard case .swap(let entry) = leaf.leaf else { return }
        let slot = Int(entry.offset)
        // swap_cache_get_folio(): a cached folio comes with a reference, so
        // that it can be neither freed nor its frame reused for another
        // folio between the lookup and the folio lock (a lock bit set on a
        // freed frame would end up on, or clear, the next owner's lock).
        if let page = memory.swap.cachedPage(slot, getting: memory) {
            let folio = page.folio
            defer { memory.put(folio) }
            // do_swap_page() locks the folio; under the PTL only a trylock
            // is allowed, and a busy folio means the fault is retried later.
            guard folio.tryLock() else { return }
            defer { folio.unlock() }
            // Re-check under the lock: the folio may have left the swap
            // cache (and the entry have changed) since the lookup.
            guard memory.swap.cachedFolioPFN(slot) == page.pfn,
                  arena.entries(t)[i].load(ordering: .relaxed) == old else { return }
            try finishSwapIn(vma, t, i, address, write: write, leaf: leaf, slot: slot, page: page)
            return
        }
        let f = try memory.allocateFolio(order: 0, node: node(for: vma, address),
                                         flags: [.anon, .swapBacked, .uptodate, .lru, .swapCache, .locked], refcount: 1)
        guard memory.swap.insertCache(slot, f.pfn) == nil else {
            // Another swap-in of this slot won; retry through the cache.
            f.unlock()
            memory.put(f)
            return
        }
        // The new folio stays locked until its PTE is in place, as
        // do_swap_page() keeps it: until then it sits in the swap cache
        // unmapped, holding only the cache's reference, and the lock is what
        // keeps free_swap_and_cache() (a zap of another swap entry of this
        // slot, in a forked process) from deleting it from the cache and
        // freeing it under us.
        defer { f.unlock() }
        try finishSwapIn(vma, t, i, address, write: write, leaf: leaf, slot: slot, page: f.page(0))
    }

    private func finishSwapIn(_ vma: VMA, _ t: TableID, _ i: Int, _ address: UInt64, write: Bool,
                              leaf: SoftLeafEntry, slot: Int, page: Page) throws(ModelError) {
        let folio = page.folio
        memory.swap.adjust(slot, -1)
        // A folio read ahead into the swap cache (MADV_WILLNEED) is not yet
        // anonymous: it becomes so when first mapped (folio_add_new_anon_rmap()).
        if !folio.isAnon { folio.setFlags(.anon, true) }
        var exclusive = leaf.bits.contains(.exclusive)
        var attrs: LeafAttributes = [.user, .young]
        if vma.flags.contains(.exec) { attrs.insert(.executable) }
        if leaf.bits.contains(.softDirty) { attrs.insert(.softDirty) }
        if leaf.bits.contains(.uffdWP) { attrs.insert(.uffdWP) }
        // should_try_to_free_swap(): a write, or mlock, frees the slot when
        // we are the only user.
        let freeSwap = memory.swap.count(slot) == 0 && folio.mapcount == 0
            && (write || vma.flags.contains(.locked) || folio.test(.mlocked))
        if freeSwap {
            memory.swap.setCache(slot, nil)
            if folio.pageCount == 1 { folio.setFlags(.swapCache, false) }
            folio.setFlags(.dirty, true)
            exclusive = true
        } else {
            folio.addRef(1)   // the mapping's reference; the cache keeps its own
        }
        if exclusive && vma.flags.contains(.write) && !leaf.bits.contains(.uffdWP) {
            attrs.insert(.writable)
            if write { attrs.insert(.dirty); if tracksSoftDirty { attrs.insert(.softDirty) } }
        }
        if exclusive { folio.setPageFlags(page.index, .anonExclusive, true) }
        folio.addPTEMappings(first: page.index, count: 1, delta: 1)
        storePTE(t, i, layout.leaf(pfn: page.pfn, level: .pte, attrs))
        addRSS(.swapEntries, -1)
        addRSS(.anon, 1)
        vma.hasAnonVMA = true
    }
}
