import MemoryModel

/// The handlers of a walk as a type: the kernel's `struct mm_walk_ops`
/// with the handlers known at compile time.
///
/// `walkPageRange(_:_:_:ops:private:)` over a conforming type is
/// `@inlinable`, so in the caller's module it is specialized for `Ops` and
/// the handlers are inlined into the level functions, as a C compiler may
/// do with a `static const struct mm_walk_ops`. A handler is used when its
/// `has…` flag says so (the kernel's NULL tests; constants once
/// specialized); the defaults do nothing. The handlers' contracts are those
/// of `MMWalkOps`. Not modelled here: `pgd_entry`, `p4d_entry` and
/// `install_pte` (use `MMWalkOps`).
public protocol MMWalkOpsProtocol {
    associatedtype Private
    static var hasPUDEntry: Bool { get }
    static var hasPMDEntry: Bool { get }
    static var hasPTEEntry: Bool { get }
    static var hasPTEHole: Bool { get }
    static var hasHugetlbEntry: Bool { get }
    static var hasTestWalk: Bool { get }
    static var walkLock: PageWalkLock { get }

    func pudEntry(_ entry: EntryPointer<PUD>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32
    func pmdEntry(_ entry: EntryPointer<PMD>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32
    /// Runs with the PTE table lock held.
    func pteEntry(_ entry: EntryPointer<PTE>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32
    func pteHole(_ addr: UInt64, _ next: UInt64, _ depth: Int32, _ walk: inout MMWalk<Private>) -> Int32
    func hugetlbEntry(_ entry: EntryPointer<PTE>, _ hmask: UInt64, _ addr: UInt64, _ next: UInt64,
                      _ walk: inout MMWalk<Private>) -> Int32
    /// >0 skips the VMA, <0 aborts the walk; replaces the VM_PFNMAP policy
    /// when `hasTestWalk`.
    func testWalk(_ start: UInt64, _ end: UInt64, _ walk: inout MMWalk<Private>) -> Int32
    func preVMA(_ start: UInt64, _ end: UInt64, _ walk: inout MMWalk<Private>) -> Int32
    func postVMA(_ walk: inout MMWalk<Private>)
}

extension MMWalkOpsProtocol {
    @inlinable public static var hasPUDEntry: Bool { false }
    @inlinable public static var hasPMDEntry: Bool { false }
    @inlinable public static var hasPTEEntry: Bool { false }
    @inlinable public static var hasPTEHole: Bool { false }
    @inlinable public static var hasHugetlbEntry: Bool { false }
    @inlinable public static var hasTestWalk: Bool { false }
    @inlinable public static var walkLock: PageWalkLock { .read }

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
}
