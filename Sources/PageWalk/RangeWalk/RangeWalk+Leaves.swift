import MemoryModel
import Synchronization

// PMD and PUD leaves: THPs, huge PFN maps and non-present upper entries.
extension RangeWalk.Iterator {
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

    /// A PMD/PUD leaf or non-present upper entry, from `addr` to `entryEnd`.
    /// (`mutating` only so that the iterator is passed by reference, not
    /// copied, on every call; the same for `content(of:offset:)`.)
    @inlinable @inline(always)
    mutating func upperLeafEntry(_ w: UInt64, level: PageTableLevel, vma: UnsafeRawPointer?, end entryEnd: UInt64) -> WalkEntry {
        let pages = Int((entryEnd - addr) >> Geometry.pageShift)
        let size = geometry.entrySize(level)
        let offset = (addr & (size - 1)) >> Geometry.pageShift
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
}
