import Synchronization

extension AddressSpace {
    /// What to do with a PMD-level entry met while iterating PTEs.
    enum PMDDecision { case split, skip }

    /// Calls `body` for every PTE slot of `[start, end)` (one VMA) with the
    /// PTE table's lock held; PMD leaves are split first or skipped as
    /// `pmd` decides (it gets the slot, the address and the end of the PMD
    /// range in `[start, end)`). `allocate` creates missing tables;
    /// `afterTable` runs once a table's lock is dropped.
    func forEachPTE(_ start: UInt64, _ end: UInt64, allocate: Bool = false,
                    pmd: (EntrySlot, UInt64, UInt64) throws(ModelError) -> PMDDecision = { _, _, _ in .split },
                    afterTable: (TableID, EntrySlot) -> Void = { _, _ in },
                    _ body: (TableID, Int, UInt64) throws(ModelError) -> Void) throws(ModelError) {
        var a = start
        while a < end {
            let next = geometry.entryEnd(a, at: .pmd, limit: end)
            switch try lockPTETable(a, allocate: allocate) {
            case .table(let t, let pmdSlot):
                do {
                    defer { arena.lock(t).unlock() }
                    var b = a
                    var i = geometry.tableIndex(a, .pte)
                    while b < next {
                        try body(t, i, b)
                        b += Geometry.pageSize
                        i += 1
                    }
                }
                afterTable(t, pmdSlot)
            case .pmdEntry(let s):
                if try pmd(s, a, next) == .split {
                    try splitHugePMD(at: s)
                    continue
                }
            case .blocked(let s):
                let size = geometry.entrySize(s.level)
                a = geometry.skip(a, size, end)
                continue
            case .absent(let s):
                // Skip the whole span of the missing entry.
                let size = geometry.entrySize(s.level)
                a = geometry.skip(a, size, end)
                continue
            }
            a = next
        }
    }

    /// A reverse-map walk in progress (`rmap_walk()`): the address spaces
    /// that may map the folio at the same address, and the anon_vma lock
    /// held for read until `end()`.
    struct RmapWalk {
        let spaces: [AddressSpace]
        let lock: ReadWriteLock?
        /// Drops the anon_vma lock. The walk keeps its spaces referenced
        /// until then: the last reference to a space going inside the walk
        /// would tear it down, which takes the anon_vma lock for write.
        func end() { lock?.unlockRead() }
    }

    /// Starts a reverse-map walk for `folio`. For an anonymous folio it
    /// covers the live members of the fork family (the model's anon_vma
    /// tree), with the family's anon_vma lock taken for read
    /// (`anon_vma_lock_read()`): until `end()`, no member's VMAs change and
    /// no member is unlinked (nor its tables freed), so the walk may read
    /// the VMAs of processes whose mmap lock it does not hold. A file folio
    /// is walked in this process alone. The caller holds the folio lock, and
    /// no page-table lock; `end()` is due even if the folio is freed meanwhile.
    func beginRmapWalk(_ folio: Folio) -> RmapWalk {
        guard folio.isAnon else { return RmapWalk(spaces: [self], lock: nil) }
        anonVMALock.lockRead()
        return RmapWalk(spaces: memory.addressSpaces.filter { $0.anonFamily == anonFamily && !$0.isTornDown },
                        lock: anonVMALock)
    }

    /// Runs `body` for every PTE of `mm` at `address` mapping page `pfn`,
    /// with the PTE lock held; PMD leaves are split first. The reverse-map
    /// step of unmapping and migration (`rmap_walk()` for one address).
    func withPTEMapping(in mm: AddressSpace, _ address: UInt64, pfn: UInt64,
                        _ body: (TableID, Int, UInt64) throws(ModelError) -> Void) throws(ModelError) {
        mm.arena.beginLocklessRead()
        defer { mm.arena.endLocklessRead() }
        while true {
            switch try mm.lockPTETable(address, allocate: false) {
            case .table(let t, _):
                defer { mm.arena.lock(t).unlock() }
                let i = mm.geometry.tableIndex(address, .pte)
                // As ptep_get() reads it: rmap users (unmap, migration)
                // see a folded block's young and dirty state.
                let w = mm.layout.ptepGet(mm.arena.entries(t), i)
                if mm.layout.isPresent(w, .pte) && mm.layout.pfn(w) == pfn { try body(t, i, w) }
                return
            case .pmdEntry(let s):
                let w = mm.load(s)
                guard mm.layout.isPresent(w, .pmd) else { return }
                let offset = (address >> Geometry.pageShift) & 511
                guard mm.layout.pfn(w) + offset == pfn else { return }
                try mm.splitHugePMD(at: s)
            case .blocked, .absent:
                return
            }
        }
    }

    /// The anonymous folios mapped by present PTEs or PMDs wholly inside
    /// `[start, end)` of `vma`, with the address of their first page, in
    /// address order. Each comes with a reference taken under its
    /// page-table lock (`folio_try_get()`); the caller puts it.
    func anonFoliosFullyInside(_ vma: VMA, _ start: UInt64, _ end: UInt64,
                               where accept: (Folio) -> Bool) throws(ModelError) -> [(Folio, UInt64)] {
        var out: [(Folio, UInt64)] = []
        var seen = Set<UInt64>()
        try forEachPTE(start, end, pmd: { (s, a, _) throws(ModelError) -> PMDDecision in
            let l = self.lock(forEntriesOf: s.table, level: .pmd)
            l.lock()
            defer { l.unlock() }
            let w = self.load(s)
            if self.layout.isPresent(w, .pmd), self.layout.isLeaf(w, .pmd),
               let f = self.memory.folio(containing: self.layout.pfn(w)),
               f.isAnon, accept(f), a % AddressSpace.pmdSize == 0, a + AddressSpace.pmdSize <= end,
               !seen.contains(f.pfn), f.tryGet() {
                seen.insert(f.pfn)
                out.append((f, a))
            }
            return .skip
        }) { (t, i, a) throws(ModelError) in
            let w = arena.entries(t)[i].load(ordering: .relaxed)
            guard layout.isPresent(w, .pte), !layout.isSpecialPTE(w),
                  let page = memory.page(layout.pfn(w)) else { return }
            let f = page.folio
            guard f.isAnon, !f.isZero, accept(f), !seen.contains(f.pfn) else { return }
            let first = a - UInt64(page.index) * Geometry.pageSize
            guard first >= start, first + f.size <= end, f.tryGet() else { return }
            seen.insert(f.pfn)
            out.append((f, first))
        }
        return out
    }
}
