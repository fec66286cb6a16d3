import Synchronization

/// The page-table primitives the walkers (module PageWalk) build on: the
/// model's equivalent of `pgd_offset()` … `pte_offset_map_lock()`,
/// `__pte_alloc()`, `set_pte_at()` and `split_huge_pmd()`. Callers follow
/// the kernel's locking rules; these functions do not take the mmap lock.
extension AddressSpace {
    /// For each real table, root first, the level of the entries it holds.
    public var entryLevels: [PageTableLevel] { tableLevels }

    /// The arena holding this address space's tables.
    public var tables: TableArena { arena }

    /// The table a table entry (non-leaf, present) points at.
    @inlinable
    public func lowerTable(_ raw: UInt64) -> TableID { arena.uncheckedTable(atPFN: layout.pfn(raw)) }

    /// Allocates and installs a lower table at a none slot, under the lock
    /// the kernel uses; returns the entry now in the slot.
    @discardableResult
    public func allocateLowerTable(at slot: EntrySlot) throws(ModelError) -> UInt64 {
        try installTable(at: slot)
    }

    /// Writes PTE `index` of `table` (the caller holds the table's lock),
    /// keeping the table's used-entry count.
    public func setPTE(_ table: TableID, _ index: Int, _ raw: UInt64) {
        storePTE(table, index, raw)
    }

    /// Splits the PMD leaf (or PMD migration entry) at `slot` into a PTE
    /// table (`split_huge_pmd()`); a no-op when the slot holds a table.
    public func splitHugePMD(at slot: EntrySlot) throws(ModelError) {
        try splitPMD(slot)
    }
}

extension AddressSpace {
    /// Writes the entry at `slot` (`set_pte_at()`, `set_pmd_at()`,
    /// `set_pud_at()`, `pte_clear()` with 0), keeping the table's used-entry
    /// count. The caller holds the lock guarding the slot
    /// (`lock(forEntriesOf:level:)`), as the kernel's callers do.
    public func setEntry(at slot: EntrySlot, _ raw: UInt64) {
        if slot.level == .pte { storePTE(slot.table, slot.index, raw) } else { store(slot, raw) }
    }

    /// Unmaps `[start, end)` of one VMA (`zap_page_range_single()` with no
    /// zap details): pages and swap entries go, guard and uffd-wp markers
    /// stay, PMD leaves straddling the range are split. The caller holds the
    /// mmap lock; this takes only page-table locks.
    public func zapPageRangeSingle(_ vma: VMA, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        try zapRange(vma, start, end, dropMarkers: false)
    }

    /// Attaches an anon_vma to `vma` (`anon_vma_prepare()`), so that fork
    /// copies its page tables (guard markers live only there).
    public func prepareAnonVMA(_ vma: VMA) {
        vma.hasAnonVMA = true
    }

    /// Where hugetlb entries of `size` live and how many entries one huge
    /// page takes (`huge_pte_offset()`'s level; arm64 contiguous sizes use
    /// 16 entries).
    public func hugetlbEntryShape(forSize size: UInt64) -> (level: PageTableLevel, entries: Int) {
        hugetlbShape(size)
    }
}
