import MemoryModel

/// Models `kill_accessing_process()` of Linux 6.18 (mm/memory-failure.c):
/// when a machine check hits a frame already poisoned, the kernel walks the
/// whole user range of the current process (`walk_page_range(mm, 0,
/// TASK_SIZE, &hwpoison_walk_ops, ...)` under the mmap read lock) to find
/// the address that maps the frame, and sends SIGBUS there.
///
/// Where the frame `pfn` is looked for:
///
/// - a present PMD leaf (THP, huge zero page, huge PFN map): when `pfn` is
///   one of its 512 frames, the address of that page, size shift
///   `PAGE_SHIFT`. A PMD migration entry is not present: passed over;
/// - a PTE: a present one whose frame is `pfn` (normal pages, the zero
///   page, PFN-map pages: the walk's `test_walk` accepts every VMA, so PFN
///   maps are searched), or a hwpoison entry for `pfn`; frame 0 never
///   matches;
/// - hugetlb: the huge entry's frame (the head of the huge page; a tail
///   frame does not match in 6.18) or its hwpoison entry; the address of
///   the huge page, size shift `huge_page_shift()`.
///
/// The first match in address order wins. A match at address 0 is
/// discarded, as the kernel tests `tk.addr`.
///
/// `walker`: `.callback` runs `hwpoison_walk_ops` (`MemoryFailure.walkOps`)
/// through `walkPageRange`; `.range` loops over the range walker's entries
/// of every VMA, PFN maps included. The address and shift are the same.
public enum MemoryFailure {
    /// `EHWPOISON`: what `kill_accessing_process()` returns (negated) after
    /// signalling the process.
    public static let EHWPOISON: Int32 = 133

    /// The SIGBUS `kill_accessing_process()` sends for `pfn` in `mm`; the
    /// kernel then returns `-EHWPOISON`. Throws `.notMapped` (-EFAULT) when
    /// no entry maps it. Takes the mmap read lock.
    public static func killAccessingProcess(_ mm: AddressSpace, pfn: UInt64,
                                            walker: WalkerKind = .range) throws(MemoryFailureError) -> HWPoisonToKill {
        guard !mm.isTornDown else { throw .noAddressSpace }
        let hit = try mm.withMmapReadLock { (lock) throws(MemoryFailureError) -> HWPoisonToKill? in
            do throws(PageWalkError) {
                switch walker {
                case .range: return try rangeWalk(mm, pfn: pfn, lock: lock)
                case .callback: return try callbackWalk(mm, pfn: pfn)
                }
            } catch {
                throw .walk(error)
            }
        }
        guard let hit, hit.address != 0 else { throw .notMapped(pfn: pfn) }
        return hit
    }

    // MARK: Shared rules

    /// `check_hwpoisoned_entry()`: the frame of a present entry, or of a
    /// hwpoison entry, is `target` (and not 0).
    static func entryMaps(_ raw: UInt64, level: PageTableLevel, _ layout: EntryLayout, _ target: UInt64) -> Bool {
        guard raw != 0 else { return false }
        let pfn: UInt64
        if layout.isPresent(raw, level) {
            pfn = layout.pfn(raw)
        } else if case .hwpoison(let p) = SoftLeafEntry(decoding: raw, layout: layout).leaf {
            pfn = p
        } else {
            return false
        }
        return pfn != 0 && pfn == target
    }

    /// `check_hwpoisoned_pmd_entry()`: the page of a PMD leaf mapping frames
    /// `first ..< first + pages` that is `target`, from the leaf's address.
    static func pmdLeafHit(first: UInt64, pages: UInt64, at addr: UInt64, _ target: UInt64) -> HWPoisonToKill? {
        guard first <= target, target < first + pages else { return nil }
        return HWPoisonToKill(address: addr + (target - first) << Geometry.pageShift, sizeShift: Geometry.pageShift)
    }

    /// `huge_page_shift()` of a hugetlb VMA.
    static func hugeShift(_ vma: VMA) -> Int { vma.hugePageSize.trailingZeroBitCount }
}
