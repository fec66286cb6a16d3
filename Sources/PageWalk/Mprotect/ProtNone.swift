import MemoryModel

/// Models the PROT_NONE PFN check of `mprotect()` in Linux 6.18
/// (mm/mprotect.c: `prot_none_walk()` with `prot_none_walk_ops`, called
/// from `mprotect_fixup()`).
///
/// When the architecture checks PFN changes (`arch_has_pfn_modify_check()`:
/// x86 with the L1TF mitigation, `PFNModifyCheck`), and the VMA is a PFN or
/// mixed map (VM_PFNMAP, VM_MIXEDMAP) whose new protection grants no
/// access, `mprotect_fixup()` walks `[start, end)` under the mmap write
/// lock (`PGWALK_WRLOCK`, each VMA write-locked) before changing anything,
/// and fails with -EACCES at the first entry whose PFN may not become
/// PROT_NONE:
///
/// - `pte_entry` runs for every PTE of each PTE table, none entries too:
///   `pte_pfn()` of the entry (0 for none; for a non-present entry x86
///   undoes the L1TF inversion of the stored bits, so a swap entry yields
///   a small number taken from its offset, which passes the check);
/// - `hugetlb_entry` the same for each huge entry;
/// - `test_walk` returns 0, so PFN maps are walked;
/// - a PMD leaf or PMD migration entry is split first (`split_huge_pmd()`:
///   the walk has a `pte_entry` and no `pmd_entry`), and its PTEs checked.
///
/// `walker`: `.callback` runs `ProtNone.walkOps` through `walkPageRange`;
/// `.range` is an update walk of single entries that splits PMD entries as
/// it meets them (`PTEEntryWalk`). The outcome and the tables left are the
/// same.
public enum ProtNone {
    /// Models `prot_none_walk()`: the walk over `[start, end)` for a new
    /// protection that grants no access. Takes the mmap write lock.
    public static func walk(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64, check: PFNModifyCheck,
                            walker: WalkerKind = .range) throws(MprotectError) {
        let refusal = try mm.withMmapWriteLock { (_) throws(MprotectError) -> MprotectError? in
            do throws(PageWalkError) {
                switch walker {
                case .range: return try rangeWalk(mm, start, end, check: check)
                case .callback: return try callbackWalk(mm, start, end, check: check)
                }
            } catch {
                throw .walk(error)
            }
        }
        if let refusal { throw refusal }
    }

    /// `mprotect_fixup()`'s test for the walk: the architecture checks PFN
    /// changes, the VMA is VM_PFNMAP or VM_MIXEDMAP, and `newFlags` grant
    /// no access (`(newflags & VM_ACCESS_FLAGS) == 0`).
    public static func needsWalk(_ vma: VMA, newFlags: VMFlags, check: PFNModifyCheck) -> Bool {
        check.isActive && !vma.flags.isDisjoint(with: [.pfnMap, .mixedMap]) && newFlags.isDisjoint(with: VMFlags.access)
    }

    /// The check `mprotect_fixup()` makes for `[start, end)` of `vma`
    /// before giving it `newFlags`: the walk when `needsWalk` says so.
    public static func fixupCheck(_ mm: AddressSpace, _ vma: VMA, _ start: UInt64, _ end: UInt64, newFlags: VMFlags,
                                  check: PFNModifyCheck, walker: WalkerKind = .range) throws(MprotectError) {
        guard needsWalk(vma, newFlags: newFlags, check: check) else { return }
        try walk(mm, Swift.max(start, vma.start), Swift.min(end, vma.end), check: check, walker: walker)
    }

    // MARK: Shared rules

    /// `pfn_modify_allowed(pte_pfn(entry), PAGE_NONE)` for the entry at
    /// `address`; the refusal, or nil.
    static func judge(_ raw: UInt64, level: PageTableLevel, at address: UInt64, _ mm: AddressSpace,
                      _ check: PFNModifyCheck) -> MprotectError? {
        let pfn = PTEEntryWalk.entryPFN(raw, level: level, mm.geometry)
        if check.allows(pfn, grantsNoAccess: true, in: mm.memory) { return nil }
        return .pfnModifyRefused(address: address, pfn: pfn)
    }
}
