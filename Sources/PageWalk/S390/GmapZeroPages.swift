import MemoryModel

/// Models how s390 KVM removes the shared zero page from a protected
/// guest's address space in Linux 6.18 (arch/s390/mm/gmap_helpers.c:
/// `__gmap_helper_unshare_zeropages()` with `find_zeropage_ops`).
///
/// For every VMA that is neither a PFN map nor hugetlb, the kernel walks
/// from the VMA's start (`walk_page_range_vma()`, `PGWALK_WRLOCK`) for the
/// first PTE whose frame is the shared zero page (`is_zero_pfn(pte_pfn())`;
/// the walk has only a `pte_entry`, so the walker splits a PMD leaf, the
/// huge zero page included, before reading its PTEs). A zero page in a
/// mapping that is not copy-on-write (`is_cow_mapping()`: VM_MAYWRITE
/// without VM_SHARED) fails the whole operation with -EFAULT. Otherwise
/// the caller breaks the sharing at that address with an unshare fault
/// (`FAULT_FLAG_UNSHARE`) outside the walk and walks again from the same
/// address, until the VMA has no zero page left.
///
/// The model has no unshare fault: `unshareZeroPages` takes the action as
/// a parameter, by default a write fault of the page, which also replaces
/// the zero page by a private anonymous page (but needs write permission
/// and leaves the page writable and dirty). The kernel keeps the mmap
/// write lock over the whole loop; the model takes it for each walk and
/// runs the action between walks.
///
/// `walker`: `.callback` runs `GmapZeroPages.walkOps` through
/// `walkPageRangeVMA`; `.range` is an update walk of single entries
/// (`PTEEntryWalk`) that splits PMD leaves as it meets them. The address
/// found and the tables left are the same.
public enum GmapZeroPages {
    /// The unshare action the model uses by default: a write fault of the
    /// page at the address.
    public static func writeFault(_ mm: AddressSpace, _ address: UInt64) throws(ModelError) {
        try mm.fault(address, address + Geometry.pageSize, write: true)
    }

    /// Models one `walk_page_range_vma(vma, address, vma->vm_end,
    /// &find_zeropage_ops, &addr)`: the address of the first shared zero
    /// page of `vma` from `address`, or nil. Takes the mmap write lock.
    public static func findZeroPage(_ mm: AddressSpace, _ vma: VMA, from address: UInt64,
                                    walker: WalkerKind = .range) throws(GmapError) -> UInt64? {
        guard address < vma.end else { return nil }
        let start = Swift.max(address, vma.start)
        return try mm.withMmapWriteLock { (_) throws(GmapError) -> UInt64? in
            let found: FindResult
            do throws(PageWalkError) {
                switch walker {
                case .range: found = try rangeFind(mm, vma, from: start)
                case .callback: found = try callbackFind(mm, vma, from: start)
                }
            } catch {
                throw .walk(error)
            }
            switch found {
            case .none: return nil
            case .zeroPage(let a): return a
            case .outsideCOW(let a): throw .zeroPageOutsideCOW(address: a)
            }
        }
    }

    /// Models `__gmap_helper_unshare_zeropages()`: every zero page of the
    /// address space replaced by `unshare`, VMA by VMA (PFN maps and
    /// hugetlb passed over); returns the addresses unshared, in order.
    @discardableResult
    public static func unshareZeroPages(_ mm: AddressSpace, walker: WalkerKind = .range,
                                        unshare: (AddressSpace, UInt64) throws(ModelError) -> Void = writeFault) throws(GmapError) -> [UInt64] {
        var done: [UInt64] = []
        let vmas = mm.withMmapReadLock { (_) -> [VMA] in mm.vmas }
        for vma in vmas where !vma.flags.contains(.pfnMap) && !vma.isHugetlb {
            var address = vma.start
            while let found = try findZeroPage(mm, vma, from: address, walker: walker) {
                // The kernel retries a fault that backed out; an action that
                // leaves the zero page in place would make the model loop
                // for ever, so it is a failure here.
                if done.last == found {
                    throw .unshareFailed(address: found, .invalidArgument(name: "unshare", reason: "the zero page is still mapped"))
                }
                do throws(ModelError) { try unshare(mm, found) } catch { throw .unshareFailed(address: found, error) }
                done.append(found)
                address = found
            }
        }
        return done
    }

    // MARK: Shared rules

    /// What one walk found.
    enum FindResult: Equatable {
        case none
        case zeroPage(UInt64)
        case outsideCOW(UInt64)
    }

    /// `find_zeropage_pte_entry()` on one entry word: a zero page in a COW
    /// mapping is found, one elsewhere is an error, anything else passes.
    static func judge(_ raw: UInt64, at address: UInt64, _ vma: VMA, _ mm: AddressSpace) -> FindResult {
        guard PTEEntryWalk.entryPFN(raw, level: .pte, mm.geometry) == mm.memory.zeroPage.pfn else { return .none }
        return isCOWMapping(vma.flags) ? .zeroPage(address) : .outsideCOW(address)
    }

    /// `is_cow_mapping()`: private and possibly writable.
    static func isCOWMapping(_ flags: VMFlags) -> Bool {
        flags.contains(.mayWrite) && !flags.contains(.shared)
    }

    /// The search on the range walker: the entry words of `[start,
    /// vma.end)` under the mmap write lock (each VMA write-locked, as
    /// `PGWALK_WRLOCK`), PMD leaves split first; hugetlb is not looked at
    /// (no `hugetlb_entry`).
    static func rangeFind(_ mm: AddressSpace, _ vma: VMA, from start: UInt64) throws(PageWalkError) -> FindResult {
        var found = FindResult.none
        try PTEEntryWalk.run(mm, start..<vma.end, lock: .mmapWrite, hugetlbEntries: false) { raw, _, address, vma in
            found = judge(raw, at: address, vma, mm)
            return found == .none
        }
        return found
    }
}
