import Synchronization

/// The page-table primitives the walkers (module PageWalk) build on: the
/// model's equivalent of `pgd_offset()` … `pte_offset_map_lock()`,
/// `__pte_alloc()`, `set_pte_at()` and `split_huge_pmd()`. Callers follow
/// the kernel's locking rules; these functions do not take the mmap lock.
extension AddressSpace {
    /// The table a table entry (non-leaf, present) points at.
    @inlinable
    package func lowerTable(_ raw: UInt64) -> TableID { arena.uncheckedTable(atPFN: layout.pfn(raw)) }

}

extension AddressSpace {
    /// Writes the entry at `slot` (`set_pte_at()`, `set_pmd_at()`,
    /// `set_pud_at()`, `pte_clear()` with 0), keeping the table's used-entry
    /// count. The caller holds the lock guarding the slot
    /// (`lock(forEntriesOf:level:)`), as the kernel's callers do.
    package func setEntry(at slot: EntrySlot, _ raw: UInt64) {
        if slot.level == .pte { storePTE(slot.table, slot.index, raw) } else { store(slot, raw) }
    }

    /// Unmaps `[start, end)` of one VMA (`zap_page_range_single()` with no
    /// zap details): pages and swap entries go, guard markers stay (and
    /// uffd-wp markers in file-backed VMAs), PMD leaves straddling the range
    /// are split. The caller holds the
    /// mmap lock; this takes only page-table locks.
    package func zapPageRangeSingle(_ vma: VMA, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        try zapRange(vma, start, end, dropMarkers: false)
    }
}
