import MemoryModel
import Synchronization

/// The range walker: `pt_range_walk` as a Swift `Sequence`.
///
/// ```swift
/// try mm.withMmapReadLock { lock in
///     for entry in try mm.walk(start..<end, lock: lock) { … }
/// }
/// ```
/// The caller holds the mmap lock; the walker takes the page-table locks
/// (split PTE lock, PMD lock, `page_table_lock`, the hugetlb VMA lock and
/// huge PTE lock) and holds a table's lock while the loop body handles that
/// table's entries, dropping it when it moves on or the loop ends. A table
/// replaced between the lockless descent and the lock is re-read.
public struct RangeWalk: Sequence {
    public let mm: AddressSpace
    public let start: UInt64
    public let end: UInt64
    public let options: RangeWalkOptions
    /// The mode of the mmap lock the walk was opened under.
    public let lockMode: LockMode
    /// The VMA whose read lock the walk runs under instead of the mmap lock
    /// (an update walk opened with `UpdateWalkLock.vma`), if any.
    let lockedVMA: VMA?

    init(mm: AddressSpace, start: UInt64, end: UInt64, options: RangeWalkOptions, lockMode: LockMode,
         lockedVMA: VMA? = nil) {
        self.mm = mm; self.start = start; self.end = end; self.options = options
        self.lockMode = lockMode; self.lockedVMA = lockedVMA
    }

    /// A walk is used under the hold it was opened with: iterated by a
    /// thread that no longer holds the mmap lock (a walk returned out of
    /// `withMmapReadLock`), it yields nothing, and its iterator's `failure`
    /// (and `checkLock()`) say why.
    public func makeIterator() -> Iterator { Iterator(self) }

    /// Throws `.lockNotHeld` unless the calling thread holds the mmap lock
    /// the walk was opened under.
    public func checkLock() throws(PageWalkError) {
        if let vma = lockedVMA {
            guard mm.isVMALocked(vma) else {
                throw .lockNotHeld("VMA lock of 0x\(String(vma.start, radix: 16)) in pid \(mm.options.pid): the walk outlived the hold it was opened under")
            }
            return
        }
        guard mm.isMmapLockHeldByCurrentThread(lockMode) else {
            throw .lockNotHeld("mmap lock of pid \(mm.options.pid) for \(lockMode): the walk outlived the hold it was opened under")
        }
    }

    /// The walk's cursor; see `RangeWalk`.
    public struct Iterator: IteratorProtocol {
        @usableFromInline let mm: AddressSpace
        @usableFromInline let locks: WalkLocks
        /// `locks.held`, read without going through the class.
        @usableFromInline let held: UnsafeMutablePointer<HeldLocks>
        /// This thread's lock-owner token, read once.
        @usableFromInline let owner: UInt32
        @usableFromInline let arena: TableArena
        @usableFromInline let memory: PhysicalMemory
        @usableFromInline var folios: MemmapCursor
        @usableFromInline let geometry: Geometry
        @usableFromInline let layout: EntryLayout
        @usableFromInline let levels: [PageTableLevel]
        @usableFromInline let vmas: [VMA]
        @usableFromInline let options: RangeWalkOptions
        @usableFromInline let batching: Bool
        @usableFromInline let zeroPageAsFolio: Bool
        @usableFromInline let isKernel: Bool
        @usableFromInline let end: UInt64
        @usableFromInline let tablesOnly: Bool
        @usableFromInline let lockTables: Bool
        /// Opened under the mmap write lock: each VMA is write-locked as the
        /// walk reaches it (`PGWALK_WRLOCK`).
        @usableFromInline let writeLocksVMAs: Bool
        @usableFromInline let zeroPFN: UInt64
        /// Entry bits whose differences a batch ignores (or-ing them).
        @usableFromInline let ignoredBits: UInt64
        @usableFromInline var vmaIndex = 0
        /// Why the walk yielded nothing: it was iterated without its lock.
        public private(set) var failure: PageWalkError?
        // The deepest upper table of the last descent and the range it maps.
        @usableFromInline var resumeTable = TableID(index: 0)
        @usableFromInline var resumeLevel = 0
        @usableFromInline var resumeStart: UInt64 = 0
        @usableFromInline var resumeSize: UInt64 = 0
        @usableFromInline var addr: UInt64
        // The PTE table being walked (locked), if any.
        @usableFromInline var ptes: UnsafeMutablePointer<Atomic<UInt64>>?
        @usableFromInline var ptIndex = 0
        @usableFromInline var ptEnd = 0
        @usableFromInline var ptBase: UInt64 = 0
        /// The locked PTE table itself, for the update walk's writes.
        @usableFromInline var ptTable = TableID(index: 0)
        /// The VMA of the PTE table's entries, unretained (`vmas` keeps it
        /// alive): no reference counting per entry.
        @usableFromInline var ptVMAPointer: UnsafeRawPointer?
        // The VMA whose tables are being descended, and the part of it the
        // walk covers: read once per VMA, not per table (every read of a
        // VMA's fields is a class-property access).
        @usableFromInline var inVMA: UnsafeRawPointer?
        @usableFromInline var inVMAStart: UInt64 = 0
        @usableFromInline var inVMALimit: UInt64 = 0
        // The PMD leaf just yielded under its table's PMD lock: the next
        // entries of that table up to `leafRunEnd` are read under the same
        // hold while they are leaves too.
        @usableFromInline var leafSlot: UnsafeMutablePointer<Atomic<UInt64>>?
        @usableFromInline var leafRunEnd: UInt64 = 0
        @usableFromInline var leafVMA: UnsafeRawPointer?
        /// How present entry words' attributes read (the architecture).
        @usableFromInline let presentSource: AttributeWord.Source
        /// `pte_present()`'s bits, or-ed once.
        @usableFromInline let ptePresentBits: UInt64
        /// The bits that make a present PTE have no normal page: special,
        /// or all of them in a kernel walk (kernel mappings report PFNs).
        @usableFromInline let noPageBits: UInt64
        /// `pte_valid_cont()`'s bits, tested per batched PTE without going
        /// through the layout; zero where there is no contiguous bit (x86).
        @usableFromInline let contValidBits: UInt64
        /// Present PTEs become `.present` runs, not looked up.
        @usableFromInline let presentRuns: Bool
        /// The bits on which PTEs of a `.present` run agree: present and
        /// PROT_NONE, special, and the respected attributes.
        @usableFromInline let presentRunBits: UInt64

        init(_ walk: RangeWalk) {
            mm = walk.mm
            arena = walk.mm.memory.tables
            locks = WalkLocks(arena: arena)
            held = locks.held
            owner = currentThreadToken()
            memory = walk.mm.memory
            folios = MemmapCursor(walk.mm.memory)
            geometry = walk.mm.geometry
            layout = walk.mm.geometry.layout
            levels = walk.mm.tableLevels
            options = walk.options
            batching = walk.options.batching
            zeroPageAsFolio = walk.options.zeroPageAsFolio
            isKernel = walk.mm.isKernel
            end = walk.end
            addr = walk.start
            writeLocksVMAs = walk.lockMode == .write
            do { try walk.checkLock() } catch {
                failure = error
                addr = walk.end
            }
            tablesOnly = walk.options.ignoreVMAs || walk.mm.isKernel
            lockTables = !walk.mm.isKernel
            // A walk under one VMA's lock sees that VMA alone: the list
            // may change under the mmap lock, which it does not hold.
            vmas = tablesOnly ? [] : walk.lockedVMA.map { [$0] } ?? walk.mm.vmas
            // Binary search: a walk of one VMA among thousands must not scan
            // the ones before it.
            vmaIndex = vmas.firstIndex(endingAfter: walk.start)
            zeroPFN = walk.mm.memory.zeroPage.pfn
            let l = walk.mm.geometry.layout
            presentSource = AttributeWord.Source(l.architecture)
            ptePresentBits = l.valid | l.presentInvalid
            noPageBits = walk.mm.isKernel ? ~0 : l.special
            var ignored: UInt64 = 0
            if walk.options.batching {
                let r = walk.options.respect
                if !r.contains(.young) { ignored |= l.young }
                if !r.contains(.dirty) { ignored |= l.dirty | l.readOnly }
                // arm64's hardware dirty is DBM (the write bit) with RDONLY
                // clear: a walk that respects dirtiness keeps both bits.
                if !r.contains(.writable) && !(r.contains(.dirty) && l.readOnly != 0) { ignored |= l.write | l.readOnly }
                if !r.contains(.softDirty) { ignored |= l.softDirty }
                if !r.contains(.uffdWP) { ignored |= l.uffdWP }
            }
            ignoredBits = ignored
            contValidBits = l.contiguous == 0 ? 0 : l.contiguous | l.valid
            presentRuns = !walk.options.lookUpFolios && !walk.mm.isKernel
            presentRunBits = (l.valid | l.presentInvalid | l.special | l.write | l.readOnly | l.dirty | l.young
                              | l.softDirty | l.uffdWP) & ~ignored
        }

        /// The next entry. Inlined into the caller's loop: the entries of a
        /// locked PTE table come straight from it; everything else (moving
        /// to the next table or VMA, upper-level leaves, hugetlb) is out of
        /// line in `advance()`.
        ///
        /// The hot path is marked `@inline(always)` (SE-0496), which is a
        /// guarantee: `@inline(__always)` is only a hint that the inliner
        /// drops for functions it finds large, and it dropped this one and
        /// the attribute tests of `WalkEntry` into calls per entry.
        @inlinable @inline(always)
        public mutating func next() -> WalkEntry? {
            if let e = ptes, ptIndex < ptEnd { return pteEntry(e) }
            if let s = leafSlot, let e = nextPMDLeaf(after: s) { return e }
            return advance()
        }

        /// Drops the table's locks and finds the next entry past it.
        @usableFromInline @inline(never)
        mutating func advance() -> WalkEntry? {
            while true {
                if let e = ptes {
                    if ptIndex < ptEnd { return pteEntry(e) }
                    ptes = nil
                }
                if let s = leafSlot, let e = nextPMDLeaf(after: s) { return e }
                WalkLocks.release(held)
                if addr >= end { return nil }
                if let entry = step() { return entry }
            }
        }
    }
}
