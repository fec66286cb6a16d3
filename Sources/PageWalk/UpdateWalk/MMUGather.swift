/// One TLB flush an update walk issued.
public struct TLBFlush: Hashable, Sendable {
    /// Why the walk flushed here.
    public enum Reason: Hashable, Sendable {
        /// Before dropping a table lock the loop body asked to drop
        /// (`tlb_flush_mmu()` ahead of sleeping work, as zap does before it
        /// drops the PTL with entries cleared).
        case beforeUnlock
        /// At the end of the walk (`tlb_finish_mmu()`).
        case finish
    }
    /// The virtual range flushed (`tlb->start`, `tlb->end`).
    public let range: Range<UInt64>
    public let reason: Reason

    public init(range: Range<UInt64>, reason: Reason) { self.range = range; self.reason = reason }
}

/// The TLB flushes an update walk owes and has made: models the kernel's
/// `struct mmu_gather`, which grows one pending range as entries that a
/// CPU may cache are changed (`tlb_flush_pte_range()`,
/// `tlb_flush_pmd_range()`) and flushes it once, at the end or before a
/// lock is dropped, instead of once per entry.
///
/// Entries that no TLB can hold (none, swap, markers) never make a flush
/// pending; neither does `testAndClearYoung()` (`ptep_test_and_clear_young()`
/// without the flush, as clear_refs uses it: a stale young bit in a TLB only
/// delays the next access flag update). MADV_COLD clears young bits with
/// `clear_young_dirty_ptes()` and `tlb_remove_tlb_entries()`, which do
/// gather the range (`clearYoungDirty(dirty: false)`).
public struct MMUGather: Sendable {
    /// The pending range, empty when nothing is owed.
    public internal(set) var pendingStart: UInt64 = .max
    public internal(set) var pendingEnd: UInt64 = 0
    /// Every flush so far, in order.
    public private(set) var flushes: [TLBFlush] = []

    public init() {}

    /// Whether a flush is owed.
    @inlinable public var hasPending: Bool { pendingStart < pendingEnd }
    /// How many flushes the walk made.
    @inlinable public var flushCount: Int { flushes.count }

    /// `__tlb_adjust_range()`: `[start, end)` must be flushed before the
    /// walk finishes or drops its lock.
    public mutating func adjust(_ start: UInt64, _ end: UInt64) {
        if start < pendingStart { pendingStart = start }
        if end > pendingEnd { pendingEnd = end }
    }

    /// `tlb_flush_mmu_tlbonly()`: flushes what is pending, if anything.
    public mutating func flush(_ reason: TLBFlush.Reason) {
        guard hasPending else { return }
        flushes.append(TLBFlush(range: pendingStart..<pendingEnd, reason: reason))
        pendingStart = .max
        pendingEnd = 0
    }
}
