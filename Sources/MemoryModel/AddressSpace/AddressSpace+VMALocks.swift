import Synchronization

/// How many lock attempts in front of a fault or a single-VMA madvise took
/// the VMA lock, and how many fell back to the mmap lock (the kernel's
/// `VMA_LOCK_SUCCESS` and `VMA_LOCK_ABORT` events).
public struct VMALockStatistics: Hashable, Sendable {
    public var vmaLocked: Int
    public var fellBack: Int
}

/// The two counters behind `VMALockStatistics`.
final class VMALockCounters: @unchecked Sendable {
    let vmaLocked = Atomic<Int>(0)
    let fellBack = Atomic<Int>(0)
}

extension AddressSpace {
    /// `vma_start_write()`: write-locks `vma` for the rest of the calling
    /// thread's mmap write hold, once the faults inside have left. A VMA of
    /// an address space nobody else can see yet (a fork child, a rebuild)
    /// needs no lock and gets none.
    package func vmaStartWrite(_ vma: VMA) {
        guard mmapLock.isWriteLockedByCurrentThread else { return }
        vma.vmaLock.startWrite(mmSequence: mmapLock.writeSequence)
    }

    /// `vm_flags_set()`: adds `flags` to `vma` under the mmap write lock,
    /// write-locking the VMA first (`vma_start_write()`), as walker users
    /// that mark a VMA before walking it do (powerpc's subpage_prot sets
    /// VM_NOHUGEPAGE).
    package func vmFlagsSet(_ vma: VMA, _ flags: VMFlags) throws(ModelError) {
        try assertMmapLocked(.write)
        vmaStartWrite(vma)
        vma.flags.formUnion(flags)
    }

    /// `vma_start_write()` on every VMA meeting `[start, end)`.
    func vmaStartWrite(_ start: UInt64, _ end: UInt64) {
        for vma in vmas(intersecting: start, end) { vmaStartWrite(vma) }
    }

    /// `lock_vma_under_rcu()`: the VMA containing `address`, read-locked,
    /// found without the mmap lock; nil when there is none, or it is
    /// write-locked or being detached (the caller then takes the mmap lock).
    /// Unlock with `unlockVMA(_:)`.
    public func lockVMA(containing address: UInt64) -> VMA? {
        anonVMALock.lockRead()
        defer { anonVMALock.unlockRead() }
        guard let vma = vma(containing: address),
              vma.vmaLock.tryRead(mmSequence: mmapLock.writeSequence) else {
            return nil
        }
        MmapLockHolds.pushVMARead(self)
        return vma
    }

    /// `find_vma()` under RCU: the VMA containing `address`, read without
    /// the mmap lock (a caller holding only a VMA lock).
    public func vmaLockless(containing address: UInt64) -> VMA? {
        anonVMALock.lockRead()
        defer { anonVMALock.unlockRead() }
        return vma(containing: address)
    }

    /// `vma_end_read()`.
    public func unlockVMA(_ vma: VMA) {
        MmapLockHolds.popVMARead(self)
        vma.vmaLock.endRead()
    }

    /// Runs `body` holding the VMA lock of the VMA containing `address`,
    /// without the mmap lock; nil, and `body` not run, when that lock cannot
    /// be had (no VMA there, or it is write-locked).
    public func withVMAReadLock<R, E: Error>(containing address: UInt64, _ body: (VMA) throws(E) -> R) throws(E) -> R? {
        guard let vma = lockVMA(containing: address) else { return nil }
        defer { unlockVMA(vma) }
        return try body(vma)
    }

    /// `vma_assert_locked()`: a reader is inside, or the calling thread's
    /// mmap write hold write-locked it.
    public func isVMALocked(_ vma: VMA) -> Bool {
        vma.vmaLock.isReadLocked || isVMAWriteLocked(vma)
    }

    /// `vma_assert_write_locked()`: the calling thread holds the mmap lock
    /// for write and has write-locked `vma` during this hold.
    public func isVMAWriteLocked(_ vma: VMA) -> Bool {
        mmapLock.isWriteLockedByCurrentThread
            && vma.vmaLock.isWriteLocked(mmSequence: mmapLock.writeSequence)
    }

    /// The lock statistics of this address space so far.
    public var vmaLockStatistics: VMALockStatistics {
        VMALockStatistics(vmaLocked: vmaLockCounters.vmaLocked.load(ordering: .relaxed),
                          fellBack: vmaLockCounters.fellBack.load(ordering: .relaxed))
    }

    /// The VMAs covering `[start, end)`, checked as `coveredVMAs` checks
    /// them, read without the mmap lock (the lookup `lock_vma_under_rcu()`
    /// makes under RCU): a snapshot for checks that must fail before any
    /// page is touched.
    func coveredVMAsLockless(_ start: UInt64, _ end: UInt64, operation: String) throws(ModelError) -> [VMA] {
        anonVMALock.lockRead()
        defer { anonVMALock.unlockRead() }
        return Array(try coveredVMAs(start, end, operation: operation))
    }

    /// Runs `body` on the VMA containing `address` as a page fault does
    /// (`do_user_addr_fault()`): under that VMA's lock when it can be had,
    /// else under the mmap lock for read (`lock_mm_and_find_vma()`), which
    /// waits for the writer that holds the VMA.
    func withFaultVMA<R>(at address: UInt64, _ body: (VMA) throws(ModelError) -> R) throws(ModelError) -> R {
        if let vma = lockVMA(containing: address) {
            defer { unlockVMA(vma) }
            vmaLockCounters.vmaLocked.add(1, ordering: .relaxed)
            return try body(vma)
        }
        vmaLockCounters.fellBack.add(1, ordering: .relaxed)
        return try withMmapReadLock { (_) throws(ModelError) -> R in
            guard let vma = vma(containing: address) else { throw .noVMA(address: address) }
            return try body(vma)
        }
    }

    /// Runs `body` on `[start, end)` as a madvise that needs one VMA only
    /// (`MADVISE_VMA_READ_LOCK`: MADV_DONTNEED, MADV_FREE): under the VMA
    /// lock when the range lies inside the VMA at `start` and that lock can
    /// be had, else under the mmap lock for read, VMA by VMA (`covered`).
    func withMadviseVMAs(_ start: UInt64, _ end: UInt64, operation: String,
                         _ body: (ArraySlice<VMA>) throws(ModelError) -> Void) throws(ModelError) {
        _ = try coveredVMAsLockless(start, end, operation: operation)
        if let vma = lockVMA(containing: start) {
            defer { unlockVMA(vma) }
            if end <= vma.end {
                vmaLockCounters.vmaLocked.add(1, ordering: .relaxed)
                return try body([vma][...])
            }
        }
        vmaLockCounters.fellBack.add(1, ordering: .relaxed)
        try withMmapReadLock { (_) throws(ModelError) in
            try body(try coveredVMAs(start, end, operation: operation))
        }
    }
}
