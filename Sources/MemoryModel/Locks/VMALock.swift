import Synchronization

/// Models the per-VMA lock (`CONFIG_PER_VMA_LOCK`: `vm_refcnt` and
/// `vm_lock_seq` in `struct vm_area_struct`, Linux 6.15 and later).
///
/// Readers are page faults and the madvise calls that need no more than
/// one VMA (`lock_vma_under_rcu()`); they take it without the mmap lock
/// and never wait: a VMA that is write-locked or detached makes them fall
/// back to the mmap lock. A writer already holds the mmap lock for write;
/// `vma_start_write()` marks the VMA with the mm's current write sequence
/// and waits for the readers inside to leave. The mark needs no unlock: it
/// goes stale when `mmap_write_unlock()` advances the sequence.
public final class VMALock: @unchecked Sendable {
    /// Readers inside.
    private let readers = Atomic<Int>(0)
    /// The mm write sequence of the hold that write-locked it
    /// (`vm_lock_seq`); `unlockedSequence` before any.
    private let sequence = Atomic<UInt64>(VMALock.unlockedSequence)
    /// Removed from the mm's VMA tree (`vma_mark_detached()`).
    private let detached = Atomic<Bool>(false)
    /// A value the mm's sequence never takes (it starts at 0, odd while
    /// write-locked).
    static let unlockedSequence = UInt64.max

    init() {}

    /// `vma_start_read()`: enters as a reader unless the VMA is write-locked
    /// under `mmSequence` (the mm's current write sequence) or detached.
    /// The reader count is raised before the checks, the writer sets its
    /// mark before counting readers: one of them sees the other.
    func tryRead(mmSequence: UInt64) -> Bool {
        readers.add(1, ordering: .sequentiallyConsistent)
        if detached.load(ordering: .sequentiallyConsistent)
            || sequence.load(ordering: .sequentiallyConsistent) == mmSequence {
            readers.subtract(1, ordering: .releasing)
            return false
        }
        return true
    }

    /// `vma_end_read()`.
    func endRead() {
        readers.subtract(1, ordering: .releasing)
    }

    /// `vma_start_write()` for a hold whose sequence is `mmSequence` (the
    /// caller holds the mmap lock for write): marks the VMA, then waits for
    /// the readers already inside.
    func startWrite(mmSequence: UInt64) {
        if sequence.load(ordering: .relaxed) == mmSequence { return }
        sequence.store(mmSequence, ordering: .sequentiallyConsistent)
        var spins = 0
        while readers.load(ordering: .sequentiallyConsistent) != 0 { backoff(&spins) }
    }

    /// `vma_mark_detached()`; the caller has write-locked the VMA.
    func markDetached() {
        detached.store(true, ordering: .sequentiallyConsistent)
    }

    /// Whether a reader is inside (`vma_assert_locked()` without a writer).
    public var isReadLocked: Bool { readers.load(ordering: .acquiring) != 0 }
    /// Whether the hold with sequence `mmSequence` write-locked it.
    func isWriteLocked(mmSequence: UInt64) -> Bool { sequence.load(ordering: .acquiring) == mmSequence }
    /// Whether it left the mm's VMA tree.
    public var isDetached: Bool { detached.load(ordering: .acquiring) }
}
