/// How a walk expects its locks to be held.
///
/// Models the kernel's `enum page_walk_lock`, with the per-VMA locks of
/// `CONFIG_PER_VMA_LOCK`: `process_mm_walk_lock()` checks the mmap lock at
/// the entry point, `process_vma_walk_lock()` each VMA as the walk reaches it.
public enum PageWalkLock: Sendable, Hashable {
    /// `PGWALK_RDLOCK`: the mmap lock held for read (or write).
    case read
    /// `PGWALK_WRLOCK`: the mmap lock held for write; each VMA is
    /// write-locked (`vma_start_write()`) when the walk reaches it, so a
    /// fault on a VMA not reached yet still runs under its VMA lock.
    case write
    /// `PGWALK_WRLOCK_VERIFY`: the mmap lock held for write, and each VMA
    /// already write-locked by the caller (`vma_assert_write_locked()`).
    case writeVerify
    /// `PGWALK_VMA_RDLOCK_VERIFY` (6.16 and later, MADV_FREE): no mmap lock;
    /// the VMA walked is read-locked (`vma_assert_locked()`), as the
    /// madvise calls that need one VMA lock it (`AddressSpace.withVMAReadLock`).
    case vmaReadVerify
}
