import MemoryModel

/// What the range walker does with VM_PFNMAP VMAs (the callback walker
/// skips them unless a `pte_hole` handler asks for the hole).
public enum PFNMapPolicy: Sendable, Hashable {
    /// Skip the VMA: nothing is yielded for it.
    case skip
    /// Yield one `.hole(depth: -1)` entry covering it.
    case hole
    /// Walk its entries: present ones come out as `.pfn`.
    case walk
}

/// A lower table a table-only walk (kernel tables, `ignoreVMAs`) is about
/// to descend into, as `RangeWalkOptions.tableFilter` sees it.
public struct TableDescent: Sendable, Hashable {
    /// The level of the upper entry pointing at the table.
    public let level: PageTableLevel
    /// The part of the upper entry's range the walk covers from here
    /// (clamped to the walk; `end` is the walk's end at the top of the
    /// address space).
    public let start: UInt64
    public let end: UInt64
    /// The upper entry's raw word.
    public let raw: UInt64
    /// The table it points at.
    public let table: TableID
}

/// Options of a range walk.
public struct RangeWalkOptions: @unchecked Sendable {
    /// Batch runs of entries (`folio_pte_batch`, `folio_pmd_batch`, swap and
    /// none runs). Off, every page-table entry is its own `WalkEntry`.
    public var batching: Bool
    /// Attribute differences that end a batch; the others are or-ed over it.
    public var respect: EntryAttributes
    /// Yield `.hole` entries for ranges outside any VMA.
    public var reportHoles: Bool
    /// Report zero-page mappings as `.folio` of the zero folio instead of `.pfn`.
    public var zeroPageAsFolio: Bool
    public var pfnMap: PFNMapPolicy
    /// The `test_walk` equivalent: VMAs for which it returns false are skipped.
    public var vmaFilter: ((VMA) -> Bool)?
    /// Walk the page tables without regard to VMAs (`walk_page_range_debug()`
    /// for user tables; kernel address spaces are always walked this way).
    public var ignoreVMAs: Bool
    /// Table-only walks (kernel address spaces, `ignoreVMAs`): asked, in
    /// address order, before the walker descends into a lower table; false
    /// steps over `[start, end)` without yielding anything for it (a shared
    /// table the caller has already seen, the KASAN zero shadow). It may be
    /// asked again for the same upper entry when the walk comes back to it.
    public var tableFilter: ((TableDescent) -> Bool)?
    /// Look up the page of each present PTE (`vm_normal_folio()`), so that
    /// entries are `.folio` or `.pfn` and batches end at folio boundaries.
    /// Off, present PTEs are not looked up: a run of them that agree on
    /// the respected attributes and on `pte_special()` is one `.present`
    /// entry, however many folios it maps. Upper-level leaves, hugetlb and
    /// kernel walks are reported as with lookups on.
    public var lookUpFolios: Bool

    public init(batching: Bool = true, respect: EntryAttributes = .batchable, reportHoles: Bool = false,
                zeroPageAsFolio: Bool = false, pfnMap: PFNMapPolicy = .skip,
                vmaFilter: ((VMA) -> Bool)? = nil, ignoreVMAs: Bool = false,
                tableFilter: ((TableDescent) -> Bool)? = nil, lookUpFolios: Bool = true) {
        self.batching = batching; self.respect = respect; self.reportHoles = reportHoles
        self.zeroPageAsFolio = zeroPageAsFolio; self.pfnMap = pfnMap
        self.vmaFilter = vmaFilter; self.ignoreVMAs = ignoreVMAs
        self.tableFilter = tableFilter; self.lookUpFolios = lookUpFolios
    }
}
