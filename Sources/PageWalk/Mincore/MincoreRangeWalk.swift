import MemoryModel

extension Mincore {
    /// The range walk of one VMA piece: batched, respecting no entry bits
    /// (residency reads none), PFN maps walked as `walk_page_range_vma()`
    /// walks them, present PTEs not looked up (`mincore_pte_range()` never
    /// asks for a page).
    public static let walkOptions = RangeWalkOptions(batching: true, respect: [], pfnMap: .walk, lookUpFolios: false)

    /// `do_mincore()`'s walk on the range walker: the entries of
    /// `[addr, end)`, all in `vma`, under the caller's mmap lock, judged by
    /// the rules of `mincore_walk_ops`.
    static func rangeWalk(_ mm: AddressSpace, _ vma: VMA, _ addr: UInt64, _ end: UInt64,
                          lock: AddressSpace.MmapLockToken, into vec: inout [UInt8]) throws(PageWalkError) {
        let hugetlb = vma.isHugetlb
        let hugetlbLevel = hugetlb ? mm.hugetlbEntryShape(forSize: vma.hugePageSize).level : .pte
        for e in try mm.walk(addr..<end, lock: lock, options: walkOptions) {
            let at = Int((e.start - addr) >> pageShift)
            let n = e.pageCount
            switch e.content {
            case .none, .hole:
                // A hugetlb entry that exists but is none is not resident;
                // a huge page without tables is a hole, looked up in the
                // page cache like every hole of the other VMAs.
                if hugetlb, case .none(let level) = mm.translate(e.start), level == hugetlbLevel {
                    fill(&vec, at, n, 0)
                } else {
                    unmappedRange(mm, vma, e.start, e.end, &vec, at: at)
                }
            case .marker:
                // pte_none_mostly(), huge_pte_none_mostly().
                if hugetlb { fill(&vec, at, n, 0) } else { unmappedRange(mm, vma, e.start, e.end, &vec, at: at) }
            case .swap(let first) where !hugetlb && e.level.tableLevel == .pte:
                for k in 0..<n {
                    let entry = SwapEntry(type: first.type, offset: first.offset + UInt64(k))
                    vec[at + k] = nonPresentPTE(mm, .swap(entry))
                }
            case .folio, .pfn, .present, .swap, .migration, .device, .hwpoison:
                // Present pages; a PMD leaf or PMD migration entry; entries
                // that are not swap (always uptodate); any hugetlb entry
                // that is neither none nor a marker.
                fill(&vec, at, n, 1)
            }
        }
    }

    /// One store of `n` bytes: a run of 512 resident pages is one memset,
    /// not 512 checked array writes.
    @inline(__always)
    static func fill(_ vec: inout [UInt8], _ at: Int, _ n: Int, _ value: UInt8) {
        precondition(at >= 0 && n >= 0 && at + n <= vec.count, "mincore vector overrun")
        vec.withUnsafeMutableBufferPointer { b in
            b.baseAddress.unsafelyUnwrapped.advanced(by: at).update(repeating: value, count: n)
        }
    }
}
