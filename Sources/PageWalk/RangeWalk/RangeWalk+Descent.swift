import MemoryModel
import Synchronization

// The walk from VMA to table: which range comes next, and the lockless
// descent through the upper levels to a leaf or a PTE table.
extension RangeWalk.Iterator {
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
        if writeLocksVMAs { mm.vmaStartWrite(vma) }
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
                ptTable = lower
                ptIndex = geometry.tableIndex(addr, .pte)
                // Rounded up: a walk to the top of the address space ends at 2^64 - 1.
                ptEnd = ptIndex + Int((entryEnd - addr + Geometry.pageOffsetMask) >> Geometry.pageShift)
                ptBase = addr - UInt64(ptIndex) << Geometry.pageShift
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
}
