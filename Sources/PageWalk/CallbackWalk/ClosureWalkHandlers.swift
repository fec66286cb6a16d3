import MemoryModel

/// The closures of `MMWalkOps` as the walker's handlers: each call is an
/// indirect call, as through the kernel's `const struct mm_walk_ops *`.
/// Inlinable, so that the walker is specialized for the caller's
/// `Private`, as the kernel's walker knows the layout of `struct mm_walk`;
/// what stays indirect is the handlers.
@usableFromInline
struct ClosureWalkHandlers<Private>: MMWalkOpsProtocol {
    @usableFromInline let ops: MMWalkOps<Private>

    @inlinable init(_ ops: MMWalkOps<Private>) { self.ops = ops }

    @inlinable var hasPGDEntry: Bool { ops.pgdEntry != nil }
    @inlinable var hasP4DEntry: Bool { ops.p4dEntry != nil }
    @inlinable var hasPUDEntry: Bool { ops.pudEntry != nil }
    @inlinable var hasPMDEntry: Bool { ops.pmdEntry != nil }
    @inlinable var hasPTEEntry: Bool { ops.pteEntry != nil }
    @inlinable var hasPTEHole: Bool { ops.pteHole != nil }
    @inlinable var hasHugetlbEntry: Bool { ops.hugetlbEntry != nil }
    @inlinable var hasTestWalk: Bool { ops.testWalk != nil }
    @inlinable var hasInstallPTE: Bool { ops.installPTE != nil }
    @inlinable var walkLock: PageWalkLock { ops.walkLock }

    @inlinable @inline(__always)
    func pgdEntry(_ e: EntryPointer<PGD>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
        ops.pgdEntry.unsafelyUnwrapped(e, addr, next, &walk)
    }
    @inlinable @inline(__always)
    func p4dEntry(_ e: EntryPointer<P4D>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
        ops.p4dEntry.unsafelyUnwrapped(e, addr, next, &walk)
    }
    @inlinable @inline(__always)
    func pudEntry(_ e: EntryPointer<PUD>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
        ops.pudEntry.unsafelyUnwrapped(e, addr, next, &walk)
    }
    @inlinable @inline(__always)
    func pmdEntry(_ e: EntryPointer<PMD>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
        ops.pmdEntry.unsafelyUnwrapped(e, addr, next, &walk)
    }
    @inlinable @inline(__always)
    func pteEntry(_ e: EntryPointer<PTE>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
        ops.pteEntry.unsafelyUnwrapped(e, addr, next, &walk)
    }
    @inlinable @inline(__always)
    func pteHole(_ addr: UInt64, _ next: UInt64, _ depth: Int32, _ walk: inout MMWalk<Private>) -> Int32 {
        ops.pteHole.unsafelyUnwrapped(addr, next, depth, &walk)
    }
    @inlinable @inline(__always)
    func hugetlbEntry(_ e: EntryPointer<PTE>, _ hmask: UInt64, _ addr: UInt64, _ next: UInt64,
                      _ walk: inout MMWalk<Private>) -> Int32 {
        ops.hugetlbEntry.unsafelyUnwrapped(e, hmask, addr, next, &walk)
    }
    @inlinable @inline(__always)
    func testWalk(_ start: UInt64, _ end: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
        ops.testWalk.unsafelyUnwrapped(start, end, &walk)
    }
    @inlinable @inline(__always)
    func preVMA(_ start: UInt64, _ end: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
        ops.preVMA?(start, end, &walk) ?? 0
    }
    @inlinable @inline(__always)
    func postVMA(_ walk: inout MMWalk<Private>) { ops.postVMA?(&walk) }
    @inlinable @inline(__always)
    func installPTE(_ addr: UInt64, _ next: UInt64, _ pte: inout PTE, _ walk: inout MMWalk<Private>) -> Int32 {
        ops.installPTE.unsafelyUnwrapped(addr, next, &pte, &walk)
    }
}
