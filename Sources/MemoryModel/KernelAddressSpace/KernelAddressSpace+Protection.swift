/// arm64 memory types, the `MAIR_EL1` slots the kernel programs
/// (`MT_NORMAL` … `MT_DEVICE_nGnRE`); a leaf selects one with its
/// AttrIndx field (bits 2…4).
public enum Arm64MemoryType: UInt64, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case normal = 0
    case normalTagged = 1
    case normalNonCacheable = 2
    case deviceNGnRnE = 3
    case deviceNGnRE = 4

    public var description: String {
        switch self {
        case .normal: return "MEM/NORMAL"
        case .normalTagged: return "MEM/NORMAL-TAGGED"
        case .normalNonCacheable: return "MEM/NORMAL-NC"
        case .deviceNGnRnE: return "DEVICE/nGnRnE"
        case .deviceNGnRE: return "DEVICE/nGnRE"
        }
    }

    /// AttrIndx field position in an arm64 leaf.
    public static let shift: UInt64 = 2
    public static let mask: UInt64 = 7 << 2
}

/// The protection of a kernel mapping, as the kernel's `PAGE_KERNEL*`
/// pgprots express it, in layout-independent form.
///
/// `attributes` carries `.writable`, `.executable`, `.global`, `.young`,
/// `.dirty`, `.uncached`, `.contiguous` (arm64); the encoder turns them into
/// the architecture's bits:
/// - x86-64: present, RW, accessed, dirty, NX unless executable, GLB, PSE
///   for PMD/PUD leaves, PCD for `.uncached` and PWT for `writeThrough`.
/// - arm64: valid, page/block type, AF, inner-shareable, UXN always (kernel
///   mappings are never user-executable), PXN unless executable, RDONLY
///   (AP[2]) unless writable, DBM and PTE_DIRTY when writable, the contiguous
///   hint, and the AttrIndx of `memoryType` (Device-nGnRE for `.uncached`).
public struct KernelProtection: Hashable, Sendable, CustomStringConvertible {
    public var attributes: LeafAttributes
    /// x86 `_PAGE_PWT`; ignored on arm64.
    public var writeThrough: Bool
    /// arm64 AttrIndx; ignored on x86-64.
    public var memoryType: Arm64MemoryType

    public init(_ attributes: LeafAttributes, writeThrough: Bool = false, memoryType: Arm64MemoryType? = nil) {
        self.attributes = attributes
        self.writeThrough = writeThrough
        self.memoryType = memoryType ?? (attributes.contains(.uncached) ? .deviceNGnRE : .normal)
    }

    /// `PAGE_KERNEL`: read-write, not executable.
    public static let kernel = KernelProtection([.writable, .dirty, .young, .global])
    /// `PAGE_KERNEL_RO`.
    public static let kernelRO = KernelProtection([.young, .global])
    /// `PAGE_KERNEL_ROX`: kernel text.
    public static let kernelROX = KernelProtection([.young, .global, .executable])
    /// `PAGE_KERNEL_NOCACHE` (x86 PCD) / `PROT_DEVICE_nGnRE` (arm64).
    public static let kernelNoCache = KernelProtection([.writable, .dirty, .young, .global, .uncached])
    /// `PAGE_KERNEL_IO_NOCACHE`-style strong uncached (x86 PCD|PWT, arm64 Device-nGnRnE).
    public static let kernelUncachedStrong = KernelProtection(
        [.writable, .dirty, .young, .global, .uncached], writeThrough: true, memoryType: .deviceNGnRnE)

    public var isWritable: Bool { attributes.contains(.writable) }
    public var isExecutable: Bool { attributes.contains(.executable) }
    /// Writable and executable at once (what `ptdump_check_wx()` reports).
    public var isWX: Bool { isWritable && isExecutable }

    /// The same protection with the contiguous hint set or cleared.
    public func contiguous(_ on: Bool) -> KernelProtection {
        var p = self
        if on { p.attributes.insert(.contiguous) } else { p.attributes.remove(.contiguous) }
        return p
    }

    public var description: String {
        var s = isWritable ? "RW" : "ro"
        s += isExecutable ? " x" : " NX"
        if attributes.contains(.global) { s += " GLB" }
        if attributes.contains(.uncached) { s += " UC" }
        if writeThrough { s += " PWT" }
        if attributes.contains(.contiguous) { s += " CONT" }
        if memoryType != .normal { s += " \(memoryType)" }
        return s
    }

    /// Encodes a kernel leaf at `level` mapping `pfn`.
    public func encode(pfn: UInt64, level: PageTableLevel, layout l: EntryLayout) -> UInt64 {
        let a = attributes
        switch l.architecture {
        case .x86_64:
            var raw = l.leaf(pfn: pfn, level: level, a)
            if writeThrough { raw |= l.writeThrough }
            return raw
        case .arm64:
            var raw = (pfn << Geometry.pageShift) & l.pfnMask
            raw |= l.valid | (level == .pte ? l.tableBit : 0) | (3 << 8)
            if a.contains(.young) { raw |= l.young }
            if a.contains(.user) { raw |= l.user } else { raw |= l.noExecute }
            if !a.contains(.executable) || a.contains(.user) { raw |= l.privilegedNoExecute }
            if a.contains(.writable) {
                raw |= l.write
                if a.contains(.dirty) { raw |= l.dirty }
            } else {
                raw |= l.readOnly
            }
            if a.contains(.contiguous) { raw |= l.contiguous }
            if a.contains(.special) { raw |= l.special }
            raw |= memoryType.rawValue << Arm64MemoryType.shift
            return raw
        }
    }

    /// Decodes a present kernel leaf back to a protection, from the kernel's
    /// side: executable means x86 NX clear / arm64 PXN clear. Returns
    /// `.young`, `.dirty`, `.writable`, `.executable`, `.global` (x86),
    /// `.uncached`, `.contiguous`, `.user`.
    public init(decoding raw: UInt64, layout l: EntryLayout) {
        var a: LeafAttributes = []
        if raw & l.young != 0 { a.insert(.young) }
        if raw & l.user != 0 { a.insert(.user) }
        if raw & l.contiguous != 0 { a.insert(.contiguous) }
        if raw & l.special != 0 { a.insert(.special) }
        var mt = Arm64MemoryType.normal
        var wt = false
        switch l.architecture {
        case .x86_64:
            if raw & l.write != 0 { a.insert(.writable) }
            if raw & (1 << 6) != 0 { a.insert(.dirty) }
            if raw & l.noExecute == 0 { a.insert(.executable) }
            if raw & l.global != 0 { a.insert(.global) }
            if raw & l.cacheDisable != 0 { a.insert(.uncached) }
            wt = raw & l.writeThrough != 0
        case .arm64:
            if raw & l.readOnly == 0 { a.insert(.writable) }
            if raw & l.dirty != 0 || (raw & l.write != 0 && raw & l.readOnly == 0) { a.insert(.dirty) }
            if raw & l.privilegedNoExecute == 0 { a.insert(.executable) }
            mt = Arm64MemoryType(rawValue: (raw & Arm64MemoryType.mask) >> Arm64MemoryType.shift) ?? .normal
            if mt == .deviceNGnRE || mt == .deviceNGnRnE || mt == .normalNonCacheable { a.insert(.uncached) }
        }
        self.attributes = a
        self.writeThrough = wt
        self.memoryType = mt
    }
}
