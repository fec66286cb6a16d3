import Synchronization

/// One entry position: a table, an index in it, and the level of the
/// entries that table holds.
public struct EntrySlot: Hashable, Sendable {
    public let table: TableID
    public let index: Int
    public let level: PageTableLevel
    @inlinable public init(_ table: TableID, _ index: Int, _ level: PageTableLevel) {
        self.table = table; self.index = index; self.level = level
    }
}

/// Where a descent stopped.
enum SlotLookup {
    /// The slot at the requested level.
    case slot(EntrySlot)
    /// A none entry above the requested level.
    case missing(EntrySlot)
    /// A leaf or a non-present entry above the requested level.
    case blocked(EntrySlot)
}

/// The PTE table covering an address, found and locked.
enum PTETableLookup {
    case table(TableID, pmd: EntrySlot)
    /// A PMD-level leaf (or PMD migration entry) covers the address.
    case pmdEntry(EntrySlot)
    /// Something above the PMD level blocks (PUD leaf).
    case blocked(EntrySlot)
    /// Nothing is mapped: the first none entry met on the way down (its
    /// span can be skipped whole).
    case absent(EntrySlot)
}

extension EntryLayout {
    /// `p?d_present()` for a word at `level`.
    @inlinable @inline(__always)
    public func isPresent(_ raw: UInt64, _ level: PageTableLevel) -> Bool {
        var mask = valid | presentInvalid
        if level != .pte { mask |= huge }
        return raw & mask != 0
    }

    /// `p?d_leaf()` for a present word at `level`.
    @inlinable @inline(__always)
    public func isLeaf(_ raw: UInt64, _ level: PageTableLevel) -> Bool {
        switch level {
        case .pte: return true
        case .pmd, .pud: return architecture == .x86_64 ? raw & huge != 0 : raw & tableBit == 0
        case .p4d, .pgd: return false
        }
    }

    /// A present entry that points to a lower table.
    @inlinable @inline(__always)
    public func isTable(_ raw: UInt64, _ level: PageTableLevel) -> Bool {
        level != .pte && isPresent(raw, level) && !isLeaf(raw, level)
    }

    @inlinable @inline(__always)
    public func pfn(_ raw: UInt64) -> UInt64 { (raw & pfnMask) >> Geometry.pageShift }
}

extension AddressSpace {
    @inline(__always)
    func entryPointer(_ s: EntrySlot) -> UnsafeMutablePointer<Atomic<UInt64>> { arena.entries(s.table) + s.index }

    @inline(__always)
    func load(_ s: EntrySlot) -> UInt64 { entryPointer(s).pointee.load(ordering: .acquiring) }

    /// Writes an entry, keeping the table's count of used entries (which
    /// decides when a table is empty and may be freed).
    @inline(__always)
    func store(_ s: EntrySlot, _ new: UInt64) {
        let old = entryPointer(s).pointee.exchange(new, ordering: .acquiringAndReleasing)
        if old == 0 && new != 0 { arena.adjustUsed(s.table, 1) } else if old != 0 && new == 0 { arena.adjustUsed(s.table, -1) }
    }

    /// Writes PTE `i` of `table` (caller holds the table's lock), as
    /// `set_ptes()` with one entry does on arm64: a folded block the old
    /// entry belongs to is unfolded first (`contpte_try_unfold()`), the new
    /// entry is written without PTE_CONT, and a write that completes a
    /// uniform block of one large folio folds it (`contpte_try_fold()`;
    /// not with `tryFold: false`, for the access-flag paths that do not go
    /// through `set_ptes()`).
    @inline(__always)
    package func storePTE(_ table: TableID, _ i: Int, _ new: UInt64, tryFold: Bool = true) {
        let e = arena.entries(table)
        let old = e[i].load(ordering: .relaxed)
        var word = new
        if layout.contiguous != 0 {
            if layout.isValidCont(old) { unfoldContiguous(table, i) }
            if layout.isPresent(word, .pte) { word &= ~layout.contiguous }
        }
        e[i].store(word, ordering: .releasing)
        if old == 0 && word != 0 { arena.adjustUsed(table, 1) } else if old != 0 && word == 0 { arena.adjustUsed(table, -1) }
        if tryFold && layout.contiguous != 0 && EntryLayout.isLastInContBlock(i) { tryFoldContiguous(table, i) }
    }

    /// Whether the geometry has real entries of `level` (a PUD entry exists
    /// in a 4-level table, not in a 2-level one).
    func hasEntries(at level: PageTableLevel) -> Bool { tableLevels.contains(level) }

    /// The level of the tables below entries of `level`.
    func childLevel(of level: PageTableLevel) -> PageTableLevel {
        let i = tableLevels.firstIndex(of: level)!
        return tableLevels[i + 1]
    }

    /// Descends from the root to the slot holding `level` entries for
    /// `address`, allocating missing tables when asked.
    func slot(_ address: UInt64, at target: PageTableLevel, allocate: Bool) throws(ModelError) -> SlotLookup {
        guard hasEntries(at: target) else {
            throw .unsupported("\(geometry) has no \(target) entries")
        }
        var table = root
        for lv in tableLevels {
            let s = EntrySlot(table, geometry.tableIndex(address, lv), lv)
            if lv == target { return .slot(s) }
            var w = load(s)
            if w == 0 {
                guard allocate else { return .missing(s) }
                w = try installTable(at: s)
            }
            guard layout.isTable(w, lv) else { return .blocked(s) }
            table = arena.uncheckedTable(atPFN: layout.pfn(w))
        }
        fatalError("unreachable: \(target) not among \(tableLevels)")
    }

    /// Installs a new lower table at a none slot (`__pte_alloc()`,
    /// `__pmd_alloc()` …), under the lock the kernel uses; returns the
    /// entry now in the slot (another thread may have won the race).
    @discardableResult
    package func installTable(at s: EntrySlot) throws(ModelError) -> UInt64 {
        let l = lock(forEntriesOf: s.table, level: s.level)
        l.lock()
        defer { l.unlock() }
        let w = load(s)
        if w != 0 { return w }
        let child = childLevel(of: s.level)
        let t = try arena.allocate(level: child)
        let entry = layout.table(pfn: arena.pfn(of: t), user: !isKernel)
        store(s, entry)
        addTables(child, 1)
        return entry
    }

    /// Finds and locks the PTE table for `address` (`pte_offset_map_lock()`),
    /// re-checking after locking that the PMD still points at it.
    func lockPTETable(_ address: UInt64, allocate: Bool) throws(ModelError) -> PTETableLookup {
        while true {
            let pmdSlot: EntrySlot
            switch try slot(address, at: .pmd, allocate: allocate) {
            case .slot(let s): pmdSlot = s
            case .missing(let s): return .absent(s)
            case .blocked(let s): return .blocked(s)
            }
            var w = load(pmdSlot)
            if w == 0 {
                guard allocate else { return .absent(pmdSlot) }
                w = try installTable(at: pmdSlot)
            }
            guard layout.isTable(w, .pmd) else { return .pmdEntry(pmdSlot) }
            let t = arena.uncheckedTable(atPFN: layout.pfn(w))
            arena.lock(t).lock()
            if load(pmdSlot) == w { return .table(t, pmd: pmdSlot) }
            arena.lock(t).unlock()
        }
    }

    /// Frees the PTE table under `pmdSlot` if it has no entries left (the
    /// kernel's empty-PTE-table reclaim on MADV_DONTNEED, `CONFIG_PT_RECLAIM`).
    /// Caller holds no table locks.
    func reclaimPTETableIfEmpty(pmd pmdSlot: EntrySlot) {
        let pmdLock = lock(forEntriesOf: pmdSlot.table, level: .pmd)
        pmdLock.lock()
        defer { pmdLock.unlock() }
        let w = load(pmdSlot)
        guard layout.isTable(w, .pmd) else { return }
        let t = arena.uncheckedTable(atPFN: layout.pfn(w))
        let ptl = arena.lock(t)
        ptl.lock()
        let empty = arena.usedEntries(t) == 0
        if empty { store(pmdSlot, 0) }
        ptl.unlock()
        if empty {
            arena.free(t)
            addTables(.pte, -1)
        }
    }

    /// Frees every table below `table` that maps nothing inside
    /// `[start, end)` and is empty, bottom-up (`free_pgtables()`); runs under
    /// the mmap write lock.
    func freeEmptyTables(_ start: UInt64, _ end: UInt64) {
        freeEmptyTables(in: root, level: tableLevels[0], start, end)
    }

    private func freeEmptyTables(in table: TableID, level: PageTableLevel, _ start: UInt64, _ end: UInt64) {
        guard level != .pte else { return }
        var a = start
        while a < end {
            let next = geometry.entryEnd(a, at: level, limit: end)
            let s = EntrySlot(table, geometry.tableIndex(a, level), level)
            let w = load(s)
            if layout.isTable(w, level) {
                let child = arena.uncheckedTable(atPFN: layout.pfn(w))
                let childLevel = childLevel(of: level)
                freeEmptyTables(in: child, level: childLevel, a, next)
                let span = geometry.entrySize(level)
                let spanStart = a & ~(span - 1)
                if arena.usedEntries(child) == 0 && arena.shareCount(child) == 0
                    && vmas(intersecting: spanStart, spanStart &+ span).isEmpty {
                    store(s, 0)
                    arena.free(child)
                    addTables(childLevel, -1)
                }
            }
            a = next
        }
    }

    // MARK: Single-address lookup

    /// What one address translates to: the kernel-independent view used by
    /// the reference checker and `folio_walk`-like lookups.
    public enum Translation: Hashable, Sendable {
        /// Nothing mapped; `level` is where the descent found a none entry.
        case none(level: PageTableLevel)
        /// A present leaf at `level` (raw word; the PFN of this exact page).
        case present(level: PageTableLevel, raw: UInt64, pagePFN: UInt64)
        /// A non-present entry at `level`.
        case softLeaf(level: PageTableLevel, raw: UInt64, SoftLeafEntry)
    }

    /// Translates `address` by walking the tables without locks (callers
    /// hold the mmap lock; used by checkers and tests). A PTE reads as
    /// `ptep_get()` returns it.
    public func translate(_ address: UInt64) -> Translation {
        var table = root
        for lv in tableLevels {
            let s = EntrySlot(table, geometry.tableIndex(address, lv), lv)
            let w = load(s)
            if w == 0 { return .none(level: lv) }
            if !layout.isPresent(w, lv) {
                return .softLeaf(level: lv, raw: w, SoftLeafEntry(decoding: w, layout: layout))
            }
            if lv == .pte || layout.isLeaf(w, lv) {
                let offset = (address & (geometry.entrySize(lv) - 1)) >> Geometry.pageShift
                let read = lv == .pte ? layout.ptepGet(arena.entries(table), s.index) : w
                return .present(level: lv, raw: read, pagePFN: layout.pfn(w) + offset)
            }
            table = arena.uncheckedTable(atPFN: layout.pfn(w))
        }
        fatalError("unreachable")
    }

    /// The slot holding the leaf (or non-present entry) for `address`, if any.
    func leafSlot(_ address: UInt64) -> EntrySlot? {
        var table = root
        for lv in tableLevels {
            let s = EntrySlot(table, geometry.tableIndex(address, lv), lv)
            let w = load(s)
            if w == 0 { return nil }
            if lv == .pte || !layout.isPresent(w, lv) || layout.isLeaf(w, lv) { return s }
            table = arena.uncheckedTable(atPFN: layout.pfn(w))
        }
        return nil
    }

    /// Reads the raw entry word at `slot` (tests and walkers).
    public func entry(at slot: EntrySlot) -> UInt64 { load(slot) }
}
