import MemoryModel

extension AddressSpace {
    /// Opens an update walk of `range` under `lock`, which this call takes
    /// and drops, and runs `body` with it. The body iterates the walk with
    /// `forEach`; the walk cannot leave the body.
    ///
    /// Throws before the body runs for an invalid range (as `walk` does),
    /// for a kernel address space (its writers are not user walks), and for
    /// `.vma` over a range that leaves the VMA when the mmap lock cannot be
    /// used instead. The body's own error comes through unchanged.
    public func withUpdateWalk<R>(_ range: Range<UInt64>, lock: UpdateWalkLock = .mmapRead,
                                  options: UpdateWalkOptions = UpdateWalkOptions(),
                                  _ body: (inout UpdateWalk) throws(PageWalkError) -> R) throws(PageWalkError) -> R {
        try openUpdateWalk(range, lock: lock, options: options, mayInstall: false, body)
    }

    /// `withUpdateWalk` whose entries may `install` into none entries and
    /// allocate tables: `walk_page_range_mm()` with `install_pte`, which the
    /// kernel keeps to mm internals (guard regions). Package, not public.
    package func withInstallingWalk<R>(_ range: Range<UInt64>, lock: UpdateWalkLock = .mmapRead,
                                       options: UpdateWalkOptions = UpdateWalkOptions(),
                                       _ body: (inout UpdateWalk) throws(PageWalkError) -> R) throws(PageWalkError) -> R {
        try openUpdateWalk(range, lock: lock, options: options, mayInstall: true, body)
    }

    func openUpdateWalk<R>(_ range: Range<UInt64>, lock: UpdateWalkLock, options: UpdateWalkOptions, mayInstall: Bool,
                           _ body: (inout UpdateWalk) throws(PageWalkError) -> R) throws(PageWalkError) -> R {
        guard !isKernel else {
            throw .wrongAddressSpace("an update walk needs a user address space; kernel tables are walked read-only")
        }
        let walkOptions = options.rangeOptions
        /// Runs the body on a walk of `rw` whose shared state is a local of
        /// this frame.
        func start(_ rw: RangeWalk, _ used: UpdateWalkLock) throws(PageWalkError) -> R {
            var state = UpdateWalkState(mayInstall: mayInstall, layout: geometry.layout)
            return try withUnsafeMutablePointer(to: &state) { (p) throws(PageWalkError) -> R in
                var walk = UpdateWalk(rw, lock: used, state: p, splitsHugePMDs: options.splitHugePMDs)
                return try body(&walk)
            }
        }
        func run(_ token: MmapLockToken, _ used: UpdateWalkLock) throws(PageWalkError) -> R {
            try start(try self.walk(range, lock: token, options: walkOptions), used)
        }
        switch lock {
        case .mmapRead:
            return try withMmapReadLock { (t) throws(PageWalkError) in try run(t, .mmapRead) }
        case .mmapWrite:
            // Inside an operation that holds it already (mlock's folio walk).
            if let held = heldMmapLockToken(), held.mode == .write { return try run(held, .mmapWrite) }
            return try withMmapWriteLock { (t) throws(PageWalkError) in try run(t, .mmapWrite) }
        case .vma:
            // Inside an operation that holds a lock already (madvise's
            // per-VMA path, or its mmap-lock fallback): walk under it.
            if let held = heldMmapLockToken() { return try run(held, .mmapRead) }
            if MmapLockHolds.holdsVMARead(of: self), let vma = vmaLockless(containing: range.lowerBound),
               isVMALocked(vma), range.upperBound <= vma.end {
                return try start(try vmaLockedWalk(range, vma: vma, options: walkOptions), .vma)
            }
            if let vma = lockVMA(containing: range.lowerBound) {
                defer { unlockVMA(vma) }
                if range.upperBound <= vma.end && range.lowerBound < range.upperBound {
                    return try start(try vmaLockedWalk(range, vma: vma, options: walkOptions), .vma)
                }
            }
            return try withMmapReadLock { (t) throws(PageWalkError) in try run(t, .mmapRead) }
        }
    }

    /// A range walk under the read lock of `vma` alone.
    func vmaLockedWalk(_ range: Range<UInt64>, vma: VMA, options: RangeWalkOptions) throws(PageWalkError) -> RangeWalk {
        guard !isTornDown else { throw .model(.tornDown) }
        guard range.lowerBound & Geometry.pageOffsetMask == 0, range.upperBound & Geometry.pageOffsetMask == 0 else {
            throw .invalidRange(start: range.lowerBound, end: range.upperBound)
        }
        return RangeWalk(mm: self, start: range.lowerBound, end: range.upperBound, options: options, lockMode: .read,
                         lockedVMA: vma)
    }
}
