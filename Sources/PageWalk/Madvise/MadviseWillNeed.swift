import MemoryModel

/// What one MADV_WILLNEED call read in.
public struct WillNeedResult: Sendable, Hashable {
    /// Folios read into the swap cache for swap entries of anonymous VMAs.
    public internal(set) var swapCacheReads = 0
    /// Pages of file VMAs asked of the page cache (read ahead when absent).
    public internal(set) var pageCachePages = 0

    public init() {}
}

/// Models `madvise(MADV_WILLNEED)` (`madvise_willneed()`), VMA by VMA under
/// the mmap read lock:
///
/// - an anonymous VMA has its swap entries read into the swap cache
///   (`swapin_walk_ops`, `read_swap_cache_async()`), nothing mapped: a
///   later fault finds the folio there. On `walker`: the update walk, or
///   the ops as mm/madvise.c writes them.
/// - a file VMA has its range read ahead into the page cache
///   (`vfs_fadvise(POSIX_FADV_WILLNEED)`); the model's files have no size,
///   so every page of the range is cached, and as order-0 folios, where
///   the kernel stops at end of file and may read large folios. Swap
///   entries of a private file VMA (its COW pages) are not read, as in
///   6.18.
/// - a shmem VMA would read its page cache's swap entries
///   (`shmem_swapin_range()`); the model's shmem is never swapped, so
///   there is nothing to read. Hugetlb and PFN-map VMAs have no readahead.
///
/// Unmapped parts of the range give -ENOMEM after the mapped ones are done.
@discardableResult
public func madviseWillNeed(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64,
                            walker: WalkerKind = .range) throws(MadviseError) -> WillNeedResult {
    var result = WillNeedResult()
    try GuardRegionOps.madvise(mm, start, end) { (vma, s, e) throws(MadviseError) in
        guard let file = vma.file else {
            do throws(PageWalkError) {
                switch walker {
                case .range: result.swapCacheReads += try WillNeedWalk.range(mm, vma, s, e)
                case .callback: result.swapCacheReads += try WillNeedWalk.callback(mm, vma, s, e)
                }
            } catch {
                throw .walk(error)
            }
            return
        }
        guard !vma.isShmem, !vma.isHugetlb, !vma.isPFNMap else { return }
        do throws(ModelError) {
            try mm.cachePages(of: file, vma.pageIndex(s)..<vma.pageIndex(e), node: 0)
        } catch {
            throw .walk(.model(error))
        }
        result.pageCachePages += Int((e - s) >> Geometry.pageShift)
    }
    return result
}

/// `swapin_walk_ops` on both walkers.
enum WillNeedWalk {
    /// The range version: each run of swap entries is read with the table
    /// lock dropped (the kernel drops it for each entry); the walk resumes
    /// there and steps over what was read.
    static func range(_ mm: AddressSpace, _ vma: VMA, _ start: UInt64, _ end: UInt64) throws(PageWalkError) -> Int {
        var readUpTo = start
        var reads = 0
        try mm.withUpdateWalk(start..<end, options: UpdateWalkOptions(respect: [])) { (walk) throws(PageWalkError) in
            try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in
                guard e.level.tableLevel == .pte, case .swap(let first) = e.content, e.end > readUpTo else { return .next }
                let from = max(e.start, readUpTo), to = e.end, base = e.start
                return .unlockAndRetry { () throws(PageWalkError) in
                    var a = from
                    while a < to {
                        let k = (a - base) >> Geometry.pageShift
                        let entry = SwapEntry(type: first.type, offset: first.offset + k)
                        do throws(ModelError) {
                            if try mm.readSwapCacheAsync(entry, vma: vma, address: a) { reads += 1 }
                        } catch {
                            throw .model(error)
                        }
                        a += Geometry.pageSize
                    }
                    readUpTo = to
                }
            }
        }
        return reads
    }
}
