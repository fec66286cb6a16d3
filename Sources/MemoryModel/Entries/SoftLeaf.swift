/// A swap-device slot: `swp_entry_t` for a real swap device.
public struct SwapEntry: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// Swap device index, `0 ..< SoftLeaf.maxSwapFiles`.
    public var type: Int
    public var offset: UInt64
    @inlinable public init(type: Int, offset: UInt64) { self.type = type; self.offset = offset }
    public static func < (a: Self, b: Self) -> Bool { (a.type, a.offset) < (b.type, b.offset) }
    public var description: String { "swap(\(type):\(hex(offset)))" }
}

/// The three kinds of migration entry (`SWP_MIGRATION_READ`,
/// `SWP_MIGRATION_READ_EXCLUSIVE`, `SWP_MIGRATION_WRITE`).
public enum MigrationKind: Int, Hashable, Sendable, CaseIterable {
    case read, readExclusive, write
}

/// PTE marker bits (`PTE_MARKER_UFFD_WP`, `PTE_MARKER_POISONED`,
/// `PTE_MARKER_GUARD`).
public struct PTEMarker: OptionSet, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public static let uffdWP = PTEMarker(rawValue: 1 << 0)
    public static let poisoned = PTEMarker(rawValue: 1 << 1)
    public static let guardRegion = PTEMarker(rawValue: 1 << 2)
    public static let all: PTEMarker = [.uffdWP, .poisoned, .guardRegion]

    /// Whether a fault on this marker fails (`handle_pte_marker()`: a guard
    /// page signals SIGSEGV, a poisoned one SIGBUS); a uffd-wp marker alone
    /// is faulted through.
    @inlinable public var failsFaults: Bool { !isDisjoint(with: [.guardRegion, .poisoned]) }
}

/// What a non-present, non-none entry refers to: the kernel's "softleaf"
/// (`swp_entry_t` decoded by type: swap, migration, device, hwpoison, marker).
public enum SoftLeaf: Hashable, Sendable {
    case swap(SwapEntry)
    /// A page under migration; young/dirty are carried in the offset where
    /// the architecture has room (`SWP_MIG_YOUNG_BIT`, `SWP_MIG_DIRTY_BIT`).
    case migration(MigrationKind, pfn: UInt64, young: Bool, dirty: Bool)
    /// `SWP_DEVICE_READ` / `SWP_DEVICE_WRITE`.
    case devicePrivate(writable: Bool, pfn: UInt64)
    /// `SWP_DEVICE_EXCLUSIVE`.
    case deviceExclusive(pfn: UInt64)
    /// `SWP_HWPOISON`.
    case hwpoison(pfn: UInt64)
    /// `SWP_PTE_MARKER`.
    case marker(PTEMarker)

    /// Swap types the kernel reserves at the top of the 5-bit type space.
    @inlinable public static var maxSwapFiles: Int { 24 }
    static let hwpoisonType = 24
    static let migrationReadType = 25
    static let migrationReadExclusiveType = 26
    static let migrationWriteType = 27
    static let deviceWriteType = 28
    static let deviceReadType = 29
    static let deviceExclusiveType = 30
    static let markerType = 31

    /// The PFN this entry refers to, for entries that name a page.
    @inlinable
    public var pfn: UInt64? {
        switch self {
        case .migration(_, let pfn, _, _), .devicePrivate(_, let pfn), .deviceExclusive(let pfn),
             .hwpoison(let pfn):
            return pfn
        case .swap, .marker:
            return nil
        }
    }

    /// `(type, offset)` of the arch-independent `swp_entry_t`.
    func typeAndOffset(pfnBits: Int) -> (Int, UInt64) {
        switch self {
        case .swap(let e): return (e.type, e.offset)
        case .migration(let kind, let pfn, let young, let dirty):
            var off = pfn
            if young { off |= 1 << UInt64(pfnBits) }
            if dirty { off |= 1 << UInt64(pfnBits + 1) }
            return (SoftLeaf.migrationReadType + kind.rawValue, off)
        case .devicePrivate(let w, let pfn): return (w ? SoftLeaf.deviceWriteType : SoftLeaf.deviceReadType, pfn)
        case .deviceExclusive(let pfn): return (SoftLeaf.deviceExclusiveType, pfn)
        case .hwpoison(let pfn): return (SoftLeaf.hwpoisonType, pfn)
        case .marker(let m): return (SoftLeaf.markerType, m.rawValue)
        }
    }

    @usableFromInline
    init(type: Int, offset: UInt64, pfnBits: Int) {
        let pfnMask: UInt64 = (1 << UInt64(pfnBits)) - 1
        switch type {
        case SoftLeaf.hwpoisonType: self = .hwpoison(pfn: offset)
        case SoftLeaf.migrationReadType...SoftLeaf.migrationWriteType:
            self = .migration(MigrationKind(rawValue: type - SoftLeaf.migrationReadType)!,
                              pfn: offset & pfnMask,
                              young: offset & (1 << UInt64(pfnBits)) != 0,
                              dirty: offset & (1 << UInt64(pfnBits + 1)) != 0)
        case SoftLeaf.deviceWriteType: self = .devicePrivate(writable: true, pfn: offset)
        case SoftLeaf.deviceReadType: self = .devicePrivate(writable: false, pfn: offset)
        case SoftLeaf.deviceExclusiveType: self = .deviceExclusive(pfn: offset)
        case SoftLeaf.markerType: self = .marker(PTEMarker(rawValue: offset))
        default: self = .swap(SwapEntry(type: type, offset: offset))
        }
    }
}

/// The software bits a swap-format PTE keeps beside the softleaf
/// (`_PAGE_SWP_EXCLUSIVE`, `_PAGE_SWP_SOFT_DIRTY`, `_PAGE_SWP_UFFD_WP`).
public struct SwapPTEBits: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    @inlinable public static var exclusive: SwapPTEBits { SwapPTEBits(rawValue: 1 << 0) }
    @inlinable public static var softDirty: SwapPTEBits { SwapPTEBits(rawValue: 1 << 1) }
    @inlinable public static var uffdWP: SwapPTEBits { SwapPTEBits(rawValue: 1 << 2) }
}

/// A decoded non-present entry: its softleaf plus the swap-PTE bits.
public struct SoftLeafEntry: Hashable, Sendable, CustomStringConvertible {
    public var leaf: SoftLeaf
    public var bits: SwapPTEBits

    public init(_ leaf: SoftLeaf, bits: SwapPTEBits = []) {
        self.leaf = leaf
        self.bits = bits
    }

    /// Decodes a swap-format word (`pte_to_swp_entry()` plus the
    /// `pte_swp_*()` bit tests). The caller has checked it is neither none
    /// nor present.
    @inlinable
    public init(decoding raw: UInt64, layout l: EntryLayout) {
        self.init(SoftLeaf(type: l.swapType(raw), offset: l.swapOffset(raw), pfnBits: l.swapPFNBits), bits: l.swapBits(raw))
    }

    /// Encodes into a swap-format word (`swp_entry_to_pte()` plus the
    /// `pte_swp_mk*()` helpers). Soft-dirty is dropped where the architecture
    /// has no such bit, as the kernel's helpers are no-ops there.
    public func encode(_ l: EntryLayout) throws(ModelError) -> UInt64 {
        let (type, offset) = leaf.typeAndOffset(pfnBits: l.swapPFNBits)
        if case .swap(let e) = leaf, !(0..<SoftLeaf.maxSwapFiles).contains(e.type) {
            throw .invalidArgument(name: "swap type", reason: "\(e.type) is not in 0..<\(SoftLeaf.maxSwapFiles)")
        }
        if let pfn = leaf.pfn, pfn >> UInt64(l.swapPFNBits) != 0 {
            throw .invalidArgument(name: "pfn", reason: "\(hex(pfn)) exceeds \(l.swapPFNBits) bits")
        }
        if case .marker(let m) = leaf, m.isEmpty || !PTEMarker.all.isSuperset(of: m) {
            throw .invalidArgument(name: "marker", reason: "bits \(hex(m.rawValue)) are not a valid marker")
        }
        let offsetMask: UInt64 = (1 << UInt64(l.swapOffsetBits)) - 1
        guard offset & ~offsetMask == 0 else {
            throw .invalidArgument(name: "swap offset", reason: "\(hex(offset)) exceeds \(l.swapOffsetBits) bits")
        }
        let stored = l.swapOffsetInverted ? (~offset & offsetMask) : offset
        var raw = (UInt64(type) << UInt64(l.swapTypeShift)) | (stored << UInt64(l.swapOffsetShift))
        if bits.contains(.exclusive) { raw |= l.swapExclusive }
        if bits.contains(.softDirty) { raw |= l.swapSoftDirty }
        if bits.contains(.uffdWP) { raw |= l.swapUffdWP }
        // x86 stores the offset inverted: type 0 with the all-ones offset is
        // the zero word, which reads back as pte_none() (the kernel keeps
        // swap sizes below it, max_swapfile_size()).
        guard raw != 0 else {
            throw .invalidArgument(name: "swap offset", reason: "\(hex(offset)) with type \(type) encodes as a none entry")
        }
        return raw
    }

    public var description: String {
        var s = "\(leaf)"
        if !bits.isEmpty { s += " bits=\(bits.rawValue)" }
        return s
    }
}
