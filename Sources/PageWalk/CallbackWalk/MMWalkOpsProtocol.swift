import MemoryModel

/// The handlers of a walk as a type: the kernel's `struct mm_walk_ops`.
///
/// The walker's one engine (`PageTableWalker`) is generic over a conforming
/// type. `MMWalkOps` conforms through its closures (each call indirect, as
/// through the kernel's `const struct mm_walk_ops *`); a type of one's own
/// can have constant `has…` flags and handlers the compiler inlines:
/// `walkPageRange(_:_:_:ops:private:)` over it is `@inlinable`, so in the
/// caller's module it is specialized for `Ops`, as a C compiler may do
/// with a `static const struct mm_walk_ops`.
///
/// A handler is called only when its `has…` flag says so (the kernel's
/// NULL tests); the defaults are unset. The handlers' contracts are those
/// of `MMWalkOps`. `install_pte` is refused by every public entry point.
public protocol MMWalkOpsProtocol {
    associatedtype Private
    var hasPGDEntry: Bool { get }
    var hasP4DEntry: Bool { get }
    var hasPUDEntry: Bool { get }
    var hasPMDEntry: Bool { get }
    var hasPTEEntry: Bool { get }
    var hasPTEHole: Bool { get }
    var hasHugetlbEntry: Bool { get }
    var hasTestWalk: Bool { get }
    var hasInstallPTE: Bool { get }
    var walkLock: PageWalkLock { get }

    func pgdEntry(_ entry: EntryPointer<PGD>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32
    func p4dEntry(_ entry: EntryPointer<P4D>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32
    func pudEntry(_ entry: EntryPointer<PUD>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32
    func pmdEntry(_ entry: EntryPointer<PMD>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32
    /// Runs with the PTE table lock held on walks with a VMA.
    func pteEntry(_ entry: EntryPointer<PTE>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32
    func pteHole(_ addr: UInt64, _ next: UInt64, _ depth: Int32, _ walk: inout MMWalk<Private>) -> Int32
    func hugetlbEntry(_ entry: EntryPointer<PTE>, _ hmask: UInt64, _ addr: UInt64, _ next: UInt64,
                      _ walk: inout MMWalk<Private>) -> Int32
    /// >0 skips the VMA, <0 aborts the walk; replaces the VM_PFNMAP policy
    /// when `hasTestWalk`.
    func testWalk(_ start: UInt64, _ end: UInt64, _ walk: inout MMWalk<Private>) -> Int32
    /// Called for every VMA walked (0 when there is nothing to do).
    func preVMA(_ start: UInt64, _ end: UInt64, _ walk: inout MMWalk<Private>) -> Int32
    func postVMA(_ walk: inout MMWalk<Private>)
    func installPTE(_ addr: UInt64, _ next: UInt64, _ pte: inout PTE, _ walk: inout MMWalk<Private>) -> Int32
}

extension MMWalkOpsProtocol {
    @inlinable public var hasPGDEntry: Bool { false }
    @inlinable public var hasP4DEntry: Bool { false }
    @inlinable public var hasPUDEntry: Bool { false }
    @inlinable public var hasPMDEntry: Bool { false }
    @inlinable public var hasPTEEntry: Bool { false }
    @inlinable public var hasPTEHole: Bool { false }
    @inlinable public var hasHugetlbEntry: Bool { false }
    @inlinable public var hasTestWalk: Bool { false }
    @inlinable public var hasInstallPTE: Bool { false }
    @inlinable public var walkLock: PageWalkLock { .read }

    @inlinable
    public func pgdEntry(_ entry: EntryPointer<PGD>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32 { 0 }
    @inlinable
    public func p4dEntry(_ entry: EntryPointer<P4D>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32 { 0 }
    @inlinable
    public func pudEntry(_ entry: EntryPointer<PUD>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32 { 0 }
    @inlinable
    public func pmdEntry(_ entry: EntryPointer<PMD>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32 { 0 }
    @inlinable
    public func pteEntry(_ entry: EntryPointer<PTE>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32 { 0 }
    @inlinable
    public func pteHole(_ addr: UInt64, _ next: UInt64, _ depth: Int32, _ walk: inout MMWalk<Private>) -> Int32 { 0 }
    @inlinable
    public func hugetlbEntry(_ entry: EntryPointer<PTE>, _ hmask: UInt64, _ addr: UInt64, _ next: UInt64,
                             _ walk: inout MMWalk<Private>) -> Int32 { 0 }
    @inlinable
    public func testWalk(_ start: UInt64, _ end: UInt64, _ walk: inout MMWalk<Private>) -> Int32 { 0 }
    @inlinable
    public func preVMA(_ start: UInt64, _ end: UInt64, _ walk: inout MMWalk<Private>) -> Int32 { 0 }
    @inlinable
    public func postVMA(_ walk: inout MMWalk<Private>) {}
    @inlinable
    public func installPTE(_ addr: UInt64, _ next: UInt64, _ pte: inout PTE, _ walk: inout MMWalk<Private>) -> Int32 { 0 }

    /// `has_handler()` below each level: some handler under it needs the
    /// descent, so the walker does not skip the lower tables.
    @inlinable var belowPMD: Bool { hasPTEEntry }
    @inlinable var belowPUD: Bool { belowPMD || hasPMDEntry }
    @inlinable var belowP4D: Bool { belowPUD || hasPUDEntry }
    @inlinable var belowPGD: Bool { belowP4D || hasP4DEntry }
}
