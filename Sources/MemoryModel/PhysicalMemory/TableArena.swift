import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Identifies one page-table page: its index in the arena.
///
/// The table's physical frame is `TableArena.basePFN + index`, and upper
/// entries store that frame number, as on hardware.
public struct TableID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let index: UInt32
    @inlinable public init(index: UInt32) { self.index = index }
    public static func < (a: Self, b: Self) -> Bool { a.index < b.index }
    public var description: String { "table#\(index)" }
}

/// All page-table pages of a physical memory: a flat arena of 64-bit entry
/// words (table `i` is words `i*512 ..< (i+1)*512`), plus per-table metadata
/// (`struct ptdesc`): the split page-table lock, the number of non-none
/// entries, the level, and a share count for tables referenced from several
/// entries (hugetlb PMD sharing, init_mm's shadow tables).
///
/// Chunks are never moved or returned while the arena lives, so a walker
/// that read a table pointer without a lock can always dereference it; it
/// re-validates under the lock (`pmd_same()`), as the kernel does.
public final class TableArena: @unchecked Sendable {
    /// First frame number of the page-table "zone".
    public let basePFN: UInt64
    @inlinable static var chunkShift: Int { 9 }
    @inlinable static var tablesPerChunk: Int { 1 << chunkShift }
    static let maxChunks = 1 << 16
    @inlinable static var metaWords: Int { 4 }   // lock, used, level, shares

    @usableFromInline let chunks: UnsafeMutablePointer<Atomic<UInt>>
    @usableFromInline let metaChunks: UnsafeMutablePointer<Atomic<UInt>>
    private struct FreeState {
        var next: UInt32 = 0
        var free: [UInt32] = []
        var deferred: [UInt32] = []
        var live = 0
    }
    private let state = ModelMutex(FreeState())
    /// Walkers currently reading tables without holding their locks; freed
    /// tables are not reused while any is active (a grace period).
    let activeReaders = Atomic<Int>(0)
    /// Test hook: fail the Nth next allocation (1 = the next one).
    let failAfter = Atomic<Int>(0)

    init(basePFN: UInt64) {
        self.basePFN = basePFN
        chunks = .allocate(capacity: TableArena.maxChunks)
        metaChunks = .allocate(capacity: TableArena.maxChunks)
        for i in 0..<TableArena.maxChunks {
            (chunks + i).initialize(to: Atomic(0))
            (metaChunks + i).initialize(to: Atomic(0))
        }
    }

    deinit {
        for i in 0..<TableArena.maxChunks {
            let c = chunks[i].load(ordering: .relaxed)
            if c != 0 { munmap(UnsafeMutableRawPointer(bitPattern: c), TableArena.tablesPerChunk * Geometry.pageBytes) }
            let m = metaChunks[i].load(ordering: .relaxed)
            if m != 0 { UnsafeMutablePointer<Atomic<UInt32>>(bitPattern: m)!.deallocate() }
        }
        chunks.deallocate()
        metaChunks.deallocate()
    }

    /// Page-table pages in use.
    public var liveTables: Int { state.withLock { $0.live } }

    /// The 512 entry words of `table`.
    @inlinable @inline(always)
    public func entries(_ table: TableID) -> UnsafeMutablePointer<Atomic<UInt64>> {
        let c = chunkBase(Int(table.index) >> TableArena.chunkShift)
        return UnsafeMutablePointer<Atomic<UInt64>>(bitPattern: c)!
            + (Int(table.index) & (TableArena.tablesPerChunk - 1)) * 512
    }

    @inlinable @inline(always)
    func chunkBase(_ c: Int) -> UInt { chunks[c].load(ordering: .acquiring) }

    @inlinable @inline(always)
    func meta(_ table: TableID) -> UnsafeMutablePointer<Atomic<UInt32>> {
        let m = metaChunks[Int(table.index) >> TableArena.chunkShift].load(ordering: .acquiring)
        return UnsafeMutablePointer<Atomic<UInt32>>(bitPattern: m)!
            + (Int(table.index) & (TableArena.tablesPerChunk - 1)) * TableArena.metaWords
    }

    /// The split page-table lock of `table` (`ptlock_ptr()`).
    @inlinable public func lock(_ table: TableID) -> SpinLockRef { SpinLockRef(meta(table)) }

    /// Number of non-none entries in `table`.
    public func usedEntries(_ table: TableID) -> Int { Int(meta(table)[1].load(ordering: .relaxed)) }
    func adjustUsed(_ table: TableID, _ delta: Int) {
        meta(table)[1].wrappingAdd(UInt32(bitPattern: Int32(delta)), ordering: .relaxed)
    }
    /// The level the table serves.
    public func level(_ table: TableID) -> PageTableLevel {
        PageTableLevel(rawValue: Int(meta(table)[2].load(ordering: .relaxed)))!
    }
    /// Extra references to a shared table (0 when referenced once).
    public func shareCount(_ table: TableID) -> Int { Int(meta(table)[3].load(ordering: .relaxed)) }
    func adjustShares(_ table: TableID, _ delta: Int) {
        meta(table)[3].wrappingAdd(UInt32(bitPattern: Int32(delta)), ordering: .relaxed)
    }

    @inlinable public func pfn(of table: TableID) -> UInt64 { basePFN + UInt64(table.index) }
    /// The table stored in frame `pfn`, if `pfn` is in the page-table zone.
    public func table(atPFN pfn: UInt64) -> TableID? {
        guard pfn >= basePFN, pfn - basePFN < UInt64(state.withLock { $0.next }) else { return nil }
        return TableID(index: UInt32(pfn - basePFN))
    }
    /// The table at `pfn`, without the bounds check (entries written by the model).
    @inlinable @inline(always)
    public func uncheckedTable(atPFN pfn: UInt64) -> TableID { TableID(index: UInt32(truncatingIfNeeded: pfn &- basePFN)) }

    /// Allocates a zeroed table for `level`.
    func allocate(level: PageTableLevel) throws(ModelError) -> TableID {
        let f = failAfter.load(ordering: .relaxed)
        if f > 0 {
            if failAfter.subtract(1, ordering: .relaxed).newValue == 0 {
                throw .allocationFailed("page table for \(level) (injected)")
            }
        }
        let index: UInt32 = try state.withLock { (s) throws(ModelError) -> UInt32 in
            if !s.deferred.isEmpty && activeReaders.load(ordering: .sequentiallyConsistent) == 0 {
                s.free.append(contentsOf: s.deferred)
                s.deferred.removeAll(keepingCapacity: true)
            }
            s.live += 1
            if let i = s.free.popLast() { return i }
            let i = s.next
            let c = Int(i) >> TableArena.chunkShift
            guard c < TableArena.maxChunks else { s.live -= 1; throw .allocationFailed("page-table arena full") }
            if Int(i) & (TableArena.tablesPerChunk - 1) == 0 && chunks[c].load(ordering: .relaxed) == 0 {
                let mem = mmap(nil, TableArena.tablesPerChunk * Geometry.pageBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                guard mem != MAP_FAILED else { s.live -= 1; throw .allocationFailed("host memory for page tables") }
                let meta = UnsafeMutablePointer<Atomic<UInt32>>.allocate(capacity: TableArena.tablesPerChunk * TableArena.metaWords)
                for k in 0..<(TableArena.tablesPerChunk * TableArena.metaWords) { (meta + k).initialize(to: Atomic(0)) }
                metaChunks[c].store(UInt(bitPattern: meta), ordering: .releasing)
                chunks[c].store(UInt(bitPattern: mem), ordering: .releasing)
            }
            s.next += 1
            return i
        }
        let t = TableID(index: index)
        let e = entries(t)
        for k in 0..<512 { e[k].store(0, ordering: .relaxed) }
        let m = meta(t)
        m[1].store(0, ordering: .relaxed)
        m[2].store(UInt32(level.rawValue), ordering: .relaxed)
        m[3].store(0, ordering: .relaxed)
        return t
    }

    /// Returns `table` to the arena once no lockless reader can still see it.
    func free(_ table: TableID) {
        state.withLock { s in
            s.live -= 1
            s.deferred.append(table.index)
        }
    }

    /// Marks the start and end of a lockless descent (`rcu_read_lock()`).
    public func beginLocklessRead() { activeReaders.add(1, ordering: .sequentiallyConsistent) }
    public func endLocklessRead() { activeReaders.subtract(1, ordering: .sequentiallyConsistent) }

    /// Test hook: make the `n`th next table allocation fail.
    public func injectAllocationFailure(after n: Int) { failAfter.store(n, ordering: .relaxed) }
}
