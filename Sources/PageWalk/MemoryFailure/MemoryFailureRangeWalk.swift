import MemoryModel

extension MemoryFailure {
    /// Every VMA walked, PFN maps included (`hwpoison_test_walk()` returns
    /// 0); present PTEs looked up so that a `.folio` run names its frames;
    /// no attribute ends a batch.
    static let walkOptions = RangeWalkOptions(respect: [], pfnMap: .walk)

    /// The search on the range walker: the first entry of `[0, TASK_SIZE)`
    /// that maps `pfn`, by the rules of `hwpoison_walk_ops`.
    static func rangeWalk(_ mm: AddressSpace, pfn target: UInt64,
                          lock: AddressSpace.MmapLockToken) throws(PageWalkError) -> HWPoisonToKill? {
        let layout = mm.geometry.layout
        var identity: VMAIdentity?
        var hugetlbShift: Int?
        for e in try mm.walk(0..<mm.geometry.userAddressLimit, lock: lock, options: walkOptions) {
            if e.vmaIdentity != identity {
                identity = e.vmaIdentity
                let vma = try e.vma
                hugetlbShift = vma.map { $0.isHugetlb ? hugeShift($0) : nil } ?? nil
            }
            if let shift = hugetlbShift {
                // hwpoison_hugetlb_range(): the huge entry's own frame.
                if entryMaps(e.raw, level: e.level.tableLevel, layout, target) {
                    return HWPoisonToKill(address: e.start, sizeShift: shift)
                }
                continue
            }
            switch (e.level.tableLevel, e.content) {
            case (.pte, .folio(let f, let first, let n)):
                let pfn = f.pfn + UInt64(first)
                if pfn <= target, target < pfn + UInt64(n) {
                    return HWPoisonToKill(address: e.start + (target - pfn) << Geometry.pageShift, sizeShift: Geometry.pageShift)
                }
            case (.pte, .pfn(let pfn)), (.pte, .hwpoison(let pfn)):
                if pfn != 0 && pfn == target { return HWPoisonToKill(address: e.start, sizeShift: Geometry.pageShift) }
            case (.pmd, .folio(let f, let first, let n)):
                if let hit = pmdLeafHit(first: f.pfn + UInt64(first), pages: UInt64(n), at: e.start, target) { return hit }
            case (.pmd, .pfn(let pfn)):
                if let hit = pmdLeafHit(first: pfn, pages: UInt64(e.pageCount), at: e.start, target) { return hit }
            default:
                // Swap, migration (PMD ones too), device entries, markers,
                // none; PUD leaves have no pmd_entry to see them.
                continue
            }
        }
        return nil
    }
}
