import MemoryModel

/// Models the dirty-tracking helpers of Linux 6.18 (mm/mapping_dirty_helpers.c),
/// which the vmwgfx DRM driver uses to track writes to shared mappings of
/// its buffer objects at PTE granularity.
///
/// Both walk every VMA that maps a range of a file's pages, in every
/// address space, through `walk_page_mapping()` (i_mmap order: by the file
/// offset each VMA starts at), with the mapping's i_mmap lock held and no
/// mmap lock:
///
/// - `wpSharedMappingRange` (`wp_shared_mapping_range()`, `wp_walk_ops`):
///   each writable PTE is write-protected, so that the next write faults;
/// - `cleanRecordSharedMappingRange` (`clean_record_shared_mapping_range()`,
///   `clean_walk_ops`): each dirty PTE is made clean and its file page's bit
///   set in the caller's bitmap.
///
/// Shared rules of both operation sets:
/// - `test_walk` accepts only VMAs that are VM_SHARED and VM_MAYWRITE and
///   not hugetlb; any other VMA ends the whole mapping walk (a positive
///   `test_walk` result in `walk_page_mapping()` stops it, it does not skip
///   one VMA). PFN and mixed maps are walked.
/// - `pmd_entry` and `pud_entry` set `ACTION_CONTINUE` on a leaf or a
///   migration entry: huge entries are never split (that would lose dirty
///   state) and never changed; a writable or dirty one is WARNed about.
/// - `pre_vma` starts an empty flush range and marks a TLB flush pending;
///   `post_vma` flushes from the first to one past the last PTE changed in
///   that VMA, if any. (`mm_tlb_flush_nested()`, a whole-range flush when
///   another flush of the mm is pending meanwhile, never holds here: the
///   model runs no concurrent flush.)
///
/// Only present PTEs are changed: `pte_write()` and `pte_dirty()` are read
/// as the model's predicates read them, present entries only.
///
/// `walker`: `.callback` runs `MappingDirty.walkOps` through
/// `walkPageMapping`; `.range` opens an update walk per VMA, in the same
/// order, batching PTEs that agree on the bit acted on. The model has no
/// i_mmap lock; the update walk takes each address space's mmap read lock
/// while it walks that VMA, and the callback walk takes no lock (the
/// caller keeps the VMAs from changing). The PTEs, counts, bitmap and
/// flushes come out the same.
public enum MappingDirty {
    /// Which helper walks.
    enum Operation {
        /// `wp_pte()`: writable PTEs write-protected.
        case writeProtect
        /// `clean_record_pte()`: dirty PTEs cleaned and recorded.
        case cleanRecord
    }

    /// Models `wp_shared_mapping_range()`: every writable PTE mapping file
    /// pages `firstIndex ..< firstIndex + count` of `file`, in every address
    /// space on `memory`, write-protected. The result's `total` is what the
    /// kernel returns.
    public static func wpSharedMappingRange(_ memory: PhysicalMemory, _ file: FileObject, firstIndex: UInt64,
                                            count: UInt64,
                                            walker: WalkerKind = .range) throws(MappingDirtyError) -> MappingDirtyResult {
        var none: MappingDirtyBitmap? = nil
        return try run(.writeProtect, memory, file, firstIndex, count, &none, walker)
    }

    /// Models `clean_record_shared_mapping_range()`: every dirty PTE mapping
    /// file pages `firstIndex ..< firstIndex + count` made clean, and its
    /// page's bit set in `bitmap`, whose `start ..< end` widens to the bits
    /// set (an empty range on entry becomes `count ..< 0` before the walk,
    /// as the kernel starts it). Throws `.bitmapDoesNotCover` before walking
    /// when the bitmap lacks a bit for some page of the range.
    public static func cleanRecordSharedMappingRange(_ memory: PhysicalMemory, _ file: FileObject,
                                                     firstIndex: UInt64, count: UInt64,
                                                     bitmap: inout MappingDirtyBitmap,
                                                     walker: WalkerKind = .range) throws(MappingDirtyError) -> MappingDirtyResult {
        guard bitmap.covers(firstIndex, count: count) else {
            throw .bitmapDoesNotCover(firstIndex: firstIndex, count: count, bitmapFirstIndex: bitmap.firstIndex,
                                      bitmapBits: bitmap.bitCount)
        }
        if bitmap.start >= bitmap.end {
            bitmap.start = count
            bitmap.end = 0
        }
        var record: MappingDirtyBitmap? = bitmap
        let result = try run(.cleanRecord, memory, file, firstIndex, count, &record, walker)
        if let record { bitmap = record }
        return result
    }

    static func run(_ operation: Operation, _ memory: PhysicalMemory, _ file: FileObject, _ firstIndex: UInt64,
                    _ count: UInt64, _ bitmap: inout MappingDirtyBitmap?,
                    _ walker: WalkerKind) throws(MappingDirtyError) -> MappingDirtyResult {
        do throws(PageWalkError) {
            switch walker {
            case .range: return try rangeWalk(operation, memory, file, firstIndex, count, &bitmap)
            case .callback: return try callbackWalk(operation, memory, file, firstIndex, count, &bitmap)
            }
        } catch {
            throw .walk(error)
        }
    }

    // MARK: Shared rules

    /// `wp_clean_test_walk()`: the VMA is tracked when it is VM_SHARED and
    /// VM_MAYWRITE and not VM_HUGETLB. (False ends the mapping walk.)
    static func isTracked(_ vma: VMA) -> Bool {
        vma.flags.isSuperset(of: [.shared, .mayWrite]) && !vma.isHugetlb
    }

    /// The `WARN_ON()` of the PMD and PUD handlers: a present leaf that is
    /// writable or dirty.
    static func warns(present: Bool, writable: Bool, dirty: Bool) -> Bool { present && (writable || dirty) }

    /// The bit `clean_record_pte()` sets for the PTE at `address` of `vma`:
    /// its file page.
    static func filePage(_ vma: VMA, _ address: UInt64) -> UInt64 { vma.pageIndex(address) }
}
