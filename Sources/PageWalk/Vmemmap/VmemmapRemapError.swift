import MemoryModel

/// Why a vmemmap remap walk failed.
public enum VmemmapRemapError: Error, Equatable, Sendable {
    /// The walk failed (not a kernel address space, an invalid range).
    case walk(PageWalkError)
    /// No PTE table could be allocated for a split (-ENOMEM), or too few
    /// pages were given to restore the range (`alloc_vmemmap_page_list()`).
    case noMemory
    /// Restoring met a PTE that does not map the reuse page (the kernel's
    /// `BUG_ON` in `vmemmap_restore_pte()`).
    case notRemapped(address: UInt64)
    /// `start - reuse != PAGE_SIZE` (the kernel's `BUG_ON`).
    case reuseNotBeforeStart
}
