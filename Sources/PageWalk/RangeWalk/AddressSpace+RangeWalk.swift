import MemoryModel
import Synchronization

extension AddressSpace {
    /// Walks `range` with the range walker. The caller holds this address
    /// space's mmap lock (`lock` proves it); a kernel address space
    /// (`init_mm`) is walked by its tables alone.
    ///
    /// Throws only when the walk cannot start, before anything is yielded:
    /// - `.wrongAddressSpace`: `lock` is another address space's token;
    /// - `.lockNotHeld`: the token's lock is no longer held by this thread;
    /// - `.model(.tornDown)`: the address space was torn down;
    /// - `.invalidRange`: an empty or unaligned range, or one past the user
    ///   address limit (table-only walks may end at `UInt64.max`).
    ///
    /// The iteration itself never throws: every entry is a value.
    public func walk(_ range: Range<UInt64>, lock: MmapLockToken,
                     options: RangeWalkOptions = RangeWalkOptions()) throws(PageWalkError) -> RangeWalk {
        guard lock.mm === self else {
            throw .wrongAddressSpace("the lock token belongs to pid \(lock.mm.options.pid), not pid \(self.options.pid)")
        }
        do { try assertMmapLocked(lock.mode) } catch { throw .lockNotHeld(error.description) }
        guard !isTornDown else { throw .model(.tornDown) }
        // A table-only walk may end at 2^64 - 1: to the top of the address
        // space, as the kernel's walks to ~0UL do.
        let toTop = range.upperBound == UInt64.max && (isKernel || options.ignoreVMAs)
        guard range.lowerBound < range.upperBound, range.lowerBound & Geometry.pageOffsetMask == 0,
              range.upperBound & Geometry.pageOffsetMask == 0 || toTop else {
            throw .invalidRange(start: range.lowerBound, end: range.upperBound)
        }
        if !isKernel && !options.ignoreVMAs && range.upperBound > geometry.userAddressLimit + Geometry.pageSize {
            throw .invalidRange(start: range.lowerBound, end: range.upperBound)
        }
        return RangeWalk(mm: self, start: range.lowerBound, end: range.upperBound, options: options, lockMode: lock.mode)
    }
}

extension AddressSpace {
    /// Takes the mmap lock in `mode`, opens a range walk of `range` and
    /// hands it to `body`; the walk's table locks and the mmap lock are
    /// dropped when `body` returns.
    ///
    /// The body cannot throw, so a caller needs no annotation: Swift 6.3
    /// infers a closure that contains `try` as throwing `any Error`, even
    /// where the parameter's type names the error, so a closure given to
    /// `withMmapReadLock` that calls `walk` must be written
    /// `{ (lock) throws(PageWalkError) in … }` in a caller declared
    /// `throws(PageWalkError)`. The errors are those of `walk(_:lock:options:)`.
    public func withRangeWalk<R>(_ range: Range<UInt64>, lock mode: LockMode = .read,
                                 options: RangeWalkOptions = RangeWalkOptions(),
                                 _ body: (RangeWalk) -> R) throws(PageWalkError) -> R {
        let locked = { (lock: MmapLockToken) throws(PageWalkError) -> R in
            body(try self.walk(range, lock: lock, options: options))
        }
        return mode == .write ? try withMmapWriteLock(locked) : try withMmapReadLock(locked)
    }
}
