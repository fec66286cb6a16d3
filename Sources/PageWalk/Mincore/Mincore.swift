import MemoryModel

/// Models `mincore(2)` of Linux 6.18 (mm/mincore.c): one byte per page of
/// `[start, start + length)`, 1 when the page is resident, 0 when touching
/// it would need I/O or a new page.
///
/// The syscall's checks come first: an unaligned `start` is -EINVAL; a range
/// that wraps or ends above the user address limit is -ENOMEM (`access_ok()`);
/// `length` is rounded up to whole pages; an empty `length` returns an empty
/// vector without looking at the VMAs. Then, under the mmap read lock, taken
/// again for each step of at most `Mincore.chunkPages` pages, `do_mincore()`
/// handles the part of one VMA from the current address: no VMA there is
/// -ENOMEM (a gap anywhere in the range, once the pages before it are done).
/// A VMA that may not reveal its residency (`can_do_mincore()`: a special
/// mapping, with `vm_ops` and no file) pretends every page is resident.
/// Every other VMA is walked with `walk_page_range_vma()` (so PFN maps are
/// walked too), and per page:
///
/// - a PMD leaf (THP, huge zero page, huge PFN map) or PMD migration entry:
///   1 for all its pages (`pmd_trans_huge_lock()` succeeds);
/// - a none PTE, a missing table and any PTE marker (guard, uffd-wp,
///   poisoned: `pte_none_mostly()`): the page-cache lookup of
///   `__mincore_unmapped_range()`, 1 when the VMA's file caches an uptodate
///   folio at that index, 0 for anonymous memory and file-less VMAs. A guard
///   page of a file mapping whose page is cached is therefore 1;
/// - a present PTE (normal page, zero page, PFN-map page, PROT_NONE): 1;
/// - a swap entry: 1 when the swap cache holds an uptodate folio for its
///   slot (`mincore_swap(entry, false)`), else 0;
/// - a migration, device-private, device-exclusive or hwpoison entry: 1
///   (`mincore_swap()` returns `!shmem` for entries that are not swap);
/// - hugetlb (`mincore_hugetlb()`): 0 for a none entry or a marker, 1 for
///   any other entry; a huge page without tables above its entry is a hole
///   (`pte_hole`), which does the page-cache lookup of the VMA's file.
///
/// The model's page cache holds no value entries, so `mincore_page()`'s
/// branch for swapped-out shmem pages (`mincore_swap(entry, true)`) has
/// nothing to find: the model does not swap shmem. File permissions are not
/// modelled: every file VMA is taken as one the caller could open for
/// writing (owner or CAP_FOWNER), so its page cache is revealed.
///
/// `walker`: `.range` loops over the `WalkEntry`s of each VMA piece
/// (`Mincore.rangeWalk`), `.callback` runs the kernel's `mincore_walk_ops`
/// through `walkPageRangeVMA` (`Mincore.walkOps`); the vector is the same.
/// Takes the mmap read lock itself (a thread already holding it runs under
/// that hold).
public func mincore(_ mm: AddressSpace, _ start: UInt64, _ length: UInt64,
                    walker: WalkerKind = .range) throws(MincoreError) -> [UInt8] {
    let pages = try Mincore.pageCount(mm, start, length)
    var vec: [UInt8] = []
    vec.reserveCapacity(Int(pages))
    var addr = start
    var left = pages
    while left > 0 {
        let done = try mm.withMmapReadLock { (lock) throws(MincoreError) -> UInt64 in
            try Mincore.doMincore(mm, addr, Swift.min(left, Mincore.chunkPages), lock: lock, walker: walker, into: &vec)
        }
        left -= done
        addr += done << Geometry.pageShift
    }
    return vec
}

/// The parts of `mincore()`: the syscall's checks, `do_mincore()`,
/// `can_do_mincore()` and the residency rules both walkers share.
public enum Mincore {
    /// The most pages one `do_mincore()` step handles under one hold of the
    /// mmap lock: `PAGE_SIZE` entries, the kernel's bounce buffer.
    public static let chunkPages: UInt64 = Geometry.pageSize
    /// The longest vector the model collects (1 GiB, a 4 TiB range); a
    /// longer one is refused with -EFAULT.
    public static let maxVectorBytes: UInt64 = 1 << 30

    static let pageShift = UInt64(Geometry.pageShift)

    /// The syscall's argument checks: the number of pages (entries) of
    /// `[start, start + length)`, `length` rounded up.
    static func pageCount(_ mm: AddressSpace, _ start: UInt64, _ length: UInt64) throws(MincoreError) -> UInt64 {
        guard start & Geometry.pageOffsetMask == 0 else { throw .unalignedStart(start) }
        // access_ok(start, len): the range lies below the user address limit
        // (on x86-64 it may end exactly there), without wrapping.
        let limit = mm.geometry.userAddressLimit
        guard start <= limit, length <= limit - start else { throw .outsideUserSpace(start: start, length: length) }
        let pages = (length >> pageShift) + (length & Geometry.pageOffsetMask != 0 ? 1 : 0)
        // access_ok(vec, pages): a vector the caller cannot have.
        guard pages <= maxVectorBytes else { throw .badVector(bytes: pages) }
        return pages
    }

    /// Models `can_do_mincore()`: anonymous memory may always be asked
    /// about; a VMA with `vm_ops` but no file (the kernel's special mappings)
    /// may not, and pretends to be resident; a file VMA may when the caller
    /// could open the file for writing, which the model assumes (no file
    /// permissions). PFN-map VMAs come from a driver's device file and are
    /// walked.
    public static func canDoMincore(_ vma: VMA) -> Bool {
        if vma.isAnonymousWithoutOps { return true }
        return !vma.isSpecialMapping
    }

    /// Models `do_mincore()`: the part of the VMA holding `addr`, at most
    /// `pages` pages, appended to `out`; returns how many pages it did.
    /// -ENOMEM when no VMA holds `addr`.
    static func doMincore(_ mm: AddressSpace, _ addr: UInt64, _ pages: UInt64, lock: AddressSpace.MmapLockToken,
                          walker: WalkerKind, into out: inout [UInt8]) throws(MincoreError) -> UInt64 {
        guard let vma = mm.vma(containing: addr) else { throw .unmapped(address: addr) }
        let end = Swift.min(vma.end, addr + (pages << pageShift))
        let n = Int((end - addr) >> pageShift)
        guard canDoMincore(vma) else {
            out.append(contentsOf: repeatElement(1, count: n))
            return UInt64(n)
        }
        var vec = [UInt8](repeating: unwritten, count: n)
        do throws(PageWalkError) {
            switch walker {
            case .range: try rangeWalk(mm, vma, addr, end, lock: lock, into: &vec)
            case .callback: try callbackWalk(mm, vma, addr, end, into: &vec)
            }
        } catch {
            throw .walk(error)
        }
        assert(!vec.contains(unwritten), "mincore left entries of \(vma) unwritten")
        out.append(contentsOf: vec)
        return UInt64(n)
    }

    /// What the vector holds before the walk writes it (never a result).
    static let unwritten: UInt8 = 0xff

    // MARK: Shared rules

    /// Models `__mincore_unmapped_range()`: pages `[addr, end)` with no
    /// mapping (none entries, missing tables, markers), written from `at`:
    /// the page-cache state of the VMA's file (`mincore_page()`), or 0
    /// without a file.
    static func unmappedRange(_ mm: AddressSpace, _ vma: VMA, _ addr: UInt64, _ end: UInt64,
                              _ vec: inout [UInt8], at: Int) {
        let n = Int((end - addr) >> pageShift)
        guard vma.file != nil else {
            for k in 0..<n { vec[at + k] = 0 }
            return
        }
        for k in 0..<n {
            vec[at + k] = mm.pageCacheHasUptodateFolio(vma, at: addr + UInt64(k) << pageShift) ? 1 : 0
        }
    }

    /// Models `mincore_swap(entry, false)` for a non-present, non-marker
    /// PTE: a swap entry is resident when the swap cache holds an uptodate
    /// folio for it; migration, device and hwpoison entries always are.
    static func nonPresentPTE(_ mm: AddressSpace, _ leaf: SoftLeaf) -> UInt8 {
        guard case .swap(let entry) = leaf else { return 1 }
        return mm.swapCacheHasUptodateFolio(entry) ? 1 : 0
    }
}
