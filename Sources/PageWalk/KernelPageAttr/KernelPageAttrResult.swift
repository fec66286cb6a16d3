/// What a kernel-table writer changed and flushed.
public struct KernelPageAttrResult: Equatable, Sendable {
    /// Entry words whose bits changed: each PTE, and each block leaf above
    /// the PTE level counted once.
    public var changed = 0
    /// The block leaves (PMD and above) among them, by the address the walk
    /// met each at (the range's start for a leaf the range begins inside).
    public var blockLeaves: [UInt64] = []
    /// The kernel TLB flushes, in order (`flush_tlb_kernel_range()`): the
    /// whole range after the walk for `set_memory_*()`, one page per PTE
    /// handled for OpenRISC's uncached mappings.
    public var tlbFlushes: [Range<UInt64>] = []
    /// The physical byte ranges whose data cache lines were flushed
    /// (OpenRISC `local_dcache_range_flush()` when making pages uncached).
    public var dcacheFlushes: [Range<UInt64>] = []

    /// Where arm64's handlers met a block leaf the range covers in part
    /// (the walk stopped there).
    var partialBlockAt: UInt64?

    public init() {}
}
