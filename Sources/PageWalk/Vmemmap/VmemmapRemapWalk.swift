import MemoryModel

/// `struct vmemmap_remap_walk` (mm/hugetlb_vmemmap.c): what the PTE step
/// of a vmemmap remap does, shared by both walkers.
struct VmemmapRemapWalk {
    enum Mode { case split, remap, restore }
    let mode: Mode
    /// `reuse_addr`.
    let reuseAddress: UInt64
    /// `reuse_page`, as a frame: set beforehand by `vmemmap_remap_free()`
    /// when it got a new head page, else found at the first PTE.
    var reusePFN: UInt64?
    /// `vmemmap_pages`: the pages taken off the range (remap), in the
    /// order they were met, or those to map in (restore), first first.
    var pages: [UInt64]
    /// `nr_walked`.
    var walked = 0
    var failure: VmemmapRemapError?

    /// `vmemmap_pte_entry()` on the PTE word `w` at `addr`: the new word,
    /// or nil to leave it.
    mutating func pte(_ w: UInt64, at addr: UInt64, _ layout: EntryLayout) -> UInt64? {
        defer { walked += 1 }
        guard let reuse = reusePFN else {
            reusePFN = layout.pfn(w)
            return nil
        }
        let pfnBits = layout.pfnMask | layout.write | layout.readOnly
        switch mode {
        case .split:
            return nil
        case .remap:
            // vmemmap_remap_pte(): the head read-write, the tails read-only.
            pages.append(layout.pfn(w))
            let prot = addr == reuseAddress ? layout.write : layout.readOnly
            return (w & ~pfnBits) | ((reuse << UInt64(Geometry.pageShift)) & layout.pfnMask) | prot
        case .restore:
            // vmemmap_restore_pte(): the next page of the list, read-write.
            guard layout.pfn(w) == reuse else { failure = .notRemapped(address: addr); return nil }
            guard !pages.isEmpty else { failure = .noMemory; return nil }
            let page = pages.removeFirst()
            return (w & ~pfnBits) | ((page << UInt64(Geometry.pageShift)) & layout.pfnMask) | layout.write
        }
    }
}
