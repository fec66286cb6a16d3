import MemoryModel
import Synchronization

// Hugetlb VMAs: huge entries under the hugetlb VMA lock and huge PTE lock.
extension RangeWalk.Iterator {
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
        let l = mm.hugePTELock(forEntriesOf: table, level: level)
        take(l)
        let w = s.pointee.load(ordering: .relaxed)
        let offset = (addr - blockStart) >> Geometry.pageShift
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
                content = .folio(f, firstPage: Int(pfn - f.pfn), pageCount: Int((blockEnd - addr) >> Geometry.pageShift))
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
}
