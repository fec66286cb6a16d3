/// The bit layout of a page-table entry on one architecture.
///
/// Models the `_PAGE_*` (x86-64, `pgtable_types.h`) and `PTE_*`/`PMD_*`
/// (arm64, `pgtable-hwdef.h`/`pgtable-prot.h`) definitions, including the
/// software bits and the layout of non-present (swap) entries. Predicates on
/// `PTE`, `PMD`, … read their bits through this table so that one walker
/// serves both architectures without branches in the hot path.
public struct EntryLayout: Sendable, Hashable {
    public let architecture: Architecture
    /// Hardware valid/present bit.
    public let valid: UInt64
    /// Bits that make a non-valid entry still `p?d_present()` (x86 PROT_NONE
    /// uses the global bit; arm64 `PTE_PRESENT_INVALID`).
    public let presentInvalid: UInt64
    /// Writable: x86 `_PAGE_RW`; arm64 `PTE_WRITE` (= DBM).
    public let write: UInt64
    /// arm64 `PTE_RDONLY` (AP[2]); zero on x86.
    public let readOnly: UInt64
    public let user: UInt64
    /// Accessed: x86 `_PAGE_ACCESSED`, arm64 `PTE_AF`.
    public let young: UInt64
    /// Hardware or software dirty: x86 `_PAGE_DIRTY | _PAGE_SAVED_DIRTY`,
    /// arm64 `PTE_DIRTY` (hardware dirty is DBM && !RDONLY).
    public let dirty: UInt64
    /// x86 `_PAGE_PSE`; on arm64 a leaf is a block (table bit clear).
    public let huge: UInt64
    /// arm64 table/page bit (bit 1).
    public let tableBit: UInt64
    public let global: UInt64
    public let noExecute: UInt64
    public let privilegedNoExecute: UInt64
    public let special: UInt64
    public let devmap: UInt64
    public let softDirty: UInt64
    public let uffdWP: UInt64
    /// arm64 `PTE_CONT`; zero on x86.
    public let contiguous: UInt64
    public let writeThrough: UInt64
    public let cacheDisable: UInt64
    /// Physical address bits (frame number << 12).
    public let pfnMask: UInt64

    // Non-present (swap) entries.
    public let swapExclusive: UInt64
    public let swapSoftDirty: UInt64
    public let swapUffdWP: UInt64
    public let swapTypeShift: Int
    public let swapOffsetShift: Int
    /// x86 stores the offset inverted (L1TF mitigation).
    public let swapOffsetInverted: Bool
    /// Bits of swap offset the entry holds.
    public let swapOffsetBits: Int
    /// `MAX_PHYSMEM_BITS - PAGE_SHIFT`: the PFN part of a migration entry's
    /// offset; the bits above it hold the young and dirty bits.
    public let swapPFNBits: Int

    /// Memberwise, inlinable so that the two layouts below are constants.
    @inlinable @inline(always)
    init(architecture: Architecture, valid: UInt64, presentInvalid: UInt64, write: UInt64, readOnly: UInt64,
         user: UInt64, young: UInt64, dirty: UInt64, huge: UInt64, tableBit: UInt64, global: UInt64,
         noExecute: UInt64, privilegedNoExecute: UInt64, special: UInt64, devmap: UInt64, softDirty: UInt64,
         uffdWP: UInt64, contiguous: UInt64, writeThrough: UInt64, cacheDisable: UInt64, pfnMask: UInt64,
         swapExclusive: UInt64, swapSoftDirty: UInt64, swapUffdWP: UInt64, swapTypeShift: Int, swapOffsetShift: Int,
         swapOffsetInverted: Bool, swapOffsetBits: Int, swapPFNBits: Int) {
        self.architecture = architecture
        self.valid = valid
        self.presentInvalid = presentInvalid
        self.write = write
        self.readOnly = readOnly
        self.user = user
        self.young = young
        self.dirty = dirty
        self.huge = huge
        self.tableBit = tableBit
        self.global = global
        self.noExecute = noExecute
        self.privilegedNoExecute = privilegedNoExecute
        self.special = special
        self.devmap = devmap
        self.softDirty = softDirty
        self.uffdWP = uffdWP
        self.contiguous = contiguous
        self.writeThrough = writeThrough
        self.cacheDisable = cacheDisable
        self.pfnMask = pfnMask
        self.swapExclusive = swapExclusive
        self.swapSoftDirty = swapSoftDirty
        self.swapUffdWP = swapUffdWP
        self.swapTypeShift = swapTypeShift
        self.swapOffsetShift = swapOffsetShift
        self.swapOffsetInverted = swapOffsetInverted
        self.swapOffsetBits = swapOffsetBits
        self.swapPFNBits = swapPFNBits
    }

    /// x86-64 (`arch/x86/include/asm/pgtable_types.h`, `pgtable_64.h`).
    /// (Computed and always inlined, as `arm64` is: where the architecture
    /// is known its bits are constants, and no lazy global is read.)
    @inlinable @inline(always) public static var x86_64: EntryLayout { EntryLayout(
        architecture: .x86_64,
        valid: 1 << 0, presentInvalid: 1 << 8, write: 1 << 1, readOnly: 0, user: 1 << 2,
        young: 1 << 5, dirty: (1 << 6) | (1 << 57), huge: 1 << 7, tableBit: 0, global: 1 << 8,
        noExecute: 1 << 63, privilegedNoExecute: 0, special: 1 << 9, devmap: 1 << 58,
        softDirty: 1 << 11, uffdWP: 1 << 10, contiguous: 0, writeThrough: 1 << 3,
        cacheDisable: 1 << 4, pfnMask: 0x000F_FFFF_FFFF_F000,
        swapExclusive: 1 << 3, swapSoftDirty: 1 << 1, swapUffdWP: 1 << 2,
        swapTypeShift: 59, swapOffsetShift: 9, swapOffsetInverted: true, swapOffsetBits: 50,
        swapPFNBits: 40) }

    /// arm64 with a 4K granule (`arch/arm64/include/asm/pgtable-hwdef.h`,
    /// `pgtable-prot.h`, `pgtable.h`). arm64 has no soft-dirty support.
    @inlinable @inline(always) public static var arm64: EntryLayout { EntryLayout(
        architecture: .arm64,
        valid: 1 << 0, presentInvalid: 1 << 11, write: 1 << 51, readOnly: 1 << 7, user: 1 << 6,
        young: 1 << 10, dirty: 1 << 55, huge: 0, tableBit: 1 << 1, global: 0,
        noExecute: 1 << 54, privilegedNoExecute: 1 << 53, special: 1 << 56, devmap: 1 << 57,
        softDirty: 0, uffdWP: 1 << 58, contiguous: 1 << 52, writeThrough: 0,
        cacheDisable: 0, pfnMask: 0x0000_FFFF_FFFF_F000,
        swapExclusive: 1 << 2, swapSoftDirty: 0, swapUffdWP: 1 << 3,
        swapTypeShift: 6, swapOffsetShift: 12, swapOffsetInverted: false, swapOffsetBits: 50,
        swapPFNBits: 36) }

    /// Whether the architecture tracks soft-dirty (`CONFIG_HAVE_ARCH_SOFT_DIRTY`).
    @inlinable public var supportsSoftDirty: Bool { softDirty != 0 }

    /// The softleaf type of a non-present, non-none word (`__swp_type()`):
    /// 0 ..< `SoftLeaf.maxSwapFiles` for swap entries, the reserved types above.
    @inlinable @inline(always)
    public func swapType(_ raw: UInt64) -> Int { Int(truncatingIfNeeded: (raw >> UInt64(swapTypeShift)) & 31) }

    /// The offset field of a non-present word (`__swp_offset()`).
    @inlinable @inline(always)
    public func swapOffset(_ raw: UInt64) -> UInt64 {
        let field = raw >> UInt64(swapOffsetShift)
        return (swapOffsetInverted ? ~field : field) & ((1 << UInt64(swapOffsetBits)) - 1)
    }

    /// What one more in the offset adds to the word (`pte_next_swp_offset()`;
    /// the offset is stored inverted on x86-64).
    @inlinable public var swapOffsetStep: UInt64 {
        swapOffsetInverted ? 0 &- (1 << UInt64(swapOffsetShift)) : 1 << UInt64(swapOffsetShift)
    }

    /// The swap-PTE bits of a non-present word (`pte_swp_exclusive()`, …).
    @inlinable @inline(always)
    public func swapBits(_ raw: UInt64) -> SwapPTEBits {
        var bits: SwapPTEBits = []
        if raw & swapExclusive != 0 { bits.insert(.exclusive) }
        if swapSoftDirty != 0 && raw & swapSoftDirty != 0 { bits.insert(.softDirty) }
        if raw & swapUffdWP != 0 { bits.insert(.uffdWP) }
        return bits
    }

    /// The bits a table (non-leaf) entry carries besides the frame number:
    /// x86 `_PAGE_TABLE` (user) / `_KERNPG_TABLE`; arm64 `PMD_TYPE_TABLE`.
    @inlinable
    public func tableEntryBits(user isUser: Bool) -> UInt64 {
        switch architecture {
        case .x86_64: return valid | write | young | dirty & (1 << 6) | (isUser ? user : 0)
        case .arm64: return valid | tableBit
        }
    }

    /// The bits every present leaf carries (x86: present; arm64: valid, the
    /// page/block type, access flag handled separately, inner shareable).
    @inlinable
    public func leafBaseBits(level: PageTableLevel) -> UInt64 {
        switch architecture {
        case .x86_64: return valid | (level == .pte ? 0 : huge)
        case .arm64: return valid | (level == .pte ? tableBit : 0) | (3 << 8)
        }
    }
}
