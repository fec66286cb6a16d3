/// What one of the dirty-tracking helpers did: the PTEs it changed, the
/// TLB flush each walked VMA ended with, and the huge entries it passed
/// over that the kernel WARNs about.
public struct MappingDirtyResult: Equatable, Sendable {
    /// A range flush of one VMA (`flush_tlb_range()` in `post_vma`).
    public struct Flush: Hashable, Sendable {
        /// The address space of the VMA.
        public let pid: Int
        public let range: Range<UInt64>
        public init(pid: Int, range: Range<UInt64>) { self.pid = pid; self.range = range }
    }

    /// A PMD or PUD leaf skipped (`ACTION_CONTINUE`) while writable or
    /// dirty: the `WARN_ON()` of `wp_clean_pmd_entry()`, since dirty
    /// tracking works on PTEs only.
    public struct Warning: Hashable, Sendable {
        public let pid: Int
        public let address: UInt64
        public init(pid: Int, address: UInt64) { self.pid = pid; self.address = address }
    }

    /// How many PTEs were cleaned or write-protected (`wp_walk.total`, the
    /// helpers' return value). Entries already clean or read-only are not
    /// counted.
    public var total = 0
    /// In walk order, the flush of each VMA that changed something: from
    /// the first to one past the last changed PTE.
    public var flushes: [Flush] = []
    public var warnings: [Warning] = []

    public init() {}
}
