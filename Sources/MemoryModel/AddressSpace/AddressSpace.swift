import Synchronization

/// RSS counter kinds (`MM_FILEPAGES`, `MM_ANONPAGES`, `MM_SWAPENTS`,
/// `MM_SHMEMPAGES`).
public enum RSSCounter: Int, CaseIterable, Sendable {
    case file, anon, swapEntries, shmem
}

/// A snapshot of an address space's counters.
public struct MMCounters: Hashable, Sendable, CustomStringConvertible {
    /// Pages per `RSSCounter`.
    public var file = 0, anon = 0, swapEntries = 0, shmem = 0
    /// Page-table pages below the root, per level of the entries they hold
    /// (`mm_pgtables_bytes()` is their sum times the page size).
    public var pteTables = 0, pmdTables = 0, pudTables = 0, p4dTables = 0
    /// Bytes of hugetlb pages mapped (`hugetlb_usage`).
    public var hugetlbBytes: UInt64 = 0
    public init() {}
    public var pageTableBytes: Int { (pteTables + pmdTables + pudTables + p4dTables) * Geometry.pageBytes }
    public var rssPages: Int { file + anon + shmem }
    public var description: String {
        "rss file \(file) anon \(anon) shmem \(shmem) swap \(swapEntries); tables pte \(pteTables) pmd \(pmdTables) pud \(pudTables) p4d \(p4dTables); hugetlb \(hugetlbBytes)"
    }
}

/// Options that mirror kernel configuration and sysfs knobs.
public struct AddressSpaceOptions: Sendable, Hashable {
    /// `CONFIG_MEM_SOFT_DIRTY`: new VMAs get VM_SOFTDIRTY and dirtying sets
    /// the soft-dirty bit. Ignored where the architecture lacks the bit.
    public var softDirty: Bool
    /// `/sys/kernel/mm/transparent_hugepage/use_zero_page`.
    public var useHugeZeroPage: Bool
    /// arm64 `CONFIG_ARM64_CONTPTE`: fold fully mapped, aligned 64K blocks of
    /// one large folio into contiguous PTEs, when they are mapped and again
    /// when a write of a block's last entry makes it uniform
    /// (AddressSpace+ContPTE.swift). Off, no block folds; reads still
    /// gather over blocks that are folded.
    public var foldContiguousPTEs: Bool
    /// Process id and command name, for the /proc views.
    public var pid: Int
    public var name: String
    /// The kernel's `vsyscall=` mode as this process sees it: an x86-64
    /// process that exec'd a 64-bit program (`MM_CONTEXT_HAS_VSYSCALL`)
    /// has the gate VMA unless the kernel runs with `vsyscall=none`. A bare
    /// mm has none, and so has every arm64 process (anything else is
    /// refused on arm64).
    public var vsyscall: VsyscallMode
    /// `/sys/kernel/debug/fault_around_bytes` (default 64 KiB): a read
    /// fault on a file or shmem VMA also maps the cached pages around it.
    /// At most one page-table page's reach; one page or less turns it off.
    public var faultAroundBytes: UInt64

    public init(softDirty: Bool = true, useHugeZeroPage: Bool = true, foldContiguousPTEs: Bool = true,
                pid: Int = 1, name: String = "process", vsyscall: VsyscallMode = .none,
                faultAroundBytes: UInt64 = AddressSpaceOptions.defaultFaultAroundBytes) {
        self.softDirty = softDirty; self.useHugeZeroPage = useHugeZeroPage
        self.foldContiguousPTEs = foldContiguousPTEs; self.pid = pid; self.name = name
        self.vsyscall = vsyscall; self.faultAroundBytes = faultAroundBytes
    }

    /// The kernel's default `fault_around_bytes`.
    public static let defaultFaultAroundBytes: UInt64 = 64 << 10

    /// Pages one fault-around maps at most (`fault_around_pages`: the
    /// bytes rounded down to a power of two pages, capped at one PTE table).
    package func faultAroundPages(tableEntries: Int) -> Int {
        let pages = faultAroundBytes >> Geometry.pageShift
        guard pages > 1 else { return 1 }
        let pow2 = 1 << (63 - pages.leadingZeroBitCount)
        return min(pow2, tableEntries)
    }
}

/// A process address space: the kernel's `struct mm_struct`.
///
/// Holds the root page table, the ordered VMA set, the RSS and page-table
/// counters, and the locks: the mmap lock (reader/writer), the
/// `page_table_lock`, and — in the shared table arena — a split lock per
/// page-table page. Mutations take the locks the kernel takes for them, so
/// faults, zaps, reclaim and migration may run on other threads while a walk
/// holds the mmap lock for read.
public final class AddressSpace: @unchecked Sendable, CustomStringConvertible {
    public let geometry: Geometry
    public let memory: PhysicalMemory
    public let options: AddressSpaceOptions
    /// Whether this is a kernel address space (`init_mm`): tables without
    /// the user bit, no VMAs.
    public let isKernel: Bool
    /// The root table (`mm->pgd`).
    public let root: TableID
    /// `get_gate_vma(mm)`: x86-64's `[vsyscall]`, or nil (`options.vsyscall`).
    /// Not one of `vmas`: it lies above the user address limit, outside
    /// the mm's VMA tree; the /proc views that list it print it last.
    public let gateVMA: VMA?
    /// `mm->mmap_lock`.
    public let mmapLock = ReadWriteLock()
    /// Faults and madvise calls that ran under a VMA lock, and those that
    /// fell back to the mmap lock (`VMA_LOCK_SUCCESS`, `VMA_LOCK_ABORT`).
    let vmaLockCounters = VMALockCounters()
    /// `mm->page_table_lock`: guards upper-level table installs and PUD leaves.
    public let pageTableLock = SpinLock()
    /// Fork family: address spaces that may share anonymous folios at the
    /// same addresses (the model's anon_vma root).
    let anonFamily: Int
    /// The family's root `anon_vma` lock, shared with every fork. Reverse-map
    /// walks of an anonymous folio (`rmap_walk_anon()`) hold it for read
    /// while they visit the other members, whose mmap locks they do not
    /// hold; linking and unlinking a member's VMAs (mmap, split, merge,
    /// munmap, fork, and the unlink at teardown) holds it for write.
    let anonVMALock: ReadWriteLock

    /// VMAs ordered by start; changed only under the mmap write lock, and
    /// through `changeVMAs` (which also takes the anon_vma lock).
    var vmaList: [VMA] = []
    private let counters: UnsafeMutablePointer<Atomic<Int>>
    /// `mm->hiwater_rss`: the largest RSS seen when pages were last unmapped
    /// (`update_hiwater_rss()`); the peak reported is the larger of this and
    /// the RSS now (`get_mm_hiwater_rss()`).
    private let hiwater = Atomic<Int>(0)
    static let counterSlots = 9
    let tornDown = Atomic<Bool>(false)
    static let familySource = Atomic<Int>(1)

    @usableFromInline let arena: TableArena
    @usableFromInline let layout: EntryLayout
    /// For each real table, root first, the level of the entries it holds.
    @usableFromInline package let tableLevels: [PageTableLevel]

    /// Creates an empty address space on `memory`.
    public init(geometry: Geometry, memory: PhysicalMemory, options: AddressSpaceOptions = .init(),
                kernel: Bool = false) throws(ModelError) {
        self.geometry = geometry
        self.memory = memory
        self.options = options
        self.isKernel = kernel
        self.arena = memory.tables
        self.layout = geometry.layout
        self.tableLevels = geometry.tableEntryLevels
        self.gateVMA = kernel ? nil : try options.vsyscall.gateVMA(geometry)
        self.root = try memory.tables.allocate(level: geometry.tableEntryLevels[0])
        counters = .allocate(capacity: AddressSpace.counterSlots)
        for i in 0..<AddressSpace.counterSlots { (counters + i).initialize(to: Atomic(0)) }
        anonFamily = AddressSpace.familySource.add(1, ordering: .relaxed).newValue
        anonVMALock = ReadWriteLock()
        memory.register(self)
    }

    init(forkOf parent: AddressSpace, pid: Int) throws(ModelError) {
        geometry = parent.geometry
        memory = parent.memory
        var o = parent.options
        o.pid = pid
        options = o
        isKernel = false
        arena = parent.arena
        layout = parent.layout
        tableLevels = parent.tableLevels
        gateVMA = parent.gateVMA
        root = try parent.memory.tables.allocate(level: parent.tableLevels[0])
        counters = .allocate(capacity: AddressSpace.counterSlots)
        for i in 0..<AddressSpace.counterSlots { (counters + i).initialize(to: Atomic(0)) }
        anonFamily = parent.anonFamily
        anonVMALock = parent.anonVMALock
        memory.register(self)
    }

    deinit {
        if !tornDown.load(ordering: .relaxed) { releaseEverything() }
        counters.deallocate()
    }

    public var description: String { "mm(pid \(options.pid), \(geometry), \(vmaList.count) VMAs)" }
    public var isTornDown: Bool { tornDown.load(ordering: .relaxed) }
    func checkAlive() throws(ModelError) { if isTornDown { throw .tornDown } }

    // MARK: Counters

    @inline(__always) func addRSS(_ c: RSSCounter, _ n: Int) {
        if n != 0 { counters[c.rawValue].wrappingAdd(n, ordering: .relaxed) }
    }
    @inline(__always) func addTables(_ level: PageTableLevel, _ n: Int) {
        // Slots 4…7: tables holding pte, pmd, pud, p4d entries.
        if level != .pgd { counters[4 + level.rawValue].wrappingAdd(n, ordering: .relaxed) }
    }
    @inline(__always) func addHugetlb(_ bytes: Int) { counters[8].wrappingAdd(bytes, ordering: .relaxed) }

    /// `update_hiwater_rss()`: before pages are unmapped.
    func updateHiwaterRSS() {
        let rss = counterSnapshot.rssPages
        var old = hiwater.load(ordering: .relaxed)
        while rss > old {
            let (done, now) = hiwater.compareExchange(expected: old, desired: rss, ordering: .relaxed)
            if done { break }
            old = now
        }
    }

    /// `get_mm_hiwater_rss()`, in pages: VmHWM.
    public var hiwaterRSSPages: Int { max(hiwater.load(ordering: .relaxed), counterSnapshot.rssPages) }

    /// `reset_mm_hiwater_rss()` (clear_refs type 5): the peak starts again
    /// from the RSS now.
    package func resetHiwaterRSS() { hiwater.store(counterSnapshot.rssPages, ordering: .relaxed) }

    /// The RSS, page-table and hugetlb counters now.
    public var counterSnapshot: MMCounters {
        var c = MMCounters()
        c.file = counters[0].load(ordering: .relaxed)
        c.anon = counters[1].load(ordering: .relaxed)
        c.swapEntries = counters[2].load(ordering: .relaxed)
        c.shmem = counters[3].load(ordering: .relaxed)
        c.pteTables = counters[4].load(ordering: .relaxed)
        c.pmdTables = counters[5].load(ordering: .relaxed)
        c.pudTables = counters[6].load(ordering: .relaxed)
        c.p4dTables = counters[7].load(ordering: .relaxed)
        c.hugetlbBytes = UInt64(counters[8].load(ordering: .relaxed))
        return c
    }

    /// The counter a folio's mappings are charged to (`mm_counter()`).
    @inline(__always)
    func rssCounter(for folio: Folio) -> RSSCounter? {
        let f = folio.flags
        if f.contains(.hugetlb) || f.contains(.zeroPage) || f.contains(.hugeZeroPage) { return nil }
        if f.contains(.anon) { return .anon }
        return f.contains(.swapBacked) ? .shmem : .file
    }

    // MARK: VMAs

    /// The VMAs, ordered by address. Read them under the mmap lock.
    public var vmas: [VMA] { vmaList }

    /// The VMAs /proc/PID/maps and smaps list: `vmas`, then the gate VMA
    /// (`m_next_vma()` ends with `get_gate_vma()`).
    public var mapsVMAs: [VMA] { gateVMA.map { vmaList + [$0] } ?? vmaList }

    /// Changes the VMA list, holding the family's anon_vma lock for write as
    /// the kernel links and unlinks VMAs under it: a reverse-map walk from a
    /// sibling process, and the lockless lookup in front of a VMA lock, read
    /// this list without this process's mmap lock. Every VMA that leaves the
    /// list is write-locked (waiting for the faults inside) and detached, and
    /// every VMA that enters it is write-locked until the hold ends, as the
    /// kernel does before it links or unlinks one. The caller holds the mmap
    /// write lock (or owns an mm nobody else sees yet), and no folio,
    /// page-table or VMA lock.
    func changeVMAs<R>(_ body: (inout [VMA]) -> R) -> R {
        var list = vmaList
        let result = body(&list)
        // A change is one run of the list: what lies between the common
        // prefix and suffix left it or entered it.
        var head = 0
        while head < list.count && head < vmaList.count && list[head] === vmaList[head] { head += 1 }
        var tail = 0
        while tail < list.count - head && tail < vmaList.count - head
                && list[list.count - 1 - tail] === vmaList[vmaList.count - 1 - tail] { tail += 1 }
        let entered = list[head..<(list.count - tail)], left = vmaList[head..<(vmaList.count - tail)]
        for vma in entered where !left.contains(where: { $0 === vma }) { vmaStartWrite(vma) }
        for vma in left where !entered.contains(where: { $0 === vma }) {
            vmaStartWrite(vma)
            vma.vmaLock.markDetached()
        }
        anonVMALock.lockWrite()
        vmaList = list
        anonVMALock.unlockWrite()
        return result
    }

    /// `changeVMAs` for one run of the list replaced by `new`: the list is
    /// changed in place, copied only while a reader holds it, so building or
    /// forking n VMAs costs O(n) and not O(n²).
    func replaceVMAs(_ range: Range<Int>, with new: [VMA]) {
        // A copy, not a slice: a slice would keep the buffer shared.
        let left = Array(vmaList[range])
        for vma in new where !left.contains(where: { $0 === vma }) { vmaStartWrite(vma) }
        for vma in left where !new.contains(where: { $0 === vma }) {
            vmaStartWrite(vma)
            vma.vmaLock.markDetached()
        }
        anonVMALock.lockWrite()
        vmaList.replaceSubrange(range, with: new)
        anonVMALock.unlockWrite()
    }

    /// `find_vma()`-style lookup: the VMA containing `address`, in O(log n).
    public func vma(containing address: UInt64) -> VMA? {
        guard let i = vmaIndex(containing: address) else { return nil }
        return vmaList[i]
    }

    func vmaIndex(containing address: UInt64) -> Int? { vmaList.index(containing: address) }

    /// Index of the first VMA ending after `address`.
    func firstVMAIndex(endingAfter address: UInt64) -> Int { vmaList.firstIndex(endingAfter: address) }

    /// VMAs intersecting `[start, end)`, in order.
    public func vmas(intersecting start: UInt64, _ end: UInt64) -> ArraySlice<VMA> {
        let first = firstVMAIndex(endingAfter: start)
        var last = first
        while last < vmaList.count && vmaList[last].start < end { last += 1 }
        return vmaList[first..<last]
    }

    // MARK: Locking

    /// Proof that the mmap lock is held, handed to walkers.
    public struct MmapLockToken: @unchecked Sendable {
        public unowned let mm: AddressSpace
        public let mode: LockMode
    }

    /// Runs `body` holding the mmap lock for read (`mmap_read_lock()`).
    ///
    /// A thread that already holds this mm's mmap lock (either mode) runs
    /// `body` under that hold: a second read acquisition could wait behind
    /// a queued writer, which waits for the first — the rwsem deadlock.
    public func withMmapReadLock<R, E: Error>(_ body: (MmapLockToken) throws(E) -> R) throws(E) -> R {
        if MmapLockHolds.mode(of: self) != nil { return try body(MmapLockToken(mm: self, mode: .read)) }
        mmapLock.lockRead()
        MmapLockHolds.push(self, .read)
        defer { MmapLockHolds.pop(self); mmapLock.unlockRead() }
        return try body(MmapLockToken(mm: self, mode: .read))
    }

    /// Runs `body` holding the mmap lock for write (`mmap_write_lock()`).
    ///
    /// A thread that already holds this mm's mmap lock is refused with
    /// `ModelError.lockConflict`, carried by `E` (`MmapLockRefusing`, or
    /// `any Error`): in Linux it would wait for itself forever — `munmap`
    /// inside a walk's loop, say.
    public func withMmapWriteLock<R, E: Error>(_ body: (MmapLockToken) throws(E) -> R) throws(E) -> R {
        let held = MmapLockHolds.mode(of: self).map { "the mmap lock for \($0)" }
            ?? (MmapLockHolds.holdsVMARead(of: self) ? "a VMA lock" : nil)
        if let held {
            let refusal = ModelError.lockConflict(
                "mmap lock of pid \(options.pid): this thread holds \(held) and asks for write")
            if let t = E.self as? any MmapLockRefusing.Type, let e = t.refusing(refusal) as? E { throw e }
            if let e = refusal as? E { throw e }
            preconditionFailure("\(refusal) (the body's error type \(E.self) cannot carry the refusal)")
        }
        mmapLock.lockWrite()
        MmapLockHolds.push(self, .write)
        defer { MmapLockHolds.pop(self); mmapLock.unlockWrite() }
        return try body(MmapLockToken(mm: self, mode: .write))
    }

    /// The token of the mmap lock the calling thread holds, if any: for a
    /// walker opened inside an operation that took the lock already.
    package func heldMmapLockToken() -> MmapLockToken? {
        MmapLockHolds.mode(of: self).map { MmapLockToken(mm: self, mode: $0) }
    }

    /// Whether the calling thread holds this mm's mmap lock in `mode`
    /// (write satisfies read).
    public func isMmapLockHeldByCurrentThread(_ mode: LockMode) -> Bool {
        guard let held = MmapLockHolds.mode(of: self) else { return false }
        return mode == .read || held == .write
    }

    /// `mmap_assert_locked()` / `mmap_assert_write_locked()` as a typed error.
    public func assertMmapLocked(_ mode: LockMode) throws(ModelError) {
        switch mode {
        case .read:
            guard mmapLock.isLocked else { throw .lockNotHeld("mmap lock of pid \(options.pid) (read or write)") }
        case .write:
            guard mmapLock.isWriteLockedByCurrentThread else { throw .lockNotHeld("mmap lock of pid \(options.pid) for write") }
        }
    }

    /// The lock guarding an entry at `level` in `table`: the table's split
    /// lock for PTE and PMD entries (`pte_lockptr()`, `pmd_lockptr()`), the
    /// `page_table_lock` above (`pud_lockptr()`).
    @inlinable @inline(__always)
    public func lock(forEntriesOf table: TableID, level: PageTableLevel) -> SpinLockRef {
        level <= .pmd ? arena.lock(table) : pageTableLock.ref
    }

    /// Models `huge_pte_lockptr()` (Linux 6.11 and later): a hugetlb entry
    /// takes the lock a core-mm walker takes for an entry of its table, so
    /// that hugetlb read through the generic walk is serialised with the
    /// hugetlb code. A cont-PTE block (arm64 64K) takes its PTE table's
    /// split lock, a PMD-sized or cont-PMD entry its PMD table's split lock,
    /// a PUD entry `page_table_lock`. `level` is the level of the entries.
    @inlinable @inline(__always)
    public func hugePTELock(forEntriesOf table: TableID, level: PageTableLevel) -> SpinLockRef {
        lock(forEntriesOf: table, level: level)
    }
}

extension Geometry {
    /// For each real table, root first, the level of the entries it holds: a
    /// root into which p4d (and pud, pmd) are folded holds p4d (pud, pmd)
    /// entries.
    public var tableEntryLevels: [PageTableLevel] {
        var out: [PageTableLevel] = []
        for level in PageTableLevel.allCases.reversed() where level == .pgd || !isFolded(level) {
            var effective = level
            while let lower = effective.lower, lower != .pte, isFolded(lower) { effective = lower }
            out.append(effective)
        }
        return out
    }

    /// Index of `address` in a real table holding `level` entries (the shift
    /// of a folded level is the real one it folds into).
    @inlinable @inline(always)
    public func tableIndex(_ address: UInt64, _ level: PageTableLevel) -> Int {
        Int(truncatingIfNeeded: (address >> UInt64(shift(level))) & 511)
    }
}
