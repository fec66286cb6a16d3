import MemoryModel

extension AddressSpace {
    /// Models `madvise(MADV_FREE)` (`madvise_free_single_vma()`): on
    /// private anonymous, unlocked VMAs, swap entries are dropped with their
    /// swap references, and every anonymous folio the range maps whole and
    /// alone (not shared, not KSM) is made old and clean and lazily
    /// freeable; a folio the range covers in part is left alone. Runs under
    /// the VMA lock when the range lies in one VMA (6.16 and later).
    public func madviseFree(_ start: UInt64, _ end: UInt64, walker: WalkerKind = .range) throws(ModelError) {
        try madviseFree(start, end) { (vma, s, e) throws(ModelError) in
            do throws(PageWalkError) {
                switch walker {
                case .range: try MadviseFreeWalk.range(self, s, e)
                case .callback: try MadviseFreeWalk.callback(self, vma, s, e)
                }
            } catch {
                throw error.asModelError
            }
        }
    }
}

/// The MADV_FREE user on both walkers.
enum MadviseFreeWalk {
    /// Whether `f` may be made lazily free by a walk that maps all of it.
    static func freeable(_ f: Folio) -> Bool {
        f.isAnon && !f.isZero && !f.isKSM && !f.test(.zoneDevice)
            && f.entireMapcount <= 1 && f.mapcount == (f.entireMapcount > 0 ? 1 : f.pageCount)
    }

    /// The range version, under the lock madvise took (the VMA lock, or the
    /// mmap read lock): a batch is all of a folio's PTEs in the range, so
    /// "whole" is the entry's own fact.
    static func range(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64) throws(PageWalkError) {
        try mm.withUpdateWalk(start..<end, lock: .vma, options: UpdateWalkOptions(respect: [])) { (walk) throws(PageWalkError) in
            try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in
                switch e.content {
                case .swap:
                    try e.clear()
                case .folio(let f, let first, let count) where first == 0 && count == f.pageCount && freeable(f):
                    try e.clearYoungDirty()
                    try e.markFolioLazyFree()
                default:
                    break
                }
                return .next
            }
        }
    }
}
