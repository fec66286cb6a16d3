/// The bit layout of one `/proc/PID/pagemap` word: one little-endian `u64`
/// per virtual page, as Linux 6.18 defines it in fs/proc/task_mmu.c
/// (docs/FORMATS.md, "pagemap").
///
/// The single definition of the format: ProcFS's `Pagemap` writes words with
/// these bits and KernelSnapshot's `PagemapWord` decodes them, so the writer
/// and the parser cannot disagree. Every member is an inlinable constant
/// (constant-folded into the callers, nothing stored or computed at run time).
///
/// | bits  | kernel name          | member                          |
/// |-------|----------------------|---------------------------------|
/// | 0–54  | `PM_PFRAME_MASK`     | `pfnMask`                       |
/// | 0–4   | swap type            | `swapTypeMask`                  |
/// | 5–54  | swap offset          | `swapOffsetShift`, `swapOffsetMask` |
/// | 55    | `PM_SOFT_DIRTY`      | `softDirty`                     |
/// | 56    | `PM_MMAP_EXCLUSIVE`  | `exclusive`                     |
/// | 57    | `PM_UFFD_WP`         | `uffdWP`                        |
/// | 58    | `PM_GUARD_REGION`    | `guardRegion`                   |
/// | 61    | `PM_FILE`            | `file`                          |
/// | 62    | `PM_SWAP`            | `swap`                          |
/// | 63    | `PM_PRESENT`         | `present`                       |
///
/// Bits 59 and 60 are unused (always zero).
public enum PagemapBits {
    /// Number of low bits that carry a frame or a swap entry (`PM_PFRAME_BITS`).
    /// `PM_ENTRY_BYTES`: one word per page.
    @inlinable public static var entryBytes: Int { MemoryLayout<UInt64>.size }
    @inlinable public static var frameBits: UInt64 { 55 }
    /// `PM_PFRAME_MASK`, bits 0–54: the page frame number of a present page,
    /// or the swap entry (type and offset) of a swap-format one. Zero for
    /// readers without CAP_SYS_ADMIN.
    @inlinable public static var pfnMask: UInt64 { (1 << frameBits) - 1 }

    /// Width of the swap type field (`MAX_SWAPFILES_SHIFT`): a swap entry is
    /// stored as `type | offset << 5`.
    @inlinable public static var swapTypeBits: UInt64 { 5 }
    /// Bits 0–4 of a swap-format word: the swap type (the swap device, or a
    /// special type for migration, device, hwpoison and marker entries).
    @inlinable public static var swapTypeMask: UInt64 { (1 << swapTypeBits) - 1 }
    /// Where the swap offset starts: bit 5.
    @inlinable public static var swapOffsetShift: UInt64 { swapTypeBits }
    /// Bits 5–54 of a swap-format word, shifted down: the swap offset (or
    /// the PFN of a migration, device or hwpoison entry; a marker's bits).
    @inlinable public static var swapOffsetMask: UInt64 { pfnMask >> swapOffsetShift }

    /// `PM_SOFT_DIRTY`, bit 55: the entry is soft-dirty, or the VMA has
    /// VM_SOFTDIRTY.
    @inlinable public static var softDirty: UInt64 { 1 << 55 }
    /// `PM_MMAP_EXCLUSIVE`, bit 56: a present page mapped exactly once.
    @inlinable public static var exclusive: UInt64 { 1 << 56 }
    /// `PM_UFFD_WP`, bit 57: userfaultfd write-protected (entry bit or
    /// uffd-wp PTE marker).
    @inlinable public static var uffdWP: UInt64 { 1 << 57 }
    /// `PM_GUARD_REGION`, bit 58: a guard-region PTE marker
    /// (MADV_GUARD_INSTALL).
    @inlinable public static var guardRegion: UInt64 { 1 << 58 }
    /// `PM_FILE`, bit 61: the page is a file page or shared anonymous
    /// (shmem) memory — its folio is not anon.
    @inlinable public static var file: UInt64 { 1 << 61 }
    /// `PM_SWAP`, bit 62: a swap-format entry (swap, migration, device,
    /// hwpoison or marker).
    @inlinable public static var swap: UInt64 { 1 << 62 }
    /// `PM_PRESENT`, bit 63: a present entry.
    @inlinable public static var present: UInt64 { 1 << 63 }

    /// The swap-entry part of a word (bits 0–54): `type | offset << 5`.
    @inlinable
    public static func swapEntry(type: UInt64, offset: UInt64) -> UInt64 {
        (type | offset << swapOffsetShift) & pfnMask
    }
}
