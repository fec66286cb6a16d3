import MemoryModel

/// Models the THP side of powerpc's `subpage_prot(2)` in Linux 6.18
/// (arch/powerpc/mm/book3s64/subpage_prot.c, `subpage_mark_vma_nohuge()`
/// with `subpage_walk_ops`).
///
/// Before it protects 4K pieces of a range on the hash MMU, the syscall
/// marks every VMA meeting `[address, address + length)` VM_NOHUGEPAGE
/// (`vm_flags_set()`, which write-locks the VMA) and walks the whole VMA
/// (`walk_page_vma()`, `PGWALK_WRLOCK_VERIFY`): its `pmd_entry` splits
/// each PMD THP (`split_huge_pmd()`: a PMD leaf, the huge zero page or a
/// PMD migration entry becomes a PTE table) so that no huge mapping is
/// left. `walk_page_vma()` makes no `walk_page_test()`, so PFN maps are
/// walked too; hugetlb VMAs yield nothing (no `hugetlb_entry`). The
/// protection map itself is not modelled.
///
/// `walker`: `.callback` runs `SubpageProt.walkOps` through `walkPageVMA`;
/// `.range` is an update walk that splits each PMD leaf it meets. The
/// tables left are the same.
public enum SubpageProt {
    /// Models `subpage_mark_vma_nohuge()`: VM_NOHUGEPAGE on every VMA of
    /// the range and each such VMA's PMD THPs split. Takes the mmap write
    /// lock, as the syscall holds it. Returns how many VMAs were walked.
    @discardableResult
    public static func markVMAsNoHuge(_ mm: AddressSpace, _ address: UInt64, _ length: UInt64,
                                      walker: WalkerKind = .range) throws(PageWalkError) -> Int {
        try mm.withMmapWriteLock { (_) throws(PageWalkError) -> Int in
            let vmas = Array(mm.vmas(intersecting: address, address + length))
            for vma in vmas {
                do throws(ModelError) { try mm.vmFlagsSet(vma, .noHugePage) } catch { throw .model(error) }
                switch walker {
                case .range: try rangeSplit(mm, vma)
                case .callback: try callbackSplit(mm, vma)
                }
            }
            return vmas.count
        }
    }

    /// `walk_page_vma()` walks PFN maps as any other VMA; entries are not
    /// looked up (only their level matters).
    static let walkOptions = UpdateWalkOptions(respect: [], pfnMap: .walk, lookUpFolios: false)

    /// The split on the range walker: an update walk of the whole VMA under
    /// the mmap write lock; each PMD leaf or PMD migration entry outside
    /// hugetlb is split (`.splitPMD`), everything else passed over.
    static func rangeSplit(_ mm: AddressSpace, _ vma: VMA) throws(PageWalkError) {
        if vma.isHugetlb { return }
        try mm.withUpdateWalk(vma.start..<vma.end, lock: .mmapWrite, options: walkOptions) { (walk) throws(PageWalkError) -> Void in
            try walk.forEach { (u) throws(PageWalkError) -> UpdateStep in
                let e = u.entry
                guard e.level.tableLevel == .pmd else { return .next }
                if case .none = e.content { return .next }
                return .splitPMD
            }
        }
    }
}
