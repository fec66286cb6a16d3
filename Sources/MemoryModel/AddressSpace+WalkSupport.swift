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
