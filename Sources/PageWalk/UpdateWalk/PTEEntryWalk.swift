import MemoryModel

/// The range-walker form of a callback user with a `pte_entry` (and
/// perhaps a `hugetlb_entry`) but no `pmd_entry`: the handler sees every
/// entry word of each PTE table, none entries included, one at a time.
///
/// Such a walk makes the callback walker split each PMD leaf before it
/// descends (`split_huge_pmd()` in `walk_pmd_range()`, the U5 need of
/// docs/USERS.md); here an update walk of single entries splits a PMD
/// leaf or PMD migration entry outside hugetlb when it meets it and walks
/// its PTEs next. Ranges with no table below them hold no entries and are
/// not handed to `body`; hugetlb entries are, when `hugetlbEntries` says
/// the user has a `hugetlb_entry`. Used by the PROT_NONE check of
/// mprotect and by s390's zero-page search.
enum PTEEntryWalk {
    /// One entry per page-table entry, PFN maps walked, nothing looked up.
    static let options = UpdateWalkOptions(batching: false, respect: [], pfnMap: .walk, lookUpFolios: false)

    /// Hands `body` each entry word of `range` with its level, address and
    /// VMA, in address order, until it returns false.
    static func run(_ mm: AddressSpace, _ range: Range<UInt64>, lock: UpdateWalkLock, hugetlbEntries: Bool,
                    _ body: (_ raw: UInt64, _ level: PageTableLevel, _ address: UInt64, _ vma: VMA) -> Bool) throws(PageWalkError) {
        try mm.withUpdateWalk(range, lock: lock, options: options) { (walk) throws(PageWalkError) in
            var identity: VMAIdentity?
            var vma: VMA?
            try walk.forEach { (u) throws(PageWalkError) -> UpdateStep in
                let e = u.entry
                if e.vmaIdentity != identity {
                    identity = e.vmaIdentity
                    vma = try e.vma
                }
                guard let vma else { return .next }
                if case .none = e.content, e.count == 0 { return .next }    // no table
                if vma.isHugetlb {
                    guard hugetlbEntries else { return .next }
                } else if e.level.tableLevel == .pmd {
                    if case .none = e.content { return .next }
                    return .splitPMD
                }
                return body(e.raw, e.level.tableLevel, e.start, vma) ? .next : .stop
            }
        }
    }

    /// `pte_pfn()` of any entry word, as a `pte_entry` reads it: the frame
    /// of a present entry; for a non-present, non-none entry on x86 the
    /// stored bits inverted back (`protnone_mask()`, the L1TF inversion),
    /// elsewhere the bits as they are; 0 for none.
    static func entryPFN(_ raw: UInt64, level: PageTableLevel, _ geometry: Geometry) -> UInt64 {
        let layout = geometry.layout
        if raw == 0 || layout.isPresent(raw, level) || geometry.architecture != .x86_64 { return layout.pfn(raw) }
        return (~raw & layout.pfnMask) >> UInt64(Geometry.pageShift)
    }
}
