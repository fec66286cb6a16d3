/// What a vmemmap remap walk did.
public struct VmemmapRemapResult: Equatable, Sendable {
    /// PMD leaves split into PTE tables, by address.
    public var pmdSplits: [UInt64] = []
    /// `nr_walked`: PTEs the walk stepped over.
    public var walked = 0
    /// The frames taken off the range by a remap (`vmemmap_pages`, for the
    /// caller to free), in the order met; the pages left over by a restore.
    public var pages: [UInt64] = []
    /// `reuse_page`.
    public var reusePFN: UInt64?

    public init() {}
}
