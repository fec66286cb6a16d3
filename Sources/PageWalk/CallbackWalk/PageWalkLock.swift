/// How a walk expects the mmap lock to be held.
///
/// Models the kernel's `enum page_walk_lock`. The model has no per-VMA
/// locks, so the two write modes differ only in name: both require the mmap
/// lock held for write by the calling thread (`mmap_assert_write_locked()`).
public enum PageWalkLock: Sendable, Hashable {
    /// `PGWALK_RDLOCK`: the mmap lock held for read (or write).
    case read
    /// `PGWALK_WRLOCK`: the mmap lock held for write; the kernel would also
    /// write-lock each VMA (`vma_start_write()`).
    case write
    /// `PGWALK_WRLOCK_VERIFY`: the mmap lock held for write; the kernel would
    /// assert each VMA is already write-locked.
    case writeVerify
}
