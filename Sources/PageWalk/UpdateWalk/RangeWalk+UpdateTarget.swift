import MemoryModel
import Synchronization

/// Where the entry an update walk yields lives, for its handle's writes.
enum UpdateTarget {
    /// A batch of PTEs from `first` in `table` (whose words start at
    /// `words`), whose lock the walk holds.
    case ptes(TableID, first: Int, words: UnsafeMutablePointer<Atomic<UInt64>>)
    /// A PMD or PUD leaf (or non-present entry) whose lock the walk holds.
    case leaf(EntrySlot)
    /// None at an upper level: no table below, nothing locked.
    case noTable(PageTableLevel)
    /// A hugetlb page, under the hugetlb locks, from the slot of its first
    /// entry: read only but for `clearHugetlbYoung()`.
    case hugetlb(EntrySlot)
    /// A range outside every VMA, or a PFN-map VMA reported as a hole.
    case outside
}

extension RangeWalk.Iterator {
    /// Where `e`, the entry `next()` just returned, lives. (`mutating` only
    /// so that the iterator is passed by reference, not copied per entry.)
    @inline(__always)
    mutating func updateTarget(of e: WalkEntry) -> UpdateTarget {
        if case .hole = e.content { return .outside }
        if held.pointee.hugetlb != nil { return .hugetlb(slot(of: e.start, at: e.level.tableLevel)) }
        if e.level.tableLevel == .pte, let words = ptes {
            return .ptes(ptTable, first: geometry.tableIndex(e.start, .pte), words: words)
        }
        if e.raw == 0 { return .noTable(e.level.tableLevel) }
        // A PMD leaf just read from the PMD table of the last descent: its
        // slot is known without walking down from the root again.
        if e.level.tableLevel == .pmd, let s = leafSlot, resumeLevel < levels.count, levels[resumeLevel] == .pmd {
            let index = geometry.tableIndex(e.start, .pmd)
            if arena.entries(resumeTable) + index == s { return .leaf(EntrySlot(resumeTable, index, .pmd)) }
        }
        return .leaf(slot(of: e.start, at: e.level.tableLevel))
    }

    /// The slot mapping `address` at `level`, found from the root; the
    /// tables above it stay while the walk lock is held.
    mutating func slot(of address: UInt64, at level: PageTableLevel) -> EntrySlot {
        var table = mm.root
        for l in levels {
            let index = geometry.tableIndex(address, l)
            if l == level { return EntrySlot(table, index, l) }
            table = mm.lowerTable(arena.entries(table)[index].load(ordering: .acquiring))
        }
        preconditionFailure("level \(level) is not one of the address space's table levels")
    }

    /// Drops the table locks and goes back to `address`: the next call of
    /// `next()` descends there again and reads the table anew.
    mutating func rewind(to address: UInt64) {
        WalkLocks.release(held)
        ptes = nil
        leafSlot = nil
        addr = address
    }

    /// Drops the table locks and ends the walk.
    mutating func finish() { rewind(to: end) }
}
