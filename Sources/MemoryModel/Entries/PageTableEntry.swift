/// What every page-table entry type shares: a 64-bit word in the
/// architecture's layout, and the kernel's `p?d_*()` predicates over it.
public protocol PageTableEntry: Hashable, Sendable, CustomStringConvertible {
    /// The level this entry type lives at.
    static var level: PageTableLevel { get }
    var rawValue: UInt64 { get }
    var architecture: Architecture { get }
    init(rawValue: UInt64, architecture: Architecture)
}

extension PageTableEntry {
    @inlinable @inline(always) public var layout: EntryLayout { architecture.layout }

    /// `p?d_none()`: the entry is empty.
    @inlinable public var isNone: Bool { rawValue == 0 }

    /// `p?d_present()`: maps something (a table or a leaf), including
    /// PROT_NONE entries whose hardware valid bit is clear.
    @inlinable
    public var isPresent: Bool {
        let l = layout
        var mask = l.valid | l.presentInvalid
        // x86 pmd_present()/pud_present() also count a PSE entry under
        // splitting as present.
        if Self.level != .pte { mask |= l.huge }
        return rawValue & mask != 0
    }

    /// `p?d_leaf()`: a present entry that maps memory directly (a huge page
    /// at PMD/PUD, every present PTE).
    @inlinable
    public var isLeaf: Bool {
        guard isPresent else { return false }
        switch Self.level {
        case .pte: return true
        case .p4d, .pgd: return false
        case .pmd, .pud:
            let l = layout
            return l.architecture == .x86_64 ? rawValue & l.huge != 0 : rawValue & l.tableBit == 0
        }
    }

    /// A present entry pointing to a lower table.
    @inlinable public var isTable: Bool { Self.level != .pte && isPresent && !isLeaf }

    /// Not none and not present: a swap-format entry (`is_swap_pte()`).
    @inlinable public var isSwapFormat: Bool { rawValue != 0 && !isPresent }

    /// `pte_write()`.
    @inlinable public var isWritable: Bool { isPresent && rawValue & layout.write != 0 }

    /// `pte_dirty()`: software or hardware dirty (arm64: DBM && !RDONLY).
    @inlinable
    public var isDirty: Bool {
        guard isPresent else { return false }
        let l = layout
        if rawValue & l.dirty != 0 { return true }
        return l.readOnly != 0 && rawValue & l.write != 0 && rawValue & l.readOnly == 0
    }

    /// `pte_young()`.
    @inlinable public var isYoung: Bool { isPresent && rawValue & layout.young != 0 }
    /// `pte_special()`: no struct page behind it (PFN maps, zero page).
    @inlinable public var isSpecial: Bool { isPresent && rawValue & layout.special != 0 }
    /// `pte_devmap()` (historic ZONE_DEVICE mapping bit).
    @inlinable public var isDevmap: Bool { isPresent && rawValue & layout.devmap != 0 }
    /// `pte_soft_dirty()`; always false on arm64.
    @inlinable public var isSoftDirty: Bool { isPresent && rawValue & layout.softDirty != 0 }
    /// `pte_uffd_wp()`.
    @inlinable public var isUffdWP: Bool { isPresent && rawValue & layout.uffdWP != 0 }
    /// arm64 `pte_cont()`.
    @inlinable public var isContiguous: Bool { isPresent && rawValue & layout.contiguous != 0 }
    /// User accessible.
    @inlinable public var isUser: Bool { rawValue & layout.user != 0 }
    /// Executable at the entry's privilege (NX/UXN clear).
    @inlinable public var isExecutable: Bool { rawValue & layout.noExecute == 0 }
    /// The hardware valid bit (x86 `_PAGE_PRESENT`).
    @inlinable public var isValid: Bool { rawValue & layout.valid != 0 }

    /// `p?d_pfn()`: the frame number of a present entry.
    @inlinable public var pfn: UInt64 { (rawValue & layout.pfnMask) >> Geometry.pageShift }

    /// The decoded non-present entry, or nil for none and present entries.
    @inlinable
    public var softLeaf: SoftLeafEntry? {
        isSwapFormat ? SoftLeafEntry(decoding: rawValue, layout: layout) : nil
    }

    /// The entry with `bits` set or cleared.
    @inlinable
    public func setting(_ bits: UInt64, _ on: Bool) -> Self {
        Self(rawValue: on ? rawValue | bits : rawValue & ~bits, architecture: architecture)
    }

    public var description: String {
        "\(Self.level)(0x" + String(rawValue, radix: 16) + ")"
    }
}

/// Models the kernel's `pte_t`.
public struct PTE: PageTableEntry {
    public static let level = PageTableLevel.pte
    public var rawValue: UInt64
    public let architecture: Architecture
    @inlinable public init(rawValue: UInt64, architecture: Architecture) {
        self.rawValue = rawValue; self.architecture = architecture
    }
}

/// Models the kernel's `pmd_t`.
public struct PMD: PageTableEntry {
    public static let level = PageTableLevel.pmd
    public var rawValue: UInt64
    public let architecture: Architecture
    @inlinable public init(rawValue: UInt64, architecture: Architecture) {
        self.rawValue = rawValue; self.architecture = architecture
    }
}

/// Models the kernel's `pud_t`.
public struct PUD: PageTableEntry {
    public static let level = PageTableLevel.pud
    public var rawValue: UInt64
    public let architecture: Architecture
    @inlinable public init(rawValue: UInt64, architecture: Architecture) {
        self.rawValue = rawValue; self.architecture = architecture
    }
}

/// Models the kernel's `p4d_t`.
public struct P4D: PageTableEntry {
    public static let level = PageTableLevel.p4d
    public var rawValue: UInt64
    public let architecture: Architecture
    @inlinable public init(rawValue: UInt64, architecture: Architecture) {
        self.rawValue = rawValue; self.architecture = architecture
    }
}

/// Models the kernel's `pgd_t`.
public struct PGD: PageTableEntry {
    public static let level = PageTableLevel.pgd
    public var rawValue: UInt64
    public let architecture: Architecture
    @inlinable public init(rawValue: UInt64, architecture: Architecture) {
        self.rawValue = rawValue; self.architecture = architecture
    }
}

/// The attributes of a present leaf, independent of the bit layout; used to
/// build entries (`mk_pte()` / `pfn_pte()` plus the `pte_mk*()` helpers).
public struct LeafAttributes: OptionSet, Hashable, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let writable = LeafAttributes(rawValue: 1 << 0)
    public static let dirty = LeafAttributes(rawValue: 1 << 1)
    public static let young = LeafAttributes(rawValue: 1 << 2)
    public static let special = LeafAttributes(rawValue: 1 << 3)
    public static let softDirty = LeafAttributes(rawValue: 1 << 4)
    public static let uffdWP = LeafAttributes(rawValue: 1 << 5)
    public static let user = LeafAttributes(rawValue: 1 << 6)
    public static let executable = LeafAttributes(rawValue: 1 << 7)
    public static let contiguous = LeafAttributes(rawValue: 1 << 8)
    public static let global = LeafAttributes(rawValue: 1 << 9)
    public static let devmap = LeafAttributes(rawValue: 1 << 10)
    /// Mapped but inaccessible (PROT_NONE): present without the valid bit.
    public static let protNone = LeafAttributes(rawValue: 1 << 11)
    public static let uncached = LeafAttributes(rawValue: 1 << 12)
}

extension EntryLayout {
    /// Builds a present leaf at `level` mapping `pfn` with `attributes`.
    @inlinable
    public func leaf(pfn: UInt64, level: PageTableLevel, _ a: LeafAttributes) -> UInt64 {
        var raw = (pfn << Geometry.pageShift) & pfnMask
        raw |= leafBaseBits(level: level)
        if a.contains(.protNone) { raw = (raw & ~valid) | presentInvalid }
        if a.contains(.young) { raw |= young }
        if a.contains(.special) { raw |= special }
        if a.contains(.softDirty) { raw |= softDirty }
        if a.contains(.uffdWP) { raw |= uffdWP }
        if a.contains(.user) { raw |= user }
        if !a.contains(.executable) { raw |= noExecute }
        if a.contains(.contiguous) { raw |= contiguous }
        if a.contains(.global) { raw |= global }
        if a.contains(.devmap) { raw |= devmap }
        if a.contains(.uncached) { raw |= cacheDisable }
        switch architecture {
        case .x86_64:
            if a.contains(.writable) { raw |= write }
            if a.contains(.dirty) { raw |= 1 << 6 }
        case .arm64:
            // User mappings are never executable by the kernel (PXN).
            if a.contains(.user) { raw |= privilegedNoExecute }
            if a.contains(.writable) {
                raw |= write
                if !a.contains(.dirty) { raw |= readOnly }
            } else {
                raw |= readOnly
            }
            if a.contains(.dirty) { raw |= dirty }
        }
        return raw
    }

    /// Builds a table entry pointing at the table in frame `pfn`.
    @inlinable
    public func table(pfn: UInt64, user: Bool) -> UInt64 {
        ((pfn << Geometry.pageShift) & pfnMask) | tableEntryBits(user: user)
    }

    /// Reads back the layout-independent attributes of a present leaf.
    @inlinable
    public func attributes(of raw: UInt64, level: PageTableLevel) -> LeafAttributes {
        var a: LeafAttributes = []
        if raw & valid == 0 && raw & presentInvalid != 0 { a.insert(.protNone) }
        if raw & write != 0 { a.insert(.writable) }
        let hwDirty = readOnly != 0 && raw & write != 0 && raw & readOnly == 0
        if raw & dirty != 0 || hwDirty { a.insert(.dirty) }
        if raw & young != 0 { a.insert(.young) }
        if raw & special != 0 { a.insert(.special) }
        if raw & softDirty != 0 { a.insert(.softDirty) }
        if raw & uffdWP != 0 { a.insert(.uffdWP) }
        if raw & user != 0 { a.insert(.user) }
        if raw & noExecute == 0 { a.insert(.executable) }
        if raw & contiguous != 0 { a.insert(.contiguous) }
        if global != 0 && raw & global != 0 && raw & valid != 0 { a.insert(.global) }
        if raw & devmap != 0 { a.insert(.devmap) }
        if cacheDisable != 0 && raw & cacheDisable != 0 { a.insert(.uncached) }
        return a
    }
}
