import MemoryModel
import Synchronization

/// The locks a range walk holds at a time: at most one table lock (split
/// PTE lock, PMD lock or `page_table_lock`) and the hugetlb VMA lock.
@usableFromInline
struct HeldLocks {
    @usableFromInline var table: SpinLockRef?
    @usableFromInline var hugetlb: ReadWriteLock?
}

/// Owns the locks a range walk has taken, so that they are dropped when
/// the walk moves on — and when the `for` loop is left by `break`, `return`
/// or a throw, as the iterator holding this object is destroyed.
///
/// The state lives behind a pointer the iterator keeps: taking and dropping
/// a lock per table is then a plain store, with no exclusivity check on a
/// class property.
@usableFromInline
final class WalkLocks {
    @usableFromInline let held: UnsafeMutablePointer<HeldLocks>
    @usableFromInline let arena: TableArena

    @usableFromInline
    init(arena: TableArena) {
        self.arena = arena
        held = .allocate(capacity: 1)
        held.initialize(to: HeldLocks())
        arena.beginLocklessRead()
    }

    deinit {
        WalkLocks.release(held)
        held.deinitialize(count: 1)
        held.deallocate()
        arena.endLocklessRead()
    }

    @inlinable @inline(always)
    static func release(_ held: UnsafeMutablePointer<HeldLocks>) {
        if let t = held.pointee.table { t.unlock(); held.pointee.table = nil }
        if let h = held.pointee.hugetlb { h.unlockRead(); held.pointee.hugetlb = nil }
    }
}

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

    public func makeIterator() -> Iterator { Iterator(self) }

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
        @usableFromInline let zeroPFN: UInt64
        /// Entry bits whose differences a batch ignores (or-ing them).
        @usableFromInline let ignoredBits: UInt64
        @usableFromInline var vmaIndex = 0
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

        init(_ walk: RangeWalk) {
            mm = walk.mm
            arena = walk.mm.tables
            locks = WalkLocks(arena: arena)
            held = locks.held
            owner = currentThreadToken()
            memory = walk.mm.memory
            folios = MemmapCursor(walk.mm.memory)
            geometry = walk.mm.geometry
            layout = walk.mm.geometry.layout
            levels = walk.mm.entryLevels
            options = walk.options
            batching = walk.options.batching
            zeroPageAsFolio = walk.options.zeroPageAsFolio
            isKernel = walk.mm.isKernel
            end = walk.end
            addr = walk.start
            tablesOnly = walk.options.ignoreVMAs || walk.mm.isKernel
            lockTables = !walk.mm.isKernel
            vmas = tablesOnly ? [] : walk.mm.vmas
            // The first VMA ending above the start (binary search: a walk of
            // one VMA among thousands must not scan the ones before it).
            var lo = 0, hi = vmas.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if vmas[mid].end <= walk.start { lo = mid + 1 } else { hi = mid }
            }
            vmaIndex = lo
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
                if !r.contains(.writable) { ignored |= l.write | l.readOnly }
                if !r.contains(.softDirty) { ignored |= l.softDirty }
                if !r.contains(.uffdWP) { ignored |= l.uffdWP }
            }
            ignoredBits = ignored
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

        /// The PMD leaf after `slot` in the same table, read under the PMD
        /// lock still held for `slot` (a run of THPs costs one lock hold per
        /// table, as the PTEs of a table do); nil ends the run.
        @inlinable @inline(always)
        mutating func nextPMDLeaf(after slot: UnsafeMutablePointer<Atomic<UInt64>>) -> WalkEntry? {
            leafSlot = nil
            guard addr < leafRunEnd else { return nil }
            let next = slot + 1
            let w = next.pointee.load(ordering: .relaxed)
            guard w != 0, !layout.isTable(w, .pmd) else { return nil }
            let entryEnd = geometry.entryEnd(addr, at: .pmd, limit: leafRunEnd)
            let e = upperLeafEntry(w, level: .pmd, vma: leafVMA, end: entryEnd)
            addr = entryEnd
            leafSlot = next
            return e
        }

        /// Takes `lock` and records it as held, for `advance()` to drop.
        @inlinable @inline(always)
        func take(_ lock: SpinLockRef) {
            lock.lock(owner: owner)
            held.pointee.table = lock
        }

        // MARK: VMAs

        /// Decides what the range at `addr` is: a gap, a skipped VMA, a
        /// hugetlb page, or page tables to descend.
        @inline(always)
        mutating func step() -> WalkEntry? {
            if tablesOnly { return descend(vma: nil, limit: end) }
            if addr &- inVMAStart < inVMALimit &- inVMAStart { return descend(vma: inVMA, limit: inVMALimit) }
            while vmaIndex < vmas.count && vmas[vmaIndex].end <= addr { vmaIndex += 1 }
            let gapEnd = vmaIndex < vmas.count ? Swift.min(vmas[vmaIndex].start, end) : end
            if addr < gapEnd {
                guard options.reportHoles else { addr = gapEnd; return nil }
                return descend(vma: nil, limit: gapEnd)
            }
            let vma = vmas[vmaIndex]
            let limit = Swift.min(vma.end, end)
            if let filter = options.vmaFilter, !filter(vma) { addr = limit; return nil }
            if vma.isPFNMap {
                switch options.pfnMap {
                case .skip: addr = limit; return nil
                case .hole:
                    let e = WalkEntry(start: addr, end: limit, level: .pte, count: 0, vma: vma, raw: 0,
                                      attributes: [], content: .hole(depth: -1))
                    addr = limit
                    return e
                case .walk: break
                }
            }
            if vma.isHugetlb { return hugetlbEntry(vma, limit: limit) }
            inVMA = UnsafeRawPointer(Unmanaged.passUnretained(vma).toOpaque())
            inVMAStart = addr
            inVMALimit = limit
            return descend(vma: inVMA, limit: limit)
        }

        // MARK: Upper levels

        /// Descends from the root to the entry mapping `addr`: yields none
        /// and leaf entries of upper levels, or locks the PTE table and sets
        /// it up for `pteEntry`. Returns nil to be called again (a table
        /// changed under it, or the PTE table is ready).
        @inline(always)
        mutating func descend(vma: UnsafeRawPointer?, limit: UInt64) -> WalkEntry? {
            var table = mm.root
            var first = 0
            // Resume below the root when the last descent's deepest upper
            // table still covers `addr`, as the kernel's per-level loops
            // stay in one table. Upper tables are never freed while the mmap
            // lock is held (only PTE tables are reclaimed), so this is safe.
            if resumeLevel > 0 && addr &- resumeStart < resumeSize {
                table = resumeTable
                first = resumeLevel
            }
            for li in first..<levels.count {
                let level = levels[li]
                let index = geometry.tableIndex(addr, level)
                let slot = arena.entries(table) + index
                let w = slot.pointee.load(ordering: .acquiring)
                let entryEnd = geometry.entryEnd(addr, at: level, limit: limit)
                if w == 0 {
                    let e = WalkEntry(start: addr, end: entryEnd, level: EntryLevel(level), count: 1, vmaPointer: vma,
                                      raw: 0, attributes: [],
                                      content: vma == nil ? .hole(depth: geometry.realDepth(level.holeDepth)) : .none)
                    addr = entryEnd
                    return e
                }
                if level == .pte { return nil }   // unreachable: PTE tables are handled below
                if !layout.isTable(w, level) {
                    if lockTables {
                        let l = mm.lock(forEntriesOf: table, level: level)
                        take(l)
                        // pmd_same(): the leaf may have been split or zapped.
                        if slot.pointee.load(ordering: .relaxed) != w { WalkLocks.release(held); return nil }
                    }
                    let e = upperLeafEntry(w, level: level, vma: vma, end: entryEnd)
                    if lockTables && level == .pmd && !geometry.isFolded(.pmd) {
                        // The rest of this PMD table, within the VMA.
                        let tableSpan = geometry.entrySize(.pmd) << 9
                        let tableEnd = (addr & ~(tableSpan - 1)) &+ tableSpan
                        leafRunEnd = tableEnd &- 1 < limit &- 1 ? tableEnd : limit
                        leafSlot = slot
                        leafVMA = vma
                    }
                    addr = entryEnd
                    return e
                }
                let lower = mm.lowerTable(w)
                if levels.last == level { return nil }
                if tablesOnly, let filter = options.tableFilter,
                   !filter(TableDescent(level: level, start: addr, end: entryEnd, raw: w, table: lower)) {
                    addr = entryEnd
                    return nil
                }
                if arena.level(lower) == .pte {
                    if lockTables {
                        take(arena.lock(lower))
                        if slot.pointee.load(ordering: .relaxed) != w { WalkLocks.release(held); return nil }
                    }
                    ptes = arena.entries(lower)
                    ptIndex = geometry.tableIndex(addr, .pte)
                    // Rounded up: a walk to the top of the address space ends at 2^64 - 1.
                    ptEnd = ptIndex + Int((entryEnd - addr + 4095) >> 12)
                    ptBase = addr - UInt64(ptIndex) << 12
                    ptVMAPointer = vma
                    addr = entryEnd
                    return nil
                }
                let span = geometry.entrySize(level)
                resumeTable = lower
                resumeLevel = li + 1
                resumeStart = addr & ~(span - 1)
                resumeSize = span
                table = lower
            }
            return nil
        }

        /// A PMD/PUD leaf or non-present upper entry, from `addr` to `entryEnd`.
        /// (`mutating` only so that the iterator is passed by reference, not
        /// copied, on every call; the same for `content(of:offset:)`.)
        @inlinable @inline(always)
        mutating func upperLeafEntry(_ w: UInt64, level: PageTableLevel, vma: UnsafeRawPointer?, end entryEnd: UInt64) -> WalkEntry {
            let pages = Int((entryEnd - addr) >> 12)
            let size = geometry.entrySize(level)
            let offset = (addr & (size - 1)) >> 12
            if layout.isPresent(w, level) {
                let pfn = layout.pfn(w) + offset
                let entryLevel = EntryLevel(level, contiguous: w & layout.contiguous != 0)
                let attrs = AttributeWord(presentWord: w, presentSource)
                // Kernel mappings have no folios to report (ptdump reads them as PFNs).
                if !tablesOnly || vma != nil || !isKernel,
                   let f = folios.folio(containing: pfn), !(f.isZero && !zeroPageAsFolio) {
                    return WalkEntry(start: addr, end: entryEnd, level: entryLevel, count: 1, vmaPointer: vma, raw: w,
                                     attributeWord: attrs, content: .folio(f, firstPage: Int(pfn - f.pfn), pageCount: pages))
                }
                return WalkEntry(start: addr, end: entryEnd, level: entryLevel, count: 1,
                                 vmaPointer: vma, raw: w, attributeWord: attrs, content: .pfn(pfn))
            }
            let leaf = SoftLeafEntry(decoding: w, layout: layout)
            return WalkEntry(start: addr, end: entryEnd, level: EntryLevel(level), count: 1, vmaPointer: vma, raw: w,
                             attributes: Self.swapAttributes(leaf.bits), content: content(of: leaf.leaf, offset: offset))
        }

        // MARK: PTE level

        /// The next entry of the locked PTE table: a batch starting at `ptIndex`.
        @inlinable @inline(always)
        mutating func pteEntry(_ e: UnsafeMutablePointer<Atomic<UInt64>>) -> WalkEntry {
            let i = ptIndex
            let w = e[i].load(ordering: .relaxed)
            let a = ptBase &+ UInt64(truncatingIfNeeded: i) << 12
            if w == 0 { return nonePTEs(e, i, a) }
            if w & ptePresentBits != 0 { return presentPTE(e, i, w, a) }
            if layout.swapType(w) < SoftLeaf.maxSwapFiles { return swapPTEs(e, i, w, a) }
            return nonPresentPTE(e, i, w, a)
        }

        /// Swap entries from `i`: with batching, `swap_pte_batch()` — the
        /// following PTEs that are the same word but for the next offsets.
        @inlinable @inline(always)
        mutating func swapPTEs(_ e: UnsafeMutablePointer<Atomic<UInt64>>, _ i: Int, _ w: UInt64, _ a: UInt64) -> WalkEntry {
            var n = 1
            if batching {
                let step = layout.swapOffsetStep
                var expected = w
                while i + n < ptEnd {
                    expected &+= step
                    if e[i + n].load(ordering: .relaxed) != expected { break }
                    n += 1
                }
            }
            ptIndex = i &+ n
            return WalkEntry(start: a, end: runEnd(a, n), level: .pte, count: n, vmaPointer: ptVMAPointer, raw: w,
                             attributes: Self.swapAttributes(layout.swapBits(w)),
                             content: .swap(SwapEntry(type: layout.swapType(w), offset: layout.swapOffset(w))))
        }

        /// A run of none PTEs from `i`.
        @inlinable @inline(always)
        mutating func nonePTEs(_ e: UnsafeMutablePointer<Atomic<UInt64>>, _ i: Int, _ a: UInt64) -> WalkEntry {
            var n = 1
            if batching { while i + n < ptEnd && e[i + n].load(ordering: .relaxed) == 0 { n += 1 } }
            ptIndex = i &+ n
            let content: WalkContent = ptVMAPointer == nil ? .hole(depth: geometry.realDepth(4)) : .none
            return WalkEntry(start: a, end: runEnd(a, n), level: .pte, count: n, vmaPointer: ptVMAPointer, raw: 0,
                             attributes: [], content: content)
        }

        /// The end of `n` pages from `a`; the walk's end when they reach the
        /// top of the address space.
        @inlinable @inline(always)
        func runEnd(_ a: UInt64, _ n: Int) -> UInt64 {
            let e = a &+ UInt64(truncatingIfNeeded: n) << 12
            return e == 0 ? end : e
        }

        @inlinable @inline(always)
        mutating func presentPTE(_ e: UnsafeMutablePointer<Atomic<UInt64>>, _ i: Int, _ w: UInt64, _ a: UInt64) -> WalkEntry {
            let pfn = layout.pfn(w)
            // vm_normal_page(): special entries have no page, except the zero
            // page when asked for as a folio; kernel mappings have none.
            if w & noPageBits == 0 || (pfn == zeroPFN && zeroPageAsFolio && !isKernel),
               let (f, isLarge) = folios.folioAndSize(containing: pfn) {
                let page = Int(pfn &- f.pfn)
                var n = 1
                var merged = w
                if batching && isLarge {
                    let (count, orBits) = folioPTEBatch(e, i, w, limit: f.pageCount - page)
                    n = count
                    merged = w | (orBits & ignoredBits)
                }
                ptIndex = i &+ n
                // A whole aligned arm64 contiguous run (only a batch can be one).
                let level: EntryLevel = n >= 16 && i & 15 == 0 && merged & layout.contiguous != 0 ? .contPTE : .pte
                return WalkEntry(start: a, end: runEnd(a, n), level: level, count: n, vmaPointer: ptVMAPointer, raw: w,
                                 attributeWord: AttributeWord(presentWord: merged, presentSource),
                                 content: .folio(f, firstPage: page, pageCount: n))
            }
            ptIndex = i &+ 1
            return WalkEntry(start: a, end: runEnd(a, 1), level: .pte, count: 1, vmaPointer: ptVMAPointer, raw: w,
                             attributeWord: AttributeWord(presentWord: w, presentSource), content: .pfn(pfn))
        }

        /// `folio_pte_batch()`: how many PTEs from `i` map the next pages of
        /// the same folio (at most `limit`) with no difference but the
        /// ignored bits, and those bits or-ed over the run.
        /// (`mutating` only so that the iterator is passed by reference:
        /// a non-mutating call copied the whole iterator per batch.)
        @usableFromInline
        mutating func folioPTEBatch(_ e: UnsafeMutablePointer<Atomic<UInt64>>, _ i: Int, _ w: UInt64, limit folioLeft: Int) -> (Int, UInt64) {
            let limit = Swift.min(ptEnd - i, folioLeft)
            let keep = ~ignoredBits
            var expected = w
            var orBits = w
            var n = 1
            while n < limit {
                expected &+= 1 << 12
                let w2 = e[i + n].load(ordering: .relaxed)
                if (w2 ^ expected) & keep != 0 { break }
                orBits |= w2
                n += 1
            }
            return (n, orBits)
        }

        @usableFromInline
        mutating func nonPresentPTE(_ e: UnsafeMutablePointer<Atomic<UInt64>>, _ i: Int, _ w: UInt64, _ a: UInt64) -> WalkEntry {
            let leaf = SoftLeafEntry(decoding: w, layout: layout)
            var n = 1
            if batching {
                switch leaf.leaf {
                case .swap(let s):
                    // swap_pte_batch(): consecutive offsets, same type and bits.
                    while i + n < ptEnd {
                        let w2 = e[i + n].load(ordering: .relaxed)
                        guard w2 != 0, !layout.isPresent(w2, .pte) else { break }
                        let next = SoftLeafEntry(decoding: w2, layout: layout)
                        guard next.bits == leaf.bits,
                              case .swap(let s2) = next.leaf, s2.type == s.type, s2.offset == s.offset + UInt64(n) else { break }
                        n += 1
                    }
                case .marker:
                    while i + n < ptEnd && e[i + n].load(ordering: .relaxed) == w { n += 1 }
                default:
                    break
                }
            }
            ptIndex = i &+ n
            return WalkEntry(start: a, end: runEnd(a, n), level: .pte, count: n, vmaPointer: ptVMAPointer, raw: w,
                             attributes: Self.swapAttributes(leaf.bits), content: content(of: leaf.leaf, offset: 0))
        }

        // MARK: Hugetlb

        /// One hugetlb page (or the part of it in the range), read as the
        /// PMD, PUD or contiguous leaf it is, under the hugetlb VMA lock and
        /// the huge PTE lock.
        mutating func hugetlbEntry(_ vma: VMA, limit: UInt64) -> WalkEntry? {
            let size = vma.hugePageSize
            let (level, count): (PageTableLevel, Int) = switch size {
            case 64 << 10: (.pte, 16)
            case 32 << 20: (.pmd, 16)
            case 1 << 30: (.pud, 1)
            default: (.pmd, 1)
            }
            let blockStart = addr & ~(size - 1)
            let blockEnd = Swift.min(blockStart + size, limit)
            vma.hugetlbLock.lockRead()
            held.pointee.hugetlb = vma.hugetlbLock
            // Find the first entry of the huge page.
            var table = mm.root
            var slot: UnsafeMutablePointer<Atomic<UInt64>>? = nil
            for l in levels {
                let s = arena.entries(table) + geometry.tableIndex(blockStart, l)
                if l == level { slot = s; break }
                let w = s.pointee.load(ordering: .acquiring)
                guard layout.isTable(w, l) else { break }
                table = mm.lowerTable(w)
            }
            let entryLevel = EntryLevel(level, contiguous: count > 1)
            let covered = Int((blockEnd - addr + geometry.entrySize(level) - 1) / geometry.entrySize(level))
            guard let s = slot else {
                let e = WalkEntry(start: addr, end: blockEnd, level: entryLevel, count: covered, vma: vma, raw: 0,
                                  attributes: [], content: .none)
                addr = blockEnd
                return e
            }
            let l = (count > 1 || level == .pud) ? mm.pageTableLock.ref : mm.lock(forEntriesOf: table, level: level)
            take(l)
            let w = s.pointee.load(ordering: .relaxed)
            let offset = (addr - blockStart) >> 12
            let content: WalkContent
            var attrs: EntryAttributes = []
            if w == 0 {
                content = .none
            } else if layout.isPresent(w, level) {
                let pfn = layout.pfn(w) + offset
                // Contiguous runs: young and dirty of the whole run count.
                var merged = w
                for k in 1..<count { merged |= (s + k).pointee.load(ordering: .relaxed) & (layout.young | layout.dirty) }
                attrs = AttributeWord(presentWord: merged, presentSource).attributes
                if let f = folios.folio(containing: pfn) {
                    content = .folio(f, firstPage: Int(pfn - f.pfn), pageCount: Int((blockEnd - addr) >> 12))
                } else {
                    content = .pfn(pfn)
                }
            } else {
                let leaf = SoftLeafEntry(decoding: w, layout: layout)
                attrs = Self.swapAttributes(leaf.bits)
                content = self.content(of: leaf.leaf, offset: offset)
            }
            let e = WalkEntry(start: addr, end: blockEnd, level: entryLevel, count: covered, vma: vma, raw: w,
                              attributes: attrs, content: content)
            addr = blockEnd
            return e
        }

        // MARK: Decoding

        @inlinable
        static func swapAttributes(_ bits: SwapPTEBits) -> EntryAttributes {
            var a: EntryAttributes = []
            if bits.contains(.exclusive) { a.insert(.anonExclusive) }
            if bits.contains(.softDirty) { a.insert(.softDirty) }
            if bits.contains(.uffdWP) { a.insert(.uffdWP) }
            return a
        }

        @usableFromInline
        mutating func content(of leaf: SoftLeaf, offset: UInt64) -> WalkContent {
            switch leaf {
            case .swap(let s): return .swap(SwapEntry(type: s.type, offset: s.offset + offset))
            case .migration(let kind, let pfn, _, _):
                return .migration(kind, pfn: pfn + offset, folio: folios.folio(containing: pfn))
            case .devicePrivate(let w, let pfn):
                return .device(exclusive: false, writable: w, pfn: pfn, folio: folios.folio(containing: pfn))
            case .deviceExclusive(let pfn):
                return .device(exclusive: true, writable: false, pfn: pfn, folio: folios.folio(containing: pfn))
            case .hwpoison(let pfn): return .hwpoison(pfn: pfn)
            case .marker(let m): return .marker(m)
            }
        }
    }
}

extension WalkEntry {
    /// Which VMA the entry lies in, compared without reference counting:
    /// loops that keep per-VMA values test this per entry and read `vma`
    /// only when it changes.
    @inlinable
    public var vmaIdentity: VMAIdentity { VMAIdentity(pointer: vmaPointer) }

    /// An entry whose VMA is given unretained (the walker keeps it alive).
    @inlinable
    init(start: UInt64, end: UInt64, level: EntryLevel, count: Int, vmaPointer: UnsafeRawPointer?, raw: UInt64,
         attributes: EntryAttributes, content: WalkContent) {
        self.init(start: start, end: end, level: level, count: count, vmaPointer: vmaPointer, raw: raw,
                  attributeWord: AttributeWord(decoded: attributes), content: content)
    }
}

extension AddressSpace {
    /// Walks `range` with the range walker. The caller holds this address
    /// space's mmap lock (`lock` proves it); a kernel address space
    /// (`init_mm`) is walked by its tables alone.
    public func walk(_ range: Range<UInt64>, lock: MmapLockToken,
                     options: RangeWalkOptions = RangeWalkOptions()) throws(PageWalkError) -> RangeWalk {
        guard lock.mm === self else {
            throw .wrongAddressSpace("the lock token belongs to pid \(lock.mm.options.pid), not pid \(self.options.pid)")
        }
        do { try assertMmapLocked(lock.mode) } catch { throw .lockNotHeld(error.description) }
        guard !isTornDown else { throw .model(.tornDown) }
        // A table-only walk may end at 2^64 - 1: to the top of the address
        // space, as the kernel's walks to ~0UL do.
        let toTop = range.upperBound == UInt64.max && (isKernel || options.ignoreVMAs)
        guard range.lowerBound < range.upperBound, range.lowerBound & 4095 == 0,
              range.upperBound & 4095 == 0 || toTop else {
            throw .invalidRange(start: range.lowerBound, end: range.upperBound)
        }
        if !isKernel && !options.ignoreVMAs && range.upperBound > geometry.userAddressLimit + 4096 {
            throw .invalidRange(start: range.lowerBound, end: range.upperBound)
        }
        return RangeWalk(mm: self, start: range.lowerBound, end: range.upperBound, options: options)
    }
}
