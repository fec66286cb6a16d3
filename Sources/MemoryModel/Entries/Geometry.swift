/// The shape of an address space's page tables: how many levels are real,
/// the shift each level translates, and which levels are folded.
///
/// Models the kernel's `PGDIR_SHIFT`/`P4D_SHIFT`/`PUD_SHIFT`/`PMD_SHIFT`,
/// `PTRS_PER_*` and the `pgtable-nop4d.h`/`nopud`/`nopmd` folding: a folded
/// level has one entry, which is the same word as the entry above it; the
/// level above a folded one then has trivial predicates (never none, never
/// bad), and the real checks happen at the folded level.
public struct Geometry: Sendable, Hashable, CustomStringConvertible {
    public let architecture: Architecture
    /// Number of real levels, 2 … 5.
    public let levels: Int

    /// `PAGE_SHIFT`: log2 of the page size (4K pages throughout).
    @inlinable public static var pageShift: Int { 12 }
    /// `PAGE_SIZE`.
    @inlinable public static var pageSize: UInt64 { 1 << pageShift }
    /// `PAGE_SIZE` where a count or index is an `Int`.
    @inlinable public static var pageBytes: Int { 1 << pageShift }
    /// `~PAGE_MASK`: the offset bits of an address within its page.
    @inlinable public static var pageOffsetMask: UInt64 { pageSize - 1 }
    /// Entries per real table (512 on both architectures with 4K pages).
    public static let entriesPerTable = 512

    /// Creates a geometry; x86-64 has 4 or 5 levels (and the folded 2- and
    /// 3-level configurations the generic code supports), arm64 with a 4K
    /// granule has 2 (30-bit VA), 3 (39-bit) or 4 (48-bit).
    public init(_ architecture: Architecture, levels: Int = 4) throws(ModelError) {
        let allowed: ClosedRange<Int> = architecture == .x86_64 ? 2...5 : 2...4
        guard allowed.contains(levels) else {
            throw .invalidGeometry("\(architecture) supports \(allowed.lowerBound)…\(allowed.upperBound) levels, not \(levels)")
        }
        self.architecture = architecture
        self.levels = levels
    }

    public static let x86_64 = try! Geometry(.x86_64, levels: 4)
    public static let x86_64FiveLevel = try! Geometry(.x86_64, levels: 5)
    public static let arm64 = try! Geometry(.arm64, levels: 4)

    public var description: String { "\(architecture) \(levels)-level" }

    @inlinable public var layout: EntryLayout { architecture.layout }

    /// Whether `level` is folded into the level above it (`PTRS_PER_x == 1`).
    @inlinable
    public func isFolded(_ level: PageTableLevel) -> Bool {
        switch level {
        case .pte, .pgd: return false
        case .pmd: return levels < 3
        case .pud: return levels < 4
        case .p4d: return levels < 5
        }
    }

    /// Whether `level`'s predicates are trivial because the level below it is
    /// folded into it (`pgd_none()` is 0 when p4d is folded, and so on).
    @inlinable
    public func hasTrivialEntries(_ level: PageTableLevel) -> Bool {
        guard let lower = level.lower, lower != .pte else { return false }
        return isFolded(lower)
    }

    /// The address shift an entry at `level` translates (`PMD_SHIFT` …).
    /// A folded level shares the shift of the real level above it.
    @inlinable @inline(always)
    public func shift(_ level: PageTableLevel) -> Int {
        // Levels fold from just below the pgd downwards, so a folded level's
        // real upper level is the pgd, whose shift is below the folded
        // level's own: the minimum of the two is right for every level.
        let top = 12 + 9 * (levels - 1)
        switch level {
        case .pte: return 12
        case .pmd: return Swift.min(21, top)
        case .pud: return Swift.min(30, top)
        case .p4d: return Swift.min(39, top)
        case .pgd: return top
        }
    }

    /// Bytes an entry at `level` maps (`PMD_SIZE` …).
    @inlinable @inline(always) public func entrySize(_ level: PageTableLevel) -> UInt64 { 1 << UInt64(shift(level)) }

    /// `PTRS_PER_x`: 1 for folded levels, 512 otherwise.
    @inlinable
    public func entriesPerTable(_ level: PageTableLevel) -> Int {
        isFolded(level) ? 1 : Geometry.entriesPerTable
    }

    /// The index of `address` in a table at `level` (`pmd_index()` …).
    @inlinable
    public func index(_ address: UInt64, at level: PageTableLevel) -> Int {
        if isFolded(level) { return 0 }
        return Int(truncatingIfNeeded: (address >> UInt64(shift(level))) & 511)
    }

    /// The end of the entry containing `address` at `level`, clamped to
    /// `end` (`pmd_addr_end()` …).
    @inlinable
    public func entryEnd(_ address: UInt64, at level: PageTableLevel, limit end: UInt64) -> UInt64 {
        let size = entrySize(level)
        let boundary = (address & ~(size - 1)) &+ size
        return (boundary &- 1 < end &- 1) ? boundary : end
    }

    /// The start of the next `size`-aligned block after `address`, clamped to
    /// `end` (and to `end` when the block is the last of the address space).
    @inlinable
    public func skip(_ address: UInt64, _ size: UInt64, _ end: UInt64) -> UInt64 {
        let next = (address & ~(size - 1)) &+ size
        return next == 0 || next > end ? end : next
    }

    /// The kernel's `real_depth()`: a hole found at a folded level is
    /// reported at the depth of the real level it is folded into.
    @inlinable
    public func realDepth(_ depth: Int) -> Int {
        var d = depth
        if d == 3 && isFolded(.pmd) { d = 2 }
        if d == 2 && isFolded(.pud) { d = 1 }
        if d == 1 && isFolded(.p4d) { d = 0 }
        return d
    }

    /// The real levels, root first.
    public var realLevels: [PageTableLevel] {
        PageTableLevel.allCases.reversed().filter { !isFolded($0) }
    }

    /// Bits of virtual address the tables translate.
    @inlinable public var virtualAddressBits: Int { shift(.pgd) + 9 }

    /// The end of user space (`TASK_SIZE_MAX`): x86-64 uses the lower half of
    /// the canonical space less its last page; arm64 the whole TTBR0 range.
    @inlinable
    public var userAddressLimit: UInt64 {
        switch architecture {
        case .x86_64: return (1 << UInt64(virtualAddressBits - 1)) - Self.pageSize
        case .arm64: return 1 << UInt64(virtualAddressBits)
        }
    }

    /// The first kernel address (upper half, sign-extended).
    @inlinable
    public var kernelAddressStart: UInt64 {
        let bits = virtualAddressBits - (architecture == .x86_64 ? 1 : 0)
        return ~((1 << UInt64(bits)) - 1)
    }

    /// Whether `address` is canonical for this geometry.
    @inlinable
    public func isCanonical(_ address: UInt64) -> Bool {
        let lowerHalfEnd: UInt64 = architecture == .x86_64 ? 1 << UInt64(virtualAddressBits - 1) : 1 << UInt64(virtualAddressBits)
        return address < lowerHalfEnd || address >= kernelAddressStart
    }

    /// Sizes a hugetlb folio may have on this architecture
    /// (`arch_hugetlb_valid_size()`): PMD and PUD leaves, plus arm64's
    /// contiguous 64K (16 PTEs) and 32M (16 PMDs).
    public var hugetlbSizes: [UInt64] {
        var sizes: [UInt64] = []
        if architecture == .arm64 { sizes.append(64 << 10) }
        if !isFolded(.pmd) { sizes.append(2 << 20) }
        if architecture == .arm64 && !isFolded(.pmd) { sizes.append(32 << 20) }
        if !isFolded(.pud) { sizes.append(1 << 30) }
        return sizes
    }

    /// Largest physical frame number an entry can hold.
    @inlinable public var maxPFN: UInt64 { layout.pfnMask >> Self.pageShift }
}
