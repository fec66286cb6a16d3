extension AddressSpace {
    /// What a populating operation allocates per page it fills.
    enum PopulateKind: Equatable { case fault, thp, largeFolios, hugetlb }

    /// Checks, before anything is allocated, that populating `[start, end)`
    /// of `vmas` can fit the physical memory budget, so that an operation
    /// that cannot is refused whole (`ModelError.outOfMemory`) instead of
    /// stopping half-done. The bound counts pages that would get a new
    /// folio: none entries (anonymous read faults map the zero page), swap
    /// entries (swap-in), read-only private pages written (COW breaks), and
    /// whole huge pages for hugetlb. Far from the budget only the range's
    /// size is compared; the pages are counted when it is close.
    func checkPopulateBudget(_ vmas: ArraySlice<VMA>, _ start: UInt64, _ end: UInt64, write: Bool,
                             kind: PopulateKind) throws(ModelError) {
        let budget = memory.budgetBytes
        let used = memory.allocatedBytes
        var upper: UInt64 = 0
        for vma in vmas {
            let s = max(start, vma.start), e = min(end, vma.end)
            upper += vma.isHugetlb ? ((e + vma.hugePageSize - 1) & ~(vma.hugePageSize - 1)) - (s & ~(vma.hugePageSize - 1)) : e - s
        }
        if used <= budget && upper <= budget - used { return }
        var needed: UInt64 = 0
        for vma in vmas where !vma.flags.contains(.pfnMap) && !vma.flags.contains(.mixedMap) {
            let s = max(start, vma.start), e = min(end, vma.end)
            if vma.isHugetlb {
                let size = vma.hugePageSize
                var a = s & ~(size - 1)
                while a < e {
                    if case .present = translate(a) {} else { needed += size }
                    a += size
                }
                continue
            }
            var a = s
            while a < e {
                switch translate(a) {
                case .present(_, let raw, _):
                    if write && kind == .fault && vma.isPrivate && raw & layout.write == 0 { needed += Geometry.pageSize }
                case .softLeaf(_, _, let leaf):
                    if case .swap = leaf.leaf { needed += Geometry.pageSize }
                case .none:
                    if kind != .fault || write || !vma.isAnonymous { needed += Geometry.pageSize }
                }
                a += Geometry.pageSize
            }
        }
        if needed > 0 && (used > budget || needed > budget - used) {
            throw .outOfMemory(requestedBytes: used + needed, budgetBytes: budget)
        }
    }
}
