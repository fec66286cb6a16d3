import MemoryModel

/// The model's `p?d_offset()`, `p?d_none_or_clear_bad()` and
/// `pte_offset_map_lock()` for one address space, with the kernel's folding
/// rules: a folded level's entry is the same word as the entry above it, and
/// the level above a folded one has trivial predicates.
///
/// Shared by the callback walker and `folioWalkStart`.
struct LevelAccess {
    let mm: AddressSpace
    let geometry: Geometry
    let architecture: Architecture
    let tables: TableArena
    /// The levels whose lower level is folded into them (`pgd_none()` is
    /// constant 0 when the P4D is folded, and so on down).
    let trivialPGD: Bool, trivialP4D: Bool, trivialPUD: Bool

    init(_ mm: AddressSpace) {
        self.mm = mm
        geometry = mm.geometry
        architecture = mm.geometry.architecture
        tables = mm.memory.tables
        trivialPGD = mm.geometry.hasTrivialEntries(.pgd)
        trivialP4D = mm.geometry.hasTrivialEntries(.p4d)
        trivialPUD = mm.geometry.hasTrivialEntries(.pud)
    }

    @inline(__always) func load(_ slot: EntrySlot) -> UInt64 { mm.entry(at: slot) }

    @inline(__always)
    func pointer<E: PageTableEntry>(_ slot: EntrySlot, trivial: Bool = false) -> EntryPointer<E> {
        EntryPointer(slot, in: tables, architecture, trivial: trivial)
    }

    /// `pgd_offset()`: the root entry for `addr`, in `root` or the address
    /// space's own root table.
    @inline(__always)
    func pgdSlot(_ addr: UInt64, root: TableID?) -> EntrySlot {
        EntrySlot(root ?? mm.root, geometry.index(addr, at: .pgd), mm.tableLevels[0])
    }

    /// `p4d_offset()`, `pud_offset()`, `pmd_offset()`, `pte_offset()`: a
    /// folded level reuses the upper entry's word; a real level indexes the
    /// table the upper entry points at.
    @inline(__always)
    func lower(_ upper: EntrySlot, _ level: PageTableLevel, _ addr: UInt64) -> EntrySlot {
        if geometry.isFolded(level) { return upper }
        return EntrySlot(mm.lowerTable(load(upper)), geometry.index(addr, at: level), level)
    }

    /// `pgd_none_or_clear_bad()` / `p4d_none_or_clear_bad()`: none, or a
    /// word that cannot be a table pointer at this level, which the kernel
    /// reports and clears; constant false for a trivial level.
    func noneOrClearBad(_ slot: EntrySlot, trivial: Bool) -> Bool {
        if trivial { return false }
        let raw = load(slot)
        if raw == 0 { return true }
        if P4D(rawValue: raw, architecture: architecture).isPresent { return false }
        let lock = mm.lock(forEntriesOf: slot.table, level: slot.level)
        lock.lock()
        if load(slot) == raw { mm.setEntry(at: slot, 0) }
        lock.unlock()
        return true
    }

    /// `pte_offset_map_lock()`: the PTE table under `pmdSlot`, locked, after
    /// checking the PMD still points at it (`pmd_same()`); nil when the PMD
    /// holds no table (none, a leaf, a migration entry).
    func lockPTETable(_ pmdSlot: EntrySlot) -> TableID? {
        var raw = load(pmdSlot)
        while true {
            guard PMD(rawValue: raw, architecture: architecture).isTable else { return nil }
            let table = mm.lowerTable(raw)
            let lock = tables.lock(table)
            lock.lock()
            let now = load(pmdSlot)
            if now == raw { return table }
            lock.unlock()
            raw = now
        }
    }

    /// Whether `raw`, an entry at `level`, points to a lower table.
    func isTable(_ raw: UInt64, _ level: PageTableLevel) -> Bool {
        switch level {
        case .pte: return false
        case .pmd: return PMD(rawValue: raw, architecture: architecture).isTable
        case .pud: return PUD(rawValue: raw, architecture: architecture).isTable
        case .p4d: return P4D(rawValue: raw, architecture: architecture).isTable
        case .pgd: return PGD(rawValue: raw, architecture: architecture).isTable
        }
    }
}
