import MemoryModel

extension SubpageProt {
    /// Models `subpage_walk_ops`: one `pmd_entry`
    /// (`subpage_walk_pmd_entry()`), the VMA already write-locked by the
    /// caller (`PGWALK_WRLOCK_VERIFY`).
    public static func walkOps(_ mm: AddressSpace) -> MMWalkOps<Void> {
        let access = LevelAccess(mm)
        return MMWalkOps<Void>(
            pmdEntry: { p, _, _, walk in
                // split_huge_pmd(): only a leaf or migration entry splits;
                // a table pointer is left as it is.
                guard !p.hasTrivialEntries else { return 0 }
                return access.splitHugePMD(p.slot, p.entry, failure: &walk.failure)
            },
            walkLock: .writeVerify)
    }

    /// The split on the callback walker: `walk_page_vma(vma,
    /// &subpage_walk_ops, NULL)`.
    static func callbackSplit(_ mm: AddressSpace, _ vma: VMA) throws(PageWalkError) {
        var none: Void = ()
        _ = try walkPageVMA(mm, vma, ops: walkOps(mm), private: &none)
    }
}
