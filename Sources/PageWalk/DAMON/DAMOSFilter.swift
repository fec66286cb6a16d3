import MemoryModel

/// One DAMOS operations-layer filter (`struct damos_filter` of a type the
/// vaddr operations evaluate themselves or through
/// `damos_folio_filter_match()`): a folio matches when the filter's test
/// equals `matching`; the first filter that matches decides, passing the
/// folio when `allow`, rejecting it otherwise.
public struct DAMOSFilter: Hashable, Sendable {
    public enum Kind: Hashable, Sendable {
        /// `DAMOS_FILTER_TYPE_ANON`: an anonymous folio.
        case anon
        /// `DAMOS_FILTER_TYPE_ACTIVE`: on the active LRU list.
        case active
        /// `DAMOS_FILTER_TYPE_YOUNG`: accessed since it was last made old
        /// (a young entry, or the folio not idle). Evaluating it makes the
        /// entry old again (`damos_va_filter_young_match()`).
        case young
        /// `DAMOS_FILTER_TYPE_HUGEPAGE_SIZE`: the folio's size in bytes
        /// lies in the range.
        case hugepageSize(ClosedRange<UInt64>)
    }

    public var kind: Kind
    public var matching: Bool
    public var allow: Bool

    public init(_ kind: Kind, matching: Bool = true, allow: Bool = true) {
        self.kind = kind; self.matching = matching; self.allow = allow
    }
}

/// The parts of a DAMOS scheme the stat walk uses: its operations-layer
/// filters, and `last_applied`, the folio counted last, which keeps a
/// large folio met through several entries (or again in the next region)
/// from being counted twice.
public struct DAMOSScheme {
    public var filters: [DAMOSFilter]
    /// `s->last_applied`.
    public internal(set) var lastApplied: Folio?

    public init(filters: [DAMOSFilter]) { self.filters = filters }

    /// `folio == s->last_applied`: the same folio (by its head frame).
    func isLastApplied(_ folio: Folio) -> Bool { lastApplied?.pfn == folio.pfn }

    /// `ops_filters_default_reject`: with filters, what happens to a folio
    /// no filter matched is the opposite of the last filter's verdict
    /// (`damos_filters_default_reject()`: rejected when the last allows).
    var defaultReject: Bool { filters.last?.allow ?? false }
}
