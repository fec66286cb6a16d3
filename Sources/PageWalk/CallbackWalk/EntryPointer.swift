import MemoryModel
import Synchronization

/// A pointer to one page-table entry, as the kernel hands `pte_t *`,
/// `pmd_t *` … to walk handlers.
///
/// `entry` reads the word now (`ptep_get()`, `pmdp_get()`); writes go
/// through the address space (`MMWalk.setPTE(_:_:)`,
/// `AddressSpace.setEntry(at:_:)`) so that table accounting stays true.
/// For a folded level the pointer designates the same word as the level
/// above it, exactly as `p4d_offset()` on a folded P4D returns the PGD
/// entry; `slot.level` is then the level of the entries the real table
/// holds.
public struct EntryPointer<Entry: PageTableEntry>: @unchecked Sendable {
    /// The table, index and table entry level of the word.
    public let slot: EntrySlot
    /// Whether the level below this one is folded into it: the kernel's
    /// predicates for this level are then constant (never none, never bad,
    /// never a leaf) and the word is examined again at the folded level, so
    /// handlers should not interpret it here.
    public let hasTrivialEntries: Bool
    @usableFromInline let word: UnsafeMutablePointer<Atomic<UInt64>>
    @usableFromInline let architecture: Architecture

    @inlinable
    init(_ slot: EntrySlot, in tables: TableArena, _ architecture: Architecture, trivial: Bool = false) {
        self.slot = slot
        self.hasTrivialEntries = trivial
        self.word = tables.entries(slot.table) + slot.index
        self.architecture = architecture
    }

    /// The entry's current value (`ptep_get()` / `pmdp_get()` …).
    @inlinable
    public var entry: Entry { Entry(rawValue: rawValue, architecture: architecture) }

    /// The word now, as `ptep_get()` reads it: a PTE of a folded arm64
    /// block has young and dirty gathered over the block.
    @inlinable
    public var rawValue: UInt64 {
        let w = word.pointee.load(ordering: .acquiring)
        guard slot.level == .pte && architecture == .arm64 else { return w }
        let layout = EntryLayout.arm64
        return layout.isValidCont(w) ? layout.contPTEGathered(w, block: word - (slot.index - EntryLayout.contBlockStart(slot.index))) : w
    }
}
