import MemoryModel

// The entry points of the callback walker: models the exported functions of
// the kernel's mm/pagewalk.c. Each returns 0 when the walk went through, or
// the positive value a handler stopped it with; failures (the kernel's
// negative returns) are thrown as `PageWalkError`. The caller's data is
// passed `inout` and carries what the handlers left in `privateData`.

/// `process_mm_walk_lock()`: the mmap lock the walk mode requires (none
/// for `.vmaReadVerify`, whose VMA lock is checked per VMA).
@usableFromInline
func assertWalkLock(_ mm: AddressSpace, _ mode: PageWalkLock) throws(PageWalkError) {
    do {
        switch mode {
        case .read: try mm.assertMmapLocked(.read)
        case .write, .writeVerify: try mm.assertMmapLocked(.write)
        case .vmaReadVerify: return
        }
    } catch {
        throw .lockNotHeld(error.description)
    }
}

/// `process_vma_walk_lock()`: write-locks `vma` for `.write`, checks the
/// VMA lock the other per-VMA modes expect.
@usableFromInline
func processVMAWalkLock(_ mm: AddressSpace, _ vma: VMA, _ mode: PageWalkLock) throws(PageWalkError) {
    switch mode {
    case .read: return
    case .write: mm.vmaStartWrite(vma)
    case .writeVerify:
        guard mm.isVMAWriteLocked(vma) else { throw .lockNotHeld("\(vma) is not write-locked by this thread") }
    case .vmaReadVerify:
        guard mm.isVMALocked(vma) else { throw .lockNotHeld("\(vma) is not VMA-locked") }
    }
}

/// The checks every entry point makes before touching a table, as the range
/// walker makes them: the address space is alive (its tables are freed once
/// torn down), and the range is non-empty, page aligned and inside the
/// address space (a table-only walk may run to the top, 2^64 - 1, as the
/// kernel's walks to ~0UL do).
@usableFromInline
func checkWalk(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64, tablesOnly: Bool) throws(PageWalkError) {
    guard !mm.isTornDown else { throw .model(.tornDown) }
    let toTop = end == UInt64.max && (tablesOnly || mm.isKernel)
    guard start < end, start & Geometry.pageOffsetMask == 0, end & Geometry.pageOffsetMask == 0 || toTop else {
        throw .invalidRange(start: start, end: end)
    }
    if !mm.isKernel && !tablesOnly && end > mm.geometry.userAddressLimit + Geometry.pageSize {
        throw .invalidRange(start: start, end: end)
    }
}

/// Turns a level function's `int` into the entry point's result.
@usableFromInline
func finishWalk<Private>(_ err: Int32, _ walk: MMWalk<Private>) throws(PageWalkError) -> Int32 {
    if err < 0 { throw walk.failure ?? .handlerError(err) }
    return err
}

/// Runs `body` as a lockless table reader (`rcu_read_lock()` around the
/// unlocked descent), so tables freed meanwhile are not reused under it.
@inlinable
func withLocklessRead<R>(_ mm: AddressSpace, _ body: () -> R) -> R {
    mm.memory.tables.beginLocklessRead()
    defer { mm.memory.tables.endLocklessRead() }
    return body()
}

/// Models `walk_page_range_mm()`: walks `[start, end)` of `mm` VMA by VMA,
/// with every operation allowed, `install_pte` included. Internal to memory
/// management (the kernel keeps it in mm/internal.h); the public entry
/// points refuse `install_pte`.
@inlinable
package func walkPageRangeMM<Private>(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64,
                                      ops: MMWalkOps<Private>,
                                      private data: inout Private) throws(PageWalkError) -> Int32 {
    try checkWalk(mm, start, end, tablesOnly: false)
    try assertWalkLock(mm, ops.walkLock)
    var walk = MMWalk(mm: mm, privateData: data)
    let walker = PageTableWalker(ClosureWalkHandlers(ops), mm: mm)
    let err = withLocklessRead(mm) { walker.walkVMAs(start, end, &walk) }
    data = walk.privateData
    return try finishWalk(err, walk)
}

/// Models `walk_page_range()`: walks the page tables of `[start, end)` of
/// `mm` over its VMAs (gaps are depth -1 holes). The mmap lock must be held
/// as `ops.walkLock` says; `install_pte` is refused (`check_ops_valid()`).
@inlinable
public func walkPageRange<Private>(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64,
                                   ops: MMWalkOps<Private>,
                                   private data: inout Private) throws(PageWalkError) -> Int32 {
    guard ops.isValidForPublicWalk else { throw .installNotPermitted }
    return try walkPageRangeMM(mm, start, end, ops: ops, private: &data)
}

/// `walkPageRange` without caller data.
@inlinable
public func walkPageRange(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64,
                          ops: MMWalkOps<Void>) throws(PageWalkError) -> Int32 {
    var none: Void = ()
    return try walkPageRange(mm, start, end, ops: ops, private: &none)
}

/// Checks that `vma` is one of `mm`'s (the kernel reads `vma->vm_mm`).
@usableFromInline
func checkOwner(_ mm: AddressSpace, _ vma: VMA) throws(PageWalkError) {
    guard mm.vmaLockless(containing: vma.start) === vma else {
        throw .wrongAddressSpace("\(vma) is not a VMA of \(mm)")
    }
}

/// Models `walk_page_range_vma()`: walks `[start, end)` inside one VMA.
/// Unlike `walkPageRange` there is no `walk_page_test()`: a VM_PFNMAP VMA
/// is walked like any other.
@inlinable
public func walkPageRangeVMA<Private>(_ mm: AddressSpace, _ vma: VMA, _ start: UInt64, _ end: UInt64,
                                      ops: MMWalkOps<Private>,
                                      private data: inout Private) throws(PageWalkError) -> Int32 {
    try checkWalk(mm, start, end, tablesOnly: false)
    guard start >= vma.start, end <= vma.end else { throw .invalidRange(start: start, end: end) }
    guard ops.isValidForPublicWalk else { throw .installNotPermitted }
    try assertWalkLock(mm, ops.walkLock)
    try checkOwner(mm, vma)
    try processVMAWalkLock(mm, vma, ops.walkLock)
    var walk = MMWalk(mm: mm, vma: vma, privateData: data)
    let walker = PageTableWalker(ClosureWalkHandlers(ops), mm: mm)
    let err = withLocklessRead(mm) { walker.walkVMARange(start, end, &walk) }
    data = walk.privateData
    return try finishWalk(err, walk)
}

/// Models `walk_page_vma()`: walks the whole of one VMA.
@inlinable
public func walkPageVMA<Private>(_ mm: AddressSpace, _ vma: VMA, ops: MMWalkOps<Private>,
                                 private data: inout Private) throws(PageWalkError) -> Int32 {
    guard ops.isValidForPublicWalk else { throw .installNotPermitted }
    guard !mm.isTornDown else { throw .model(.tornDown) }
    try assertWalkLock(mm, ops.walkLock)
    try checkOwner(mm, vma)
    try processVMAWalkLock(mm, vma, ops.walkLock)
    var walk = MMWalk(mm: mm, vma: vma, privateData: data)
    let walker = PageTableWalker(ClosureWalkHandlers(ops), mm: mm)
    let err = withLocklessRead(mm) { walker.walkVMARange(vma.start, vma.end, &walk) }
    data = walk.privateData
    return try finishWalk(err, walk)
}

/// Models `walk_page_mapping()`: walks every VMA, in every address space on
/// `memory`, that maps file pages `firstIndex ..< firstIndex + count` of
/// `file`, clipped to those pages. VMAs come in file-offset order, as the
/// i_mmap interval tree yields them. As in the kernel, no mmap lock is
/// asserted (the kernel holds `i_mmap_rwsem`, which the model lacks: the
/// caller must keep the VMAs from changing), and a `test_walk` result > 0
/// ends the whole walk rather than skipping one VMA.
public func walkPageMapping<Private>(_ memory: PhysicalMemory, _ file: FileObject, firstIndex: UInt64, count: UInt64,
                                     ops: MMWalkOps<Private>,
                                     private data: inout Private) throws(PageWalkError) -> Int32 {
    guard ops.isValidForPublicWalk else { throw .installNotPermitted }
    let mapped = FileMappingRange.covering(memory, file, firstIndex: firstIndex, count: count)
    guard let firstMM = mapped.first?.mm else { return 0 }
    var walk = MMWalk(mm: firstMM, privateData: data)
    var err: Int32 = 0
    for m in mapped {
        walk.mm = m.mm
        walk.vma = m.vma
        let walker = PageTableWalker(ClosureWalkHandlers(ops), mm: m.mm)
        let test = walker.walkPageTest(m.vma.start, m.vma.end, &walk)
        if test > 0 { err = 0; break }   // the kernel ends the whole walk here
        if test < 0 { err = test; break }
        err = withLocklessRead(m.mm) { walker.walkVMARange(m.start, m.end, &walk) }
        if err != 0 { break }
    }
    data = walk.privateData
    return try finishWalk(err, walk)
}

/// Models `walk_kernel_page_table_range()`: walks the kernel's own tables
/// (`initMM`, no VMAs) from `root` (`pgd`, default the kernel root). The
/// mmap read lock of `initMM` must be held; PTE handlers run without the
/// PTE lock and leaves above the PTE level are not descended.
public func walkKernelPageTableRange<Private>(_ initMM: AddressSpace, _ start: UInt64, _ end: UInt64,
                                              ops: MMWalkOps<Private>, root: TableID? = nil,
                                              private data: inout Private) throws(PageWalkError) -> Int32 {
    try kernelTableWalk(initMM, start, end, ops: ops, root: root, lockless: false, &data)
}

/// Models `walk_kernel_page_table_range_lockless()`: as
/// `walkKernelPageTableRange`, but takes and asserts no lock; the caller
/// owns the range (arm64's `set_memory_*()` and its boot-time split of the
/// linear map).
public func walkKernelPageTableRangeLockless<Private>(_ initMM: AddressSpace, _ start: UInt64, _ end: UInt64,
                                                      ops: MMWalkOps<Private>, root: TableID? = nil,
                                                      private data: inout Private) throws(PageWalkError) -> Int32 {
    try kernelTableWalk(initMM, start, end, ops: ops, root: root, lockless: true, &data)
}

func kernelTableWalk<Private>(_ initMM: AddressSpace, _ start: UInt64, _ end: UInt64, ops: MMWalkOps<Private>,
                              root: TableID?, lockless: Bool, _ data: inout Private) throws(PageWalkError) -> Int32 {
    guard ops.isValidForPublicWalk else { throw .installNotPermitted }
    guard initMM.isKernel else { throw .wrongAddressSpace("\(initMM) is not a kernel address space") }
    try checkWalk(initMM, start, end, tablesOnly: true)
    if !lockless { try assertWalkLock(initMM, .read) }
    var walk = MMWalk(mm: initMM, privateData: data, noVMA: true, root: root)
    let walker = PageTableWalker(ClosureWalkHandlers(ops), mm: initMM)
    let err = withLocklessRead(initMM) { walker.walkPGDRange(start, end, &walk) }
    data = walk.privateData
    return try finishWalk(err, walk)
}

/// Models `walk_page_range_debug()`: walks a user address space's tables
/// over `[start, end)` ignoring its VMAs (ptdump of user tables), so holes
/// carry their real depth everywhere. Needs the mmap write lock: munmap
/// tears tables down after detaching VMAs under a read lock. A kernel
/// address space is forwarded to `walkKernelPageTableRange`.
public func walkPageRangeDebug<Private>(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64,
                                        ops: MMWalkOps<Private>, root: TableID? = nil,
                                        private data: inout Private) throws(PageWalkError) -> Int32 {
    if mm.isKernel { return try walkKernelPageTableRange(mm, start, end, ops: ops, root: root, private: &data) }
    guard ops.isValidForPublicWalk else { throw .installNotPermitted }
    try checkWalk(mm, start, end, tablesOnly: true)
    try assertWalkLock(mm, .write)
    var walk = MMWalk(mm: mm, privateData: data, noVMA: true, root: root)
    let walker = PageTableWalker(ClosureWalkHandlers(ops), mm: mm)
    let err = withLocklessRead(mm) { walker.walkPGDRange(start, end, &walk) }
    data = walk.privateData
    return try finishWalk(err, walk)
}
