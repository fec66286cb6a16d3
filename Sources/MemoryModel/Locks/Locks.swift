import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A small per-thread token, nonzero, used to record lock owners so that
/// lock assertions (`lockdep_assert_held()`) can ask "held by me?".
@inlinable
public func currentThreadToken() -> UInt32 {
    let t = UInt64(pthread_self())
    let token = UInt32(truncatingIfNeeded: (t >> Geometry.pageShift) ^ (t >> 40))
    return token == 0 ? 1 : token
}

@usableFromInline
func backoff(_ spins: inout Int) {
    spins += 1
    if spins > 64 { sched_yield() }
}

/// A spinning lock word: 0 when free, the owner's token when held.
///
/// Models a kernel `spinlock_t` (page-table locks, `page_table_lock`). It
/// lives in raw memory (the table metadata) so that one exists per table
/// without an object per table.
public struct SpinLockRef: @unchecked Sendable {
    @usableFromInline let word: UnsafeMutablePointer<Atomic<UInt32>>
    @inlinable init(_ word: UnsafeMutablePointer<Atomic<UInt32>>) { self.word = word }

    @inlinable
    public func lock() { lock(owner: currentThreadToken()) }

    /// Takes the lock for `me`, a `currentThreadToken()` the caller read
    /// once (walkers lock a table per step and need not ask again).
    @inlinable
    public func lock(owner me: UInt32) {
        var spins = 0
        while true {
            if word.pointee.load(ordering: .relaxed) == 0,
               word.pointee.compareExchange(expected: 0, desired: me, ordering: .acquiring).exchanged {
                return
            }
            backoff(&spins)
        }
    }

    @inlinable
    public func tryLock() -> Bool {
        word.pointee.compareExchange(expected: 0, desired: currentThreadToken(), ordering: .acquiring).exchanged
    }

    @inlinable
    public func unlock() {
        word.pointee.store(0, ordering: .releasing)
    }

    /// Whether any thread holds it (`spin_is_locked()`).
    @inlinable public var isLocked: Bool { word.pointee.load(ordering: .relaxed) != 0 }
    /// Whether the calling thread holds it (`lockdep_assert_held()`).
    @inlinable public var isHeldByCurrentThread: Bool { word.pointee.load(ordering: .relaxed) == currentThreadToken() }

    @inlinable
    public func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// A spin lock that owns its word (`mm->page_table_lock`).
public final class SpinLock: @unchecked Sendable {
    @usableFromInline let storage: UnsafeMutablePointer<Atomic<UInt32>>
    @inlinable public var ref: SpinLockRef { SpinLockRef(storage) }
    public init() {
        storage = .allocate(capacity: 1)
        storage.initialize(to: Atomic(0))
    }
    deinit { storage.deallocate() }
}

/// How a reader/writer lock is held.
public enum LockMode: Sendable, Hashable, CustomStringConvertible {
    case read, write
    public var description: String { self == .read ? "read" : "write" }
}

/// A reader/writer lock with owner tracking for assertions.
///
/// Models the kernel's `rw_semaphore` as used for `mmap_lock` and the
/// hugetlb VMA lock: many readers or one writer; a waiting writer blocks new
/// readers so writers are not starved.
public final class ReadWriteLock: @unchecked Sendable {
    // bits 0-31 readers, 32-61 waiting writers, 62 writer holds.
    private let state = Atomic<UInt64>(0)
    private let writerToken = Atomic<UInt32>(0)
    private let sequence = Atomic<UInt64>(0)
    private static let writerBit: UInt64 = 1 << 62
    private static let waiterUnit: UInt64 = 1 << 32
    private static let readerMask: UInt64 = 0xFFFF_FFFF
    private static let waiterMask: UInt64 = 0x3FFF_FFFF << 32

    public init() {}

    public func lockRead() {
        var spins = 0
        while !tryLockRead() { backoff(&spins) }
    }

    public func tryLockRead() -> Bool {
        let s = state.load(ordering: .relaxed)
        guard s & (ReadWriteLock.writerBit | ReadWriteLock.waiterMask) == 0 else { return false }
        return state.compareExchange(expected: s, desired: s + 1, ordering: .acquiring).exchanged
    }

    public func unlockRead() {
        state.subtract(1, ordering: .releasing)
    }

    public func lockWrite() {
        state.add(ReadWriteLock.waiterUnit, ordering: .relaxed)
        var spins = 0
        while true {
            let s = state.load(ordering: .relaxed)
            if s & (ReadWriteLock.writerBit | ReadWriteLock.readerMask) == 0 {
                let desired = (s - ReadWriteLock.waiterUnit) | ReadWriteLock.writerBit
                if state.compareExchange(expected: s, desired: desired, ordering: .acquiring).exchanged { break }
            }
            backoff(&spins)
        }
        writerToken.store(currentThreadToken(), ordering: .relaxed)
        sequence.add(1, ordering: .sequentiallyConsistent)
    }

    public func unlockWrite() {
        sequence.add(1, ordering: .sequentiallyConsistent)
        writerToken.store(0, ordering: .relaxed)
        state.bitwiseAnd(~ReadWriteLock.writerBit, ordering: .releasing)
    }

    /// Advanced when a writer takes the lock and when it releases it: odd
    /// while write-held. For `mmap_lock` this is `mm->mm_lock_seq`, whose
    /// advance at release unlocks every VMA the hold write-locked.
    public var writeSequence: UInt64 { sequence.load(ordering: .sequentiallyConsistent) }

    /// `rwsem_is_locked()`: held in any mode by anyone.
    public var isLocked: Bool { state.load(ordering: .relaxed) & (ReadWriteLock.writerBit | ReadWriteLock.readerMask) != 0 }
    /// Held for write by the calling thread.
    public var isWriteLockedByCurrentThread: Bool {
        state.load(ordering: .relaxed) & ReadWriteLock.writerBit != 0
            && writerToken.load(ordering: .relaxed) == currentThreadToken()
    }
    /// Number of readers holding it now.
    public var readerCount: Int { Int(state.load(ordering: .relaxed) & ReadWriteLock.readerMask) }
}
