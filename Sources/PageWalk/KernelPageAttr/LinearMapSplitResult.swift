/// What arm64's `split_to_ptes_ops` walk split.
public struct LinearMapSplitResult: Equatable, Sendable {
    /// PUD blocks split into PMD blocks (`split_pud()`), by address.
    public var pudSplits: [UInt64] = []
    /// PMD blocks split into pages (`split_pmd()`), by address.
    public var pmdSplits: [UInt64] = []
    /// Contiguous runs whose bit was cleared (`split_contpmd()`,
    /// `split_contpte()`), by the address of the entry that found it.
    public var contiguousRuns: [UInt64] = []

    public init() {}
}
