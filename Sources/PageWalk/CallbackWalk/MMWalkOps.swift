import MemoryModel

/// The handlers of a walk: models the kernel's `struct mm_walk_ops`.
///
/// Every handler is optional; the walker skips levels that no handler below
/// them needs (the kernel's `has_handler` short-cuts). Entry handlers get a
/// pointer to the entry, the range `[addr, next)` it covers inside the walk,
/// and the walk state. Return 0 to go on, a positive value to stop the walk
/// and have the entry point return it, a negative errno to stop with
/// `PageWalkError.handlerError`.
public struct MMWalkOps<Private> {
    public typealias EntryHandler<E: PageTableEntry> =
        (_ entry: EntryPointer<E>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32
    /// `pte_hole(addr, next, depth, walk)`: depth 0 (PGD) … 3 (PMD) after
    /// folding (`real_depth()`), -1 for ranges without a VMA or without
    /// hugetlb tables.
    public typealias HoleHandler =
        (_ addr: UInt64, _ next: UInt64, _ depth: Int32, _ walk: inout MMWalk<Private>) -> Int32
    /// `hugetlb_entry(pte, hmask, addr, next, walk)`: the entry is the first
    /// of the huge page's entries, at the level `entry.slot.level` says.
    public typealias HugetlbHandler =
        (_ entry: EntryPointer<PTE>, _ hmask: UInt64, _ addr: UInt64, _ next: UInt64,
         _ walk: inout MMWalk<Private>) -> Int32
    /// `test_walk` and `pre_vma`: `[start, end)` of the VMA about to be walked.
    public typealias RangeHandler = (_ start: UInt64, _ end: UInt64, _ walk: inout MMWalk<Private>) -> Int32
    /// `install_pte(addr, next, &pte, walk)`: fill `pte` for a none PTE.
    public typealias InstallHandler =
        (_ addr: UInt64, _ next: UInt64, _ pte: inout PTE, _ walk: inout MMWalk<Private>) -> Int32

    public var pgdEntry: EntryHandler<PGD>?
    public var p4dEntry: EntryHandler<P4D>?
    public var pudEntry: EntryHandler<PUD>?
    public var pmdEntry: EntryHandler<PMD>?
    /// Runs with the PTE table lock held on walks with a VMA.
    public var pteEntry: EntryHandler<PTE>?
    public var pteHole: HoleHandler?
    public var hugetlbEntry: HugetlbHandler?
    /// >0 skips the VMA, <0 aborts the walk; replaces the default VM_PFNMAP
    /// policy when set.
    public var testWalk: RangeHandler?
    public var preVMA: RangeHandler?
    /// Commit step after a VMA; cannot fail.
    public var postVMA: ((_ walk: inout MMWalk<Private>) -> Void)?
    /// Only honoured by `walkPageRangeMM`; every public entry point refuses
    /// ops that set it (`check_ops_valid()`).
    public var installPTE: InstallHandler?
    /// `walk_lock`.
    public var walkLock: PageWalkLock

    public init(pgdEntry: EntryHandler<PGD>? = nil, p4dEntry: EntryHandler<P4D>? = nil,
                pudEntry: EntryHandler<PUD>? = nil, pmdEntry: EntryHandler<PMD>? = nil,
                pteEntry: EntryHandler<PTE>? = nil, pteHole: HoleHandler? = nil,
                hugetlbEntry: HugetlbHandler? = nil, testWalk: RangeHandler? = nil,
                preVMA: RangeHandler? = nil, postVMA: ((_ walk: inout MMWalk<Private>) -> Void)? = nil,
                installPTE: InstallHandler? = nil, walkLock: PageWalkLock = .read) {
        self.pgdEntry = pgdEntry; self.p4dEntry = p4dEntry; self.pudEntry = pudEntry
        self.pmdEntry = pmdEntry; self.pteEntry = pteEntry; self.pteHole = pteHole
        self.hugetlbEntry = hugetlbEntry; self.testWalk = testWalk; self.preVMA = preVMA
        self.postVMA = postVMA; self.installPTE = installPTE; self.walkLock = walkLock
    }

    /// `check_ops_valid()`: PTE installation is reserved to memory-management
    /// internals.
    @inlinable var isValidForPublicWalk: Bool { installPTE == nil }
}
