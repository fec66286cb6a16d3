import MemoryModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The model's `p?d_offset()`, `p?d_none_or_clear_bad()` and
/// `pte_offset_map_lock()` for one address space, with the kernel's folding
/// rules: a folded level's entry is the same word as the entry above it, and
/// the level above a folded one has trivial predicates.
///
/// Shared by the callback walker and `folioWalkStart`. Usable from
/// inlinable code so that the callback walker over an `MMWalkOpsProtocol`
/// type can be specialized in its callers' modules.
@usableFromInline
struct LevelAccess {
    @usableFromInline let mm: AddressSpace
    @usableFromInline let geometry: Geometry
    @usableFromInline let architecture: Architecture
    @usableFromInline let tables: TableArena
    /// The levels whose lower level is folded into them (`pgd_none()` is
    /// constant 0 when the P4D is folded, and so on down).
    @usableFromInline let trivialPGD: Bool, trivialP4D: Bool, trivialPUD: Bool

    @usableFromInline
    init(_ mm: AddressSpace) {
        self.mm = mm
        geometry = mm.geometry
        architecture = mm.geometry.architecture
        tables = mm.memory.tables
        trivialPGD = mm.geometry.hasTrivialEntries(.pgd)
        trivialP4D = mm.geometry.hasTrivialEntries(.p4d)
        trivialPUD = mm.geometry.hasTrivialEntries(.pud)
    }

    @inlinable @inline(__always) func load(_ slot: EntrySlot) -> UInt64 { mm.entry(at: slot) }

    @inlinable @inline(__always)
    func pointer<E: PageTableEntry>(_ slot: EntrySlot, trivial: Bool = false) -> EntryPointer<E> {
        EntryPointer(slot, in: tables, architecture, trivial: trivial)
    }

    /// `pgd_offset()`: the root entry for `addr`, in `root` or the address
    /// space's own root table.
    @usableFromInline @inline(__always)
    func pgdSlot(_ addr: UInt64, root: TableID?) -> EntrySlot {
        EntrySlot(root ?? mm.root, geometry.index(addr, at: .pgd), mm.tableLevels[0])
    }

    /// `p4d_offset()`, `pud_offset()`, `pmd_offset()`, `pte_offset()`: a
    /// folded level reuses the upper entry's word; a real level indexes the
    /// table the upper entry points at.
    @usableFromInline @inline(__always)
    func lower(_ upper: EntrySlot, _ level: PageTableLevel, _ addr: UInt64) -> EntrySlot {
        if geometry.isFolded(level) { return upper }
        return EntrySlot(mm.lowerTable(load(upper)), geometry.index(addr, at: level), level)
    }

    /// `pgd_none_or_clear_bad()` / `p4d_none_or_clear_bad()`: none, or a
    /// word that cannot be a table pointer at this level, which the kernel
    /// reports and clears; constant false for a trivial level.
    @usableFromInline
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
    @usableFromInline
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
    @usableFromInline
    func isTable(_ raw: UInt64, _ level: PageTableLevel) -> Bool {
        switch level {
        case .pte: return false
        case .pmd: return PMD(rawValue: raw, architecture: architecture).isTable
        case .pud: return PUD(rawValue: raw, architecture: architecture).isTable
        case .p4d: return P4D(rawValue: raw, architecture: architecture).isTable
        case .pgd: return PGD(rawValue: raw, architecture: architecture).isTable
        }
    }

    /// `hugetlb_walk()` / `huge_pte_offset()`: the slot at `level` for
    /// `addr`, or nil when a table above it is missing.
    @usableFromInline
    func hugetlbSlot(_ addr: UInt64, _ level: PageTableLevel, root: TableID?) -> EntrySlot? {
        var table = root ?? mm.root
        for entryLevel in mm.tableLevels {
            let slot = EntrySlot(table, geometry.tableIndex(addr, entryLevel), entryLevel)
            if entryLevel == level { return slot }
            let raw = load(slot)
            guard isTable(raw, entryLevel) else { return nil }
            table = mm.lowerTable(raw)
        }
        return nil
    }

    /// The level of a hugetlb VMA's entries for huge pages of `size` bytes.
    @usableFromInline
    func hugetlbLevel(_ size: UInt64) -> PageTableLevel { mm.hugetlbEntryShape(forSize: size).level }

    /// The PTE table lock of `table`, released after a run of `pte_entry`.
    @usableFromInline
    func unlockPTETable(_ table: TableID) { tables.lock(table).unlock() }

    /// `split_huge_pmd()`: only a leaf or a PMD migration entry is split;
    /// a failure is recorded in `failure` and returned as an errno.
    @usableFromInline
    func splitHugePMD(_ slot: EntrySlot, _ pmd: PMD, failure: inout PageWalkError?) -> Int32 {
        guard !pmd.isNone, !pmd.isTable else { return 0 }
        do {
            try mm.splitHugePMD(at: slot)
            return 0
        } catch {
            if case .allocationFailed(let why) = error {
                failure = .allocationFailed(why)
                return -ENOMEM
            }
            failure = .model(error)
            return -EINVAL
        }
    }
}
