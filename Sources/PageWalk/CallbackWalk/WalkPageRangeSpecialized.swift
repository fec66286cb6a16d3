import MemoryModel

/// Models `walk_page_range()` over handlers known at compile time: walks
/// `[start, end)` of `mm` VMA by VMA (gaps are depth -1 holes) with the
/// handlers of `ops`, which the caller's module inlines (the function is
/// `@inlinable`, specialized for `Ops`). Visits exactly what
/// `walkPageRange(_:_:_:ops:private:)` with the same handlers as closures
/// visits. The mmap lock must be held as `Ops.walkLock` says.
@inlinable
public func walkPageRange<Ops: MMWalkOpsProtocol>(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64,
                                                  ops: Ops,
                                                  private data: inout Ops.Private) throws(PageWalkError) -> Int32 {
    try checkWalk(mm, start, end, tablesOnly: false)
    try assertWalkLock(mm, Ops.walkLock)
    var walk = MMWalk(mm: mm, privateData: data)
    let walker = SpecializedWalker(ops: ops, mm: mm)
    let tables = mm.memory.tables
    tables.beginLocklessRead()
    let err = walker.walkVMAs(start, end, &walk)
    tables.endLocklessRead()
    data = walk.privateData
    return try finishWalk(err, walk)
}
