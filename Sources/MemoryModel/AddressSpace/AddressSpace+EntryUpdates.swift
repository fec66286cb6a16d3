import Synchronization

/// What the update walk (module PageWalk) changes under a page-table lock
/// it holds: PTE tables found or allocated for installing, and the folio
/// actions walker users take on the folios they meet (the LRU and mlock
/// state of `mm/swap.c`, `mm/vmscan.c` and `mm/mlock.c`). Callers hold the
/// mmap lock or the VMA lock, and the table lock where a function says so.
extension AddressSpace {
    /// `pte_offset_map_lock()` after `__pte_alloc()`: runs `body` on the PTE
    /// table mapping `address` with its lock held, allocating the upper
    /// tables and the PTE table when `allocate` is set. Nil, and `body` not
    /// run, when a PMD or higher leaf maps `address` or the table is missing
    /// and not to be allocated.
    package func withPTETable<R>(_ address: UInt64, allocate: Bool,
                                 _ body: (TableID) throws(ModelError) -> R) throws(ModelError) -> R? {
        switch try lockPTETable(address, allocate: allocate) {
        case .table(let t, _):
            defer { arena.lock(t).unlock() }
            return try body(t)
        case .pmdEntry, .blocked, .absent:
            return nil
        }
    }

    /// Charges `n` pages of `folio` to the counter `mm_counter()` names.
    package func addRSS(for folio: Folio, _ n: Int) {
        if let c = rssCounter(for: folio) { addRSS(c, n) }
    }

    /// `folio_isolate_lru()`: takes the folio off its LRU list, holding a
    /// reference for the isolator; false when it is not on one (already
    /// isolated, or never added).
    package func isolateFromLRU(_ folio: Folio) -> Bool {
        guard folio.test(.lru) else { return false }
        folio.setFlags(.lru, false)
        folio.addRef(1)
        return true
    }

    /// `folio_putback_lru()`: back on its LRU list, the isolation
    /// reference dropped.
    package func putBackOnLRU(_ folio: Folio) {
        folio.setFlags(.lru, true)
        memory.put(folio)
    }

}

extension AddressSpace {
    /// clear_refs type 4 before its walk: VM_SOFTDIRTY leaves every VMA
    /// (`vm_flags_clear()`, each VMA write-locked). Caller holds the mmap
    /// lock for write.
    package func clearSoftDirtyFlags() {
        for vma in vmaList where vma.flags.contains(.softDirty) {
            vmaStartWrite(vma)
            vma.flags.remove(.softDirty)
        }
    }
}

/// The LRU and mlock state changes walker users make to a folio they meet
/// (mm/swap.c, mm/mlock.c); none needs the address space.
extension Folio {
    /// `folio_deactivate()` (MADV_COLD): an evictable folio on an LRU list
    /// moves to the inactive list and loses its referenced bit.
    @inlinable @inline(__always)
    package func deactivate() {
        guard test(.lru), !test(.unevictable) else { return }
        setFlags([.active, .referenced], false)
    }

    /// `folio_mark_lazyfree()` (MADV_FREE): an anonymous, swap-backed folio
    /// outside the swap cache becomes clean file-like memory that reclaim
    /// may drop: off the active list, no longer swap-backed.
    @inlinable @inline(__always)
    package func markLazyFree() {
        guard isAnon, test(.swapBacked), !test(.swapCache), !test(.unevictable) else { return }
        setFlags([.active, .referenced, .swapBacked], false)
    }

    /// `folio_clear_dirty()`.
    @inlinable @inline(__always)
    package func clearDirty() { setFlags(.dirty, false) }

    /// `folio_clear_referenced()` with `folio_test_clear_young()`: what
    /// clear_refs does to a folio whose entry it made old.
    @inlinable @inline(__always)
    package func clearReferenced() { setFlags([.referenced, .young], false) }

    /// `folio_set_idle()` (page_idle, `CONFIG_PAGE_IDLE_FLAG`): a user of
    /// access bits (DAMON, the page_idle bitmap) has made the folio's
    /// mappings old; it stays idle until it is accessed again
    /// (`markAccessed()`).
    @inlinable @inline(__always)
    package func markIdle() { setFlags(.idle, true) }

    /// `folio_set_young()`: the access bit such a user cleared, kept on the
    /// folio so that reclaim's reference check still counts it.
    @inlinable @inline(__always)
    package func markYoung() { setFlags(.young, true) }

    /// `folio_mark_accessed()` (classic LRU): an unreferenced folio becomes
    /// referenced; a referenced inactive, evictable one on an LRU list is
    /// activated and loses the referenced bit; in every case it is no
    /// longer idle.
    package func markAccessed() {
        if !test(.referenced) {
            setFlags(.referenced, true)
        } else if !test(.unevictable) && !test(.active) && test(.lru) {
            setFlags(.active, true)
            setFlags(.referenced, false)
        }
        if test(.idle) { setFlags(.idle, false) }
    }

    /// `mlock_folio()`: mlocked and unevictable.
    @inlinable @inline(__always)
    package func mlock() { setFlags([.mlocked, .unevictable], true) }

    /// `munlock_folio()`: evictable again.
    @inlinable @inline(__always)
    package func munlock() { setFlags([.mlocked, .unevictable], false) }
}
