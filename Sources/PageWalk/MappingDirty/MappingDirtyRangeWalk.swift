import MemoryModel

extension MappingDirty {
    /// The helpers on the range walker: the VMAs `walk_page_mapping()`
    /// visits (`FileMappingRange.covering`), in its order, until one fails
    /// `wp_clean_test_walk()`; each clipped range an update walk under its
    /// address space's mmap read lock, PFN maps included. PTE batches agree
    /// on the bit acted on, so a batch is changed whole or not at all; huge
    /// entries come whole and are passed over. The walk's TLB gather is the
    /// VMA's flush range: it grows by each batch changed and is flushed when
    /// the walk of the VMA ends (`post_vma`).
    static func rangeWalk(_ operation: Operation, _ memory: PhysicalMemory, _ file: FileObject, _ firstIndex: UInt64,
                          _ count: UInt64, _ bitmap: inout MappingDirtyBitmap?) throws(PageWalkError) -> MappingDirtyResult {
        var result = MappingDirtyResult()
        let acted: EntryAttributes = operation == .writeProtect ? .writable : .dirty
        let options = UpdateWalkOptions(respect: acted, pfnMap: .walk, lookUpFolios: false)
        for m in FileMappingRange.covering(memory, file, firstIndex: firstIndex, count: count) {
            guard isTracked(m.vma) else { break }
            let pid = m.mm.options.pid
            try m.mm.withUpdateWalk(m.start..<m.end, lock: .mmapRead, options: options) { (walk) throws(PageWalkError) -> Void in
                try walk.forEach { (u) throws(PageWalkError) -> UpdateStep in
                    let e = u.entry
                    let present = e.content.kind == .folio || e.content.kind == .pfn || e.content.kind == .present
                    guard e.level == .pte || e.level == .contPTE else {
                        if warns(present: present, writable: e.entryAttributesContain(.writable),
                                 dirty: e.entryAttributesContain(.dirty)) {
                            result.warnings.append(.init(pid: pid, address: e.start))
                        }
                        return .next
                    }
                    guard present, e.entryAttributesContain(acted) else { return .next }
                    switch operation {
                    case .writeProtect:
                        try u.writeProtect()
                    case .cleanRecord:
                        try u.makeClean()
                        for a in stride(from: e.start, to: e.end, by: Int(Geometry.pageSize)) {
                            bitmap?.record(page: filePage(m.vma, a))
                        }
                    }
                    result.total += e.count
                    return .next
                }
                result.flushes += walk.tlb.flushes.map { .init(pid: pid, range: $0.range) }
            }
        }
        return result
    }
}
