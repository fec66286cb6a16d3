import MemoryModel
import Synchronization

extension AddressSpace {
    /// Walks `range` with the range walker. The caller holds this address
    /// space's mmap lock (`lock` proves it); a kernel address space
    /// (`init_mm`) is walked by its tables alone.
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
        guard range.lowerBound < range.upperBound, range.lowerBound & 4095 == 0,
              range.upperBound & 4095 == 0 || toTop else {
            throw .invalidRange(start: range.lowerBound, end: range.upperBound)
        }
        if !isKernel && !options.ignoreVMAs && range.upperBound > geometry.userAddressLimit + 4096 {
            throw .invalidRange(start: range.lowerBound, end: range.upperBound)
        }
        return RangeWalk(mm: self, start: range.lowerBound, end: range.upperBound, options: options)
    }
}
