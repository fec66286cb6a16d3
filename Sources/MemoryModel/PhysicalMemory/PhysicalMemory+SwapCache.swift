import Synchronization

// Folios leaving the swap cache.
extension PhysicalMemory {
    /// `folio_free_swap()`: with the folio locked (and a reference held),
    /// takes it out of the swap cache and frees its slots unless a swap
    /// entry still refers to one of them. Returns whether it did.
    @discardableResult
    package func folioFreeSwap(_ f: Folio) -> Bool {
        guard f.test(.swapCache) else { return false }
        var slots: [Int] = []
        for k in 0..<f.pageCount {
            guard let slot = swap.cachedSlot(ofPFN: f.pfn + UInt64(k)) else { continue }
            if swap.count(slot) != 0 { return false }   // folio_swapped(): still referenced
            slots.append(slot)
        }
        for slot in slots {
            swap.setCache(slot, nil)
            put(f)
        }
        f.setFlags(.swapCache, false)
        return true
    }

    /// Reclaim meeting swap-cache folios that nothing maps and no swap
    /// entry refers to, and freeing them (`shrink_folio_list()`:
    /// `folio_free_swap()`, then `__remove_mapping()` drops the cache's
    /// references). Such folios are left when the last swap entry goes
    /// while someone else holds the folio lock: `free_swap_and_cache()`
    /// only tries it, and the holder (a swap-in that lost its race with
    /// zap) does not free the cache. A folio anyone else still holds a
    /// reference to stays. Returns how many folios were freed.
    @discardableResult
    package func reclaimUnusedSwapCache() -> Int {
        var freed = 0
        for c in swap.cachedSlots() {
            // Our reference, taken under the swap map's lock.
            guard let page = swap.cachedPage(c.slot, getting: self) else { continue }
            let f = page.folio
            guard f.tryLock() else { put(f); continue }
            // The cache's references (one per slot) and ours, and no more.
            let unused = !f.isMapped && f.refcount == f.pageCount + 1 && folioFreeSwap(f)
            f.unlock()
            put(f)
            if unused { freed += 1 }
        }
        return freed
    }
}
