#if canImport(Glibc)
import Glibc
#endif

/// The mmap locks the calling thread holds: lockdep's held-lock stack,
/// for `mmap_lock` and the per-VMA locks only.
///
/// It is what lets the model refuse, by name, a request that would
/// deadlock in Linux (`mmap_write_lock()` while holding the same mm's
/// lock), and what a walk or an entry checks before it uses state that
/// only the lock keeps alive.
public struct MmapLockHolds {
    /// One hold: the address space (unretained: the hold ends before the
    /// `withMmap…Lock` call that made it returns) and its mode.
    struct Hold {
        let mm: UnsafeRawPointer
        let mode: LockMode
    }

    final class Stack {
        var holds: [Hold] = []
        /// The address spaces of the VMA read locks held.
        var vmaReads: [UnsafeRawPointer] = []
    }

    /// The calling thread's holds, created at its first lock.
    static var current: Stack {
        if let p = pthread_getspecific(stackKey) { return Unmanaged<Stack>.fromOpaque(p).takeUnretainedValue() }
        let s = Stack()
        pthread_setspecific(stackKey, Unmanaged.passRetained(s).toOpaque())
        return s
    }

    /// The mode in which the calling thread holds `mm`'s mmap lock, if it does.
    public static func mode(of mm: AddressSpace) -> LockMode? {
        let key = UnsafeRawPointer(Unmanaged.passUnretained(mm).toOpaque())
        guard let p = pthread_getspecific(stackKey) else { return nil }
        let holds = Unmanaged<Stack>.fromOpaque(p).takeUnretainedValue().holds
        return holds.last(where: { $0.mm == key })?.mode
    }

    /// `vma` (by identity) if the calling thread holds the mmap lock of an
    /// address space whose VMA list has it at `address`: the proof that a
    /// VMA known only by pointer is still alive. Allocates nothing.
    public static func heldVMA(_ vma: UnsafeRawPointer, at address: UInt64) -> VMA? {
        guard let p = pthread_getspecific(stackKey) else { return nil }
        for hold in Unmanaged<Stack>.fromOpaque(p).takeUnretainedValue().holds {
            let mm = Unmanaged<AddressSpace>.fromOpaque(hold.mm).takeUnretainedValue()
            if let v = mm.vma(containing: address), UnsafeRawPointer(Unmanaged.passUnretained(v).toOpaque()) == vma { return v }
        }
        return nil
    }

    /// Whether the calling thread holds a VMA lock of `mm` for read: a
    /// write request on `mm`'s mmap lock would then wait, in
    /// `vma_start_write()`, for the caller itself.
    public static func holdsVMARead(of mm: AddressSpace) -> Bool {
        let key = UnsafeRawPointer(Unmanaged.passUnretained(mm).toOpaque())
        guard let p = pthread_getspecific(stackKey) else { return false }
        return Unmanaged<Stack>.fromOpaque(p).takeUnretainedValue().vmaReads.contains(key)
    }

    static func pushVMARead(_ mm: AddressSpace) {
        current.vmaReads.append(UnsafeRawPointer(Unmanaged.passUnretained(mm).toOpaque()))
    }

    static func popVMARead(_ mm: AddressSpace) {
        let s = current
        let key = UnsafeRawPointer(Unmanaged.passUnretained(mm).toOpaque())
        if let i = s.vmaReads.lastIndex(of: key) { s.vmaReads.remove(at: i) }
    }

    static func push(_ mm: AddressSpace, _ mode: LockMode) {
        current.holds.append(Hold(mm: UnsafeRawPointer(Unmanaged.passUnretained(mm).toOpaque()), mode: mode))
    }

    static func pop(_ mm: AddressSpace) {
        let s = current
        let key = UnsafeRawPointer(Unmanaged.passUnretained(mm).toOpaque())
        if let i = s.holds.lastIndex(where: { $0.mm == key }) { s.holds.remove(at: i) }
    }
}

/// The thread-specific slot of `MmapLockHolds`; its stack is released with
/// the thread.
private let stackKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { p in
        if let p { Unmanaged<MmapLockHolds.Stack>.fromOpaque(p).release() }
    }
    return key
}()

/// An error type that can carry the model's refusal of a lock request that
/// would deadlock: what `withMmapWriteLock` throws when the calling thread
/// already holds that mm's mmap lock.
public protocol MmapLockRefusing: Error {
    static func refusing(_ error: ModelError) -> Self
}

extension ModelError: MmapLockRefusing {
    public static func refusing(_ error: ModelError) -> ModelError { error }
}
