import MemoryModel

extension Mempolicy {
    /// `queue_pages_range()` on the update walk: `test_walk` is the VMA
    /// filter (run as each VMA is reached, after the walk write-locks it
    /// for mbind), folios come as entries: PTE batches of one folio, PMD
    /// leaves, hugetlb entries. The walk stops where a kernel handler
    /// returns -EIO: at the first failure of a strict check without moves
    /// (the kernel goes on to the end of that PMD's PTEs, which can only
    /// count further failures).
    static func rangeQueue(_ mm: AddressSpace, _ state: inout QueuePagesState) throws(MempolicyError) {
        try withUnsafeMutablePointer(to: &state) { (st) throws(MempolicyError) in
            try rangeQueue(mm, st)
        }
    }

    static func rangeQueue(_ mm: AddressSpace, _ st: UnsafeMutablePointer<QueuePagesState>) throws(MempolicyError) {
        let options = UpdateWalkOptions(respect: [], vmaFilter: { vma in
            // After a hole every later VMA is passed over: the kernel's
            // walk has ended there.
            guard st.pointee.fault == nil else { return false }
            return st.pointee.testWalk(vma) == .walk
        })
        let lock: UpdateWalkLock = st.pointee.flags.contains(.writeLock) ? .mmapWrite : .mmapRead
        guard let range = st.pointee.walkRange else { throw .fault(address: st.pointee.start) }
        var walkError: PageWalkError?
        do throws(PageWalkError) {
            _ = try mm.withUpdateWalk(range, lock: lock, options: options) { (walk) throws(PageWalkError) -> Bool in
                try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in
                    guard st.pointee.fault == nil, let vma = e.vmaUnretained else { return .stop }
                    let hugetlb: Bool
                    if case .hugetlb = e.target { hugetlb = true } else { hugetlb = false }
                    switch e.content {
                    case .migration:
                        st.pointee.migrationEntries(hugetlb ? 1 : e.entry.count)
                    case .folio(let folio, let first, _):
                        let head = e.start - UInt64(first) << Geometry.pageShift
                        if hugetlb {
                            st.pointee.queueHugetlbFolio(folio, head: head, in: vma)
                        } else if e.level.tableLevel == .pte {
                            if st.pointee.queuePTEFolio(folio, head: head, in: vma) { return .stop }
                        } else {
                            st.pointee.queuePMDFolio(folio, head: head, in: vma)
                        }
                    default:
                        return .next
                    }
                    return st.pointee.failsWithEIO ? .stop : .next
                }
            }
        } catch {
            walkError = error
        }
        if st.pointee.first == nil { throw .fault(address: st.pointee.start) }
        if let walkError { throw .walk(walkError) }
        if let hole = st.pointee.fault { throw .fault(address: hole) }
        if st.pointee.failsWithEIO { throw .io }
    }
}
