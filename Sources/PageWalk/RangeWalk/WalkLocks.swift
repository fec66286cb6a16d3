import MemoryModel
import Synchronization


/// The locks a range walk holds at a time: at most one table lock (split
/// PTE lock, PMD lock or `page_table_lock`) and the hugetlb VMA lock.
@usableFromInline
struct HeldLocks {
    @usableFromInline var table: SpinLockRef?
    @usableFromInline var hugetlb: ReadWriteLock?
}

/// Owns the locks a range walk has taken, so that they are dropped when
/// the walk moves on — and when the `for` loop is left by `break`, `return`
/// or a throw, as the iterator holding this object is destroyed.
///
/// The state lives behind a pointer the iterator keeps: taking and dropping
/// a lock per table is then a plain store, with no exclusivity check on a
/// class property.
@usableFromInline
final class WalkLocks {
    @usableFromInline let held: UnsafeMutablePointer<HeldLocks>
    @usableFromInline let arena: TableArena

    @usableFromInline
    init(arena: TableArena) {
        self.arena = arena
        held = .allocate(capacity: 1)
        held.initialize(to: HeldLocks())
        arena.beginLocklessRead()
    }

    deinit {
        WalkLocks.release(held)
        held.deinitialize(count: 1)
        held.deallocate()
        arena.endLocklessRead()
    }

    @inlinable @inline(always)
    static func release(_ held: UnsafeMutablePointer<HeldLocks>) {
        if let t = held.pointee.table { t.unlock(); held.pointee.table = nil }
        if let h = held.pointee.hugetlb { h.unlockRead(); held.pointee.hugetlb = nil }
    }
}

extension RangeWalk.Iterator {
    /// Takes `lock` and records it as held, for `advance()` to drop.
    @inlinable @inline(always)
    func take(_ lock: SpinLockRef) {
        lock.lock(owner: owner)
        held.pointee.table = lock
    }
}
