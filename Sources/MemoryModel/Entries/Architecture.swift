/// The CPU architectures whose page-table formats the model reproduces.
///
/// Models the kernel's per-architecture `asm/pgtable*.h`: the entry bit
/// layout, the swap-entry encoding and the sizes a leaf can have.
public enum Architecture: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case x86_64
    case arm64

    public var description: String { rawValue }

    /// The entry bit layout of this architecture.
    @inlinable @inline(always)
    public var layout: EntryLayout {
        switch self {
        case .x86_64: return .x86_64
        case .arm64: return .arm64
        }
    }
}

/// The levels of a page table, leaf first.
///
/// Raw values follow the kernel's `enum pgtable_level` order reversed so that
/// `level.rawValue` is the number of levels below it. Hole depths, which the
/// kernel numbers from the top (pgd 0 … pte 4), come from `holeDepth`.
public enum PageTableLevel: Int, Sendable, Hashable, CaseIterable, Comparable, CustomStringConvertible {
    case pte = 0
    case pmd = 1
    case pud = 2
    case p4d = 3
    case pgd = 4

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    /// The level one step closer to the leaves, or nil for PTE.
    @inlinable public var lower: PageTableLevel? { PageTableLevel(rawValue: rawValue - 1) }
    /// The level one step closer to the root, or nil for PGD.
    @inlinable public var upper: PageTableLevel? { PageTableLevel(rawValue: rawValue + 1) }

    /// The depth the kernel reports for a hole at this level (`pte_hole`'s
    /// `depth`: 0 for pgd … 4 for pte), before folding is applied.
    @inlinable public var holeDepth: Int { 4 - rawValue }

    public var description: String {
        switch self {
        case .pte: return "pte"
        case .pmd: return "pmd"
        case .pud: return "pud"
        case .p4d: return "p4d"
        case .pgd: return "pgd"
        }
    }
}
