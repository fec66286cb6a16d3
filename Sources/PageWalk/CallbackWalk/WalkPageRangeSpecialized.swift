import MemoryModel

/// Models `walk_page_range()` over handlers known at compile time: walks
/// `[start, end)` of `mm` VMA by VMA (gaps are depth -1 holes) with the
/// handlers of `ops`, which the caller's module inlines (the function is
/// inlinable, specialized for `Ops`). Visits exactly what
/// `walkPageRange(_:_:_:ops:private:)` with the same handlers as closures
/// visits. The mmap lock must be held as `ops.walkLock` says; `install_pte`
/// is refused (`check_ops_valid()`).
@inlinable
public func walkPageRange<Ops: MMWalkOpsProtocol>(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64,
                                                  ops: Ops,
                                                  private data: inout Ops.Private) throws(PageWalkError) -> Int32 {
    guard !ops.hasInstallPTE else { throw .installNotPermitted }
    try checkWalk(mm, start, end, tablesOnly: false)
    try assertWalkLock(mm, ops.walkLock)
    var walk = MMWalk(mm: mm, privateData: data)
    let walker = PageTableWalker(ops, mm: mm)
    let err = withLocklessRead(mm) { walker.walkVMAs(start, end, &walk) }
    data = walk.privateData
    return try finishWalk(err, walk)
}
