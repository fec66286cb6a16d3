import Synchronization

/// Finds the folio of frame after frame during a walk, remembering the
/// memmap section of the last frame it was asked about.
///
/// Models `page_folio(pfn_to_page(pfn))` as a walker does it: the kernel's
/// `SPARSEMEM_VMEMMAP` turns a PFN into its `struct page` with arithmetic
/// alone; the model's sparse directory costs two dependent loads, which the
/// cursor pays once per section (2^18 frames) instead of once per page.
/// Sections are never unmapped while their `PhysicalMemory` lives, so the
/// remembered base stays valid for as long as the cursor's owner holds the
/// memory.
public struct MemmapCursor {
    @usableFromInline let memmap: Memmap
    /// The section the cursor is on (`UInt64.max` before the first lookup).
    @usableFromInline var section: UInt64 = .max
    /// That section's first record, nil when the section was never populated.
    @usableFromInline var base: UnsafeMutablePointer<Atomic<UInt32>>? = nil

    @inlinable
    public init(_ memory: PhysicalMemory) { memmap = memory.memmap }

    /// The folio containing frame `pfn`, as `PhysicalMemory.folio(containing:)`.
    @inlinable @inline(always)
    public mutating func folio(containing pfn: UInt64) -> Folio? {
        guard let r = record(pfn) else { return nil }
        return Memmap.folio(pfn, record: r)
    }

    /// `folio(containing:)` and `folio_test_large()` of it, from one read
    /// of the frame's record.
    @inlinable @inline(always)
    public mutating func folioAndSize(containing pfn: UInt64) -> (folio: Folio, isLarge: Bool)? {
        guard let r = record(pfn) else { return nil }
        return Memmap.folioAndSize(pfn, record: r)
    }

    @inlinable @inline(always)
    mutating func record(_ pfn: UInt64) -> UnsafeMutablePointer<Atomic<UInt32>>? {
        let s = pfn >> UInt64(Memmap.sectionShift)
        let b: UnsafeMutablePointer<Atomic<UInt32>>
        if s == section {
            // Only a populated section is remembered.
            b = base.unsafelyUnwrapped
        } else {
            moveTo(s)
            guard let moved = base else { return nil }
            b = moved
        }
        return b + Int(truncatingIfNeeded: pfn & UInt64(Memmap.sectionFrames - 1)) &* RecordWord.wordsPerRecordInline
    }

    /// Moves to section `s` (out of line: once per 2^18 frames).
    @usableFromInline @inline(never)
    mutating func moveTo(_ s: UInt64) {
        base = memmap.existingRecord(s << UInt64(Memmap.sectionShift))
        // An empty section is not remembered: a fault may populate it.
        section = base == nil ? .max : s
    }
}
