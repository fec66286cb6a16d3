import MemoryModel
import PageWalk

// The two drivers of a dump: the callback walk (`walkKernelPageTableRange`
// with the level handlers and `pte_hole`, as mm/ptdump.c registers them)
// and the range walk (kernel tables through the iterator, with a table
// filter). Both make the same calls into `PTDumper`.

extension PTDumper {
    // MARK: Callback walker

    func walkCallback(_ start: UInt64, _ end: UInt64) throws(PageWalkError) {
        var ops = MMWalkOps<PTDumper>()
        ops.pgdEntry = { (p: EntryPointer<PGD>, a: UInt64, n: UInt64, w: inout MMWalk<PTDumper>) -> Int32 in
            w.privateData.upperHandler(0, p.rawValue, trivial: p.hasTrivialEntries, a, n, &w.action)
        }
        ops.p4dEntry = { (p: EntryPointer<P4D>, a: UInt64, n: UInt64, w: inout MMWalk<PTDumper>) -> Int32 in
            w.privateData.upperHandler(1, p.rawValue, trivial: p.hasTrivialEntries, a, n, &w.action)
        }
        ops.pudEntry = { (p: EntryPointer<PUD>, a: UInt64, n: UInt64, w: inout MMWalk<PTDumper>) -> Int32 in
            w.privateData.upperHandler(2, p.rawValue, trivial: p.hasTrivialEntries, a, n, &w.action)
        }
        ops.pmdEntry = { (p: EntryPointer<PMD>, a: UInt64, n: UInt64, w: inout MMWalk<PTDumper>) -> Int32 in
            w.privateData.upperHandler(3, p.rawValue, trivial: p.hasTrivialEntries, a, n, &w.action)
        }
        ops.pteEntry = { (p: EntryPointer<PTE>, a: UInt64, _: UInt64, w: inout MMWalk<PTDumper>) -> Int32 in
            let d = w.privateData
            d.leave(a)
            let v = p.rawValue
            d.effective(4, v)
            d.note(a, 4, v)
            return 0
        }
        ops.pteHole = { (a: UInt64, _: UInt64, depth: Int32, w: inout MMWalk<PTDumper>) -> Int32 in
            let d = w.privateData
            d.leave(a)
            if (0...4).contains(depth) { d.note(a, Int(depth), 0) }
            return 0
        }
        var me = self
        var s = start
        while true {
            resumeAt = nil
            let rc = try walkKernelPageTableRange(mm, s, end, ops: ops, private: &me)
            guard rc == 1, let r = resumeAt, r > s, r < end else { break }
            s = r
        }
    }

    /// `ptdump_{pgd,p4d,pud,pmd}_entry()`. A level whose lower level is
    /// folded into it only takes its effective step (the word is examined
    /// again at the folded level). PUD and PMD entries are stepped over with
    /// ACTION_CONTINUE; the walker ignores actions above, so there the walk
    /// stops and resumes after the entry.
    func upperHandler(_ index: Int, _ value: UInt64, trivial: Bool, _ addr: UInt64, _ next: UInt64,
                      _ action: inout WalkAction) -> Int32 {
        leave(addr)
        if trivial {
            effective(index, value)
            return 0
        }
        let level = Self.modelLevel(index)
        if layout.isTable(value, level), let table = tables.table(atPFN: layout.pfn(value)) {
            switch tableEntry(index, value, addr, next, table: table) {
            case .descend, .descendOrStop:
                return 0
            case .skip:
                if index >= 2 {
                    action = .continue
                    return 0
                }
                resumeAt = next
                return 1
            }
        }
        effective(index, value)
        if value != 0 {
            note(addr, index, value)
            if index >= 2 { action = .continue }
        }
        return 0
    }

    // MARK: Range walker

    func walkRange(_ start: UInt64, _ end: UInt64, lock: AddressSpace.MmapLockToken) throws(PageWalkError) {
        var options = RangeWalkOptions()
        options.tableFilter = { [unowned self] d in self.descend(d) }
        for e in try mm.walk(start..<end, lock: lock, options: options) {
            entry(e)
        }
    }

    /// The table filter: the effective steps of the upper entry (and of the
    /// levels folded into it), then the zero shadow / shared-table decision
    /// at the deepest of them, as the handlers make it.
    func descend(_ d: TableDescent) -> Bool {
        leave(d.start)
        // The root holds the PGD entries, whatever level the model names
        // its entries after folding.
        let first = d.level == rootLevel ? 0 : d.level.holeDepth
        let child = tables.level(d.table).holeDepth
        let index = child - 1
        for i in first..<index { effective(i, d.raw) }
        return tableEntry(index, d.raw, d.start, d.end, table: d.table) != .skip
    }

    /// One yielded entry: a hole at its depth (none PTEs: an effective step
    /// and a note per entry that matters), or a leaf with its effective step.
    func entry(_ e: WalkEntry) {
        leave(e.start)
        switch e.content {
        case .hole(let depth):
            if depth >= 4 {
                noteRun(e.start, e.end, granule: Geometry.pageSize, level: 4, 0, effectiveStep: true)
            } else if depth >= 0 {
                note(e.start, depth, 0)
            }
        default:
            let index = e.level.tableLevel.holeDepth
            if e.count > 1 && index == 4 {
                noteRun(e.start, e.end, granule: Geometry.pageSize, level: 4, e.raw, effectiveStep: true)
            } else {
                effective(index, e.raw)
                note(e.start, index, e.raw)
            }
        }
    }
}
