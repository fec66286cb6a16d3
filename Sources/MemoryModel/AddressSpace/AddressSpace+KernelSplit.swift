/// arm64's splits of kernel block mappings (arch/arm64/mm/mmu.c:
/// `split_pud()`, `split_pmd()` with `to_cont` false, `split_contpmd()`,
/// `split_contpte()`), on a kernel address space. The caller owns the range
/// (no table lock is taken, as the lockless kernel walker takes none).
extension AddressSpace {
    /// Replaces the present PUD or PMD block leaf at `s` by a newly
    /// allocated table one level down whose entries map the same frames
    /// with the same attributes: PMD blocks under a PUD, pages under a PMD,
    /// none of them contiguous. False (nothing done) when `s` holds no such
    /// leaf. Throws when no table can be allocated (-ENOMEM).
    package func splitKernelBlock(_ s: EntrySlot) throws(ModelError) -> Bool {
        let w = load(s)
        guard isKernel, s.level == .pud || s.level == .pmd, layout.isPresent(w, s.level), layout.isLeaf(w, s.level) else {
            return false
        }
        let child = childLevel(of: s.level)
        let t = try arena.allocate(level: child)
        let step = geometry.entrySize(child) >> UInt64(Geometry.pageShift)
        // The attributes of the leaf, its type bits those of the child kind.
        let attrs = w & ~layout.pfnMask & ~layout.contiguous & ~layout.tableBit
        let type = child == .pte ? layout.tableBit : 0
        let first = layout.pfn(w)
        for i in 0..<Geometry.entriesPerTable {
            let pfn = first + UInt64(i) * step
            store(EntrySlot(t, i, child), attrs | ((pfn << UInt64(Geometry.pageShift)) & layout.pfnMask) | type)
        }
        addTables(child, 1)
        store(s, layout.table(pfn: arena.pfn(of: t), user: false))
        return true
    }

    /// Clears the contiguous bit on the aligned run of entries holding `s`
    /// (16 PTEs or 16 PMDs with the 4K granule): `split_contpte()`,
    /// `split_contpmd()`. Returns whether the entry at `s` had it.
    package func clearContiguousRun(_ s: EntrySlot) -> Bool {
        guard layout.contiguous != 0, load(s) & layout.contiguous != 0 else { return false }
        let run = 16
        let first = s.index & ~(run - 1)
        for i in first..<first + run {
            let slot = EntrySlot(s.table, i, s.level)
            let w = load(slot)
            if w & layout.contiguous != 0 { store(slot, w & ~layout.contiguous) }
        }
        return true
    }
}
