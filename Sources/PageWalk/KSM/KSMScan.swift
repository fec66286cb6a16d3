import MemoryModel

/// Models ksmd's search for the next page to merge in Linux 6.18
/// (mm/ksm.c, `scan_get_next_rmap_item()` with `ksm_next_page_ops`).
///
/// For each VM_MERGEABLE VMA, ksmd walks from the scan address to the end
/// of the VMA (`walk_page_range_vma()`, so PFN maps are walked too) and
/// stops at the first page that KSM may merge:
///
/// - a PMD leaf whose page is normal (`vm_normal_page_pmd()`: not special,
///   not the huge zero page) and whose folio is anonymous and not
///   `ZONE_DEVICE`: the page at the scan address inside the THP;
/// - otherwise, under the PTE table lock, the first present PTE whose page
///   is normal (`vm_normal_page()`: not special, so not the zero page and
///   not a PFN-map page) with such a folio.
///
/// Non-present entries (swap, migration, device, hwpoison, markers) and
/// PMD migration entries are passed over. KSM folios are anonymous
/// (`folio_test_anon()`), so pages already merged are found again, as
/// ksmd finds them. The walk has only a `pmd_entry`, so nothing is split
/// and hugetlb VMAs yield nothing (no `hugetlb_entry`). A reference is
/// taken on the folio found before the lock is dropped.
///
/// `walker`: `.callback` runs `KSMScan.walkOps` through `walkPageRangeVMA`;
/// `.range` loops over the range walker's entries and stops at the first
/// that qualifies. Both find the same page and take the same reference.
public enum KSMScan {
    /// Models one `walk_page_range_vma(vma, address, vma->vm_end,
    /// &ksm_next_page_ops, &arg)`: the first mergeable page of `vma` at or
    /// after `address`, its folio referenced; nil when there is none. The
    /// caller holds the mmap lock (`lock`, `PGWALK_RDLOCK`).
    public static func nextPage(_ mm: AddressSpace, _ vma: VMA, from address: UInt64,
                                lock: AddressSpace.MmapLockToken,
                                walker: WalkerKind = .range) throws(PageWalkError) -> KSMScanPage? {
        guard address < vma.end else { return nil }
        let start = Swift.max(address, vma.start) & ~Geometry.pageOffsetMask
        switch walker {
        case .range: return try rangeNextPage(mm, vma, from: start, lock: lock)
        case .callback: return try callbackNextPage(mm, vma, from: start)
        }
    }

    /// One pass of ksmd over `mm`: every address `scan_get_next_rmap_item()`
    /// would hand out, in order, VMA by VMA (only VM_MERGEABLE VMAs; the
    /// model takes each of them to have an anon_vma). After each page found
    /// the scan goes on one page further, as ksmd does; the reference taken
    /// on each folio is dropped once it is recorded (where ksmd would
    /// compare and merge the page). ksmd takes the mmap lock again for each
    /// page; the model keeps one hold for the pass.
    public static func scanPass(_ mm: AddressSpace, walker: WalkerKind = .range) throws(PageWalkError) -> [UInt64] {
        try mm.withMmapReadLock { (lock) throws(PageWalkError) -> [UInt64] in
            var found: [UInt64] = []
            for vma in mm.vmas where vma.flags.contains(.mergeable) {
                var address = vma.start
                while address < vma.end, let p = try nextPage(mm, vma, from: address, lock: lock, walker: walker) {
                    found.append(p.address)
                    mm.memory.folioPut(p.folio)
                    address = p.address + Geometry.pageSize
                }
            }
            return found
        }
    }

    /// `folio_is_zone_device(folio) || !folio_test_anon(folio)` refused:
    /// the folio of a normal page that KSM may merge.
    static func isCandidate(_ folio: Folio) -> Bool {
        folio.isAnon && !folio.test(.zoneDevice) && !folio.isZero
    }

    // MARK: The range version

    /// Present PTEs looked up (`vm_normal_page()`), special ones and the
    /// zero page reported as `.pfn`; PFN maps walked as
    /// `walk_page_range_vma()` walks them; no attribute ends a batch.
    static let walkOptions = RangeWalkOptions(respect: [], pfnMap: .walk)

    /// The first `.folio` entry of a PMD leaf or a PTE run whose folio KSM
    /// may merge; its first page is the one at the entry's start, and the
    /// reference is taken while the walker holds the entry's table lock.
    static func rangeNextPage(_ mm: AddressSpace, _ vma: VMA, from start: UInt64,
                              lock: AddressSpace.MmapLockToken) throws(PageWalkError) -> KSMScanPage? {
        // No hugetlb_entry: the callback walker passes hugetlb VMAs over.
        if vma.isHugetlb { return nil }
        for e in try mm.walk(start..<vma.end, lock: lock, options: walkOptions) {
            guard e.level.tableLevel == .pte || e.level.tableLevel == .pmd,
                  case .folio(let folio, let first, _) = e.content, isCandidate(folio) else { continue }
            mm.memory.folioGet(folio)
            return KSMScanPage(address: e.start, page: folio.page(first), folio: folio)
        }
        return nil
    }
}
