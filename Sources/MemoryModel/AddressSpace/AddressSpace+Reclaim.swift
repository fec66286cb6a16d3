import Synchronization

/// Reclaim of single folios that a walker user isolated (MADV_PAGEOUT's
/// `reclaim_pages()`), read-ahead into the swap cache (MADV_WILLNEED's
/// `read_swap_cache_async()`), and the folio splits those walks ask for
/// with the page-table lock dropped. Callers hold the mmap lock and no
/// page-table lock.
extension AddressSpace {
    /// What `shrink_folio_list()` did with one folio.
    package enum ReclaimOutcome: Sendable, Hashable {
        /// Unmapped and freed: swapped out, or dropped from the page cache.
        case reclaimed
        /// Put back on its list unchanged: locked by someone else, or of a
        /// kind the model does not reclaim (shmem, KSM, lazily freeable).
        case kept
        /// Put back on the active list (`activate_locked`): no swap slot
        /// could be had, it stayed mapped, it is unevictable, or it is a
        /// dirty file folio, which only kswapd writes back.
        case activated
    }

    /// `reclaim_pages()` → `shrink_folio_list()` with references ignored,
    /// for one folio isolated from the LRU (`folio_isolate_lru()`: the
    /// caller's isolation reference is consumed) whose first page is
    /// mapped at `address` of `vma`.
    ///
    /// - An anonymous swap-backed folio gets swap slots and every mapping
    ///   becomes a swap entry (`add_to_swap()`, `try_to_unmap()`), as
    ///   `swapOut` does; it is then freed, where the kernel keeps it in the
    ///   swap cache until the write completes. One already in the swap
    ///   cache goes back to its slots. With no swap (or a full device) it
    ///   is activated.
    /// - A file folio is unmapped (its PTEs' dirty bits passed on to it);
    ///   a clean one leaves the page cache and is freed
    ///   (`__remove_mapping()`), a dirty one is marked for reclaim and
    ///   activated, still cached.
    package func reclaimIsolatedFolio(_ folio: Folio, at address: UInt64, in vma: VMA) -> ReclaimOutcome {
        guard folio.tryLock() else {
            putBackOnLRU(folio)
            return .kept
        }
        let outcome = shrinkLockedFolio(folio, at: address, in: vma)
        folio.unlock()
        switch outcome {
        case .reclaimed:
            memory.put(folio)   // the isolation reference was the last
        case .activated:
            if !folio.test(.mlocked) { folio.setFlags(.active, true) }
            putBackOnLRU(folio)
        case .kept:
            putBackOnLRU(folio)
        }
        return outcome
    }

    private func shrinkLockedFolio(_ folio: Folio, at address: UInt64, in vma: VMA) -> ReclaimOutcome {
        // folio_evictable()
        if folio.test(.unevictable) || folio.test(.mlocked) { return .activated }
        if folio.isAnon {
            guard folio.test(.swapBacked), !folio.isKSM, !folio.test(.zoneDevice) else { return .kept }
            do {
                try swapOutLockedFolio(folio, at: address, reuseCache: true)
            } catch {
                return .activated   // add_to_swap() failed: activate_locked_split
            }
            return folio.isMapped ? .activated : .reclaimed
        }
        guard let file = vma.file, !folio.test(.swapBacked), !folio.isHugetlb else { return .kept }
        unmapFileFolio(folio, at: address)
        if folio.isMapped { return .activated }
        if folio.test(.dirty) {
            folio.setFlags(.reclaim, true)
            return .activated
        }
        let index = vma.pageIndex(address)
        var cacheRefs = 0
        file.withCache { c in
            for k in 0..<folio.pageCount where c[index + UInt64(k)] == folio.pfn + UInt64(k) {
                c[index + UInt64(k)] = nil
                cacheRefs += 1
            }
        }
        if cacheRefs > 0 { memory.put(folio, cacheRefs) }
        return .reclaimed
    }

    /// `try_to_unmap()` of a file folio: every PTE of this address space
    /// mapping it is cleared (a file folio's reverse map here is this
    /// process), passing a dirty bit on to the folio.
    private func unmapFileFolio(_ folio: Folio, at address: UInt64) {
        for k in 0..<folio.pageCount {
            let pfn = folio.pfn + UInt64(k)
            try? withPTEMapping(in: self, address + UInt64(k) * Geometry.pageSize, pfn: pfn) { (t, i, w) throws(ModelError) in
                storePTE(t, i, 0)
                unmapPage(folio.page(k), w)
            }
        }
    }

    /// `split_folio()` of the THP mapped by the PMD leaf at `slot`, as
    /// MADV_COLD and MADV_PAGEOUT call it for a THP the range covers only
    /// in part: pinned under the PMD lock, then the lock dropped and the
    /// folio locked (it may sleep), and split, its PMD mapping first, only
    /// when nothing but its mappings and caches holds it (the refcount
    /// freeze of `can_split_folio()`). Returns whether it was split.
    package func splitPMDMappedFolio(at slot: EntrySlot, folio: Folio) -> Bool {
        let l = lock(forEntriesOf: slot.table, level: .pmd)
        l.lock()
        let w = load(slot)
        guard w != 0, layout.isPresent(w, .pmd), !layout.isTable(w, .pmd), layout.pfn(w) == folio.pfn,
              folio.isLarge, !folio.isHugetlb, !folio.isZero, folio.tryGet() else {
            l.unlock()
            return false
        }
        l.unlock()
        folio.lock()
        // The pin is dropped before the split: the freeze counts mappings
        // and caches alone. The folio lock and the mmap lock keep it.
        let pinned = folio.refcount - 1
        memory.put(folio)
        defer { folio.unlock() }
        let cacheRefs = folio.isAnon ? (folio.test(.swapCache) ? folio.pageCount : 0) : folio.pageCount
        guard pinned == folio.mapcount + cacheRefs, load(slot) == w else { return false }
        do {
            try splitHugePMD(at: slot)
            // The PMD split folded the PTEs; the folio split unfolds them.
            let pmd = load(slot)
            if layout.contiguous != 0 && layout.isTable(pmd, .pmd) {
                let t = lowerTable(pmd)
                arena.lock(t).lock()
                unfoldContiguous(mapping: folio, table: t, first: 0)
                arena.lock(t).unlock()
            }
            try splitFolio(folio)
        } catch {
            return false
        }
        return true
    }

    /// `split_folio()` of a large folio mapped by PTEs that the caller
    /// locked with `folio_trylock()` under the PTE lock and then dropped
    /// that lock: split when nothing but its mappings and caches holds it.
    /// Returns whether it was split; the caller unlocks the head. When the
    /// folio's first page is mapped at `address`, its folded blocks there
    /// are unfolded, as the split's remapping leaves them.
    package func splitLockedFolio(_ folio: Folio, mappedAt address: UInt64? = nil) -> Bool {
        guard folio.isLarge, folio.entireMapcount == 0, !folio.isHugetlb else { return false }
        let cacheRefs = folio.isAnon ? (folio.test(.swapCache) ? folio.pageCount : 0) : folio.pageCount
        guard folio.refcount == folio.mapcount + cacheRefs else { return false }
        if let address, layout.contiguous != 0 {
            _ = try? withPTETable(address, allocate: false) { (t) throws(ModelError) in
                unfoldContiguous(mapping: folio, table: t, first: geometry.tableIndex(address, .pte))
            }
        }
        do { try splitFolio(folio) } catch { return false }
        return true
    }

    /// `read_swap_cache_async()` as MADV_WILLNEED calls it for a swap
    /// entry of `vma` at `address`: unless the slot's folio is already in
    /// the swap cache (or no swap entry refers to the slot any more), a
    /// new order-0 folio is read into it. Nothing is mapped: the folio is
    /// swap-backed and on the LRU but not yet anonymous, and holds only
    /// the cache's reference, until a fault maps it. Returns whether a
    /// folio was read in.
    @discardableResult
    package func readSwapCacheAsync(_ entry: SwapEntry, vma: VMA, address: UInt64) throws(ModelError) -> Bool {
        let slot = Int(entry.offset)
        guard memory.swap.count(slot) > 0, memory.swap.cachedFolioPFN(slot) == nil else { return false }
        let f = try memory.allocateFolio(order: 0, node: node(for: vma, address),
                                         flags: [.swapBacked, .uptodate, .lru, .swapCache], refcount: 1)
        guard memory.swap.insertCache(slot, f.pfn) == nil else {
            memory.put(f)   // raced by another read of the slot
            return false
        }
        return true
    }
}
