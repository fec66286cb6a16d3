import MemoryModel

extension AddressSpace {
    /// Models a write of `kind` to `/proc/PID/clear_refs`
    /// (`clear_refs_write()`): under the mmap write lock, VM_SOFTDIRTY
    /// leaves every VMA for type 4, then one walk over the address space
    /// with every VMA write-locked as it is reached (`PGWALK_WRLOCK`).
    /// Type 5 only resets the peak RSS. Returns the TLB flushes the walk
    /// gathered (soft-dirty write-protects; making entries old needs none).
    @discardableResult
    public func clearRefs(_ kind: ClearRefs, walker: WalkerKind = .range) throws(PageWalkError) -> MMUGather {
        guard !isTornDown else { throw .model(.tornDown) }
        if kind == .hiwaterRSS {
            withMmapWriteLock { _ in resetHiwaterRSS() }
            return MMUGather()
        }
        switch walker {
        case .range: return try ClearRefsWalk.range(self, kind)
        case .callback: return try ClearRefsWalk.callback(self, kind)
        }
    }
}

/// The clear_refs user on both walkers.
enum ClearRefsWalk {
    /// `clear_refs_test_walk()`: PFN maps are skipped; types 2 and 3 walk
    /// only anonymous or only file-backed VMAs. Hugetlb VMAs have no
    /// handler, so their entries stay as they are.
    static func walks(_ vma: VMA, _ kind: AddressSpace.ClearRefs) -> Bool {
        if vma.isPFNMap || vma.isHugetlb { return false }
        switch kind {
        case .anonymous: return vma.file == nil
        case .file: return vma.file != nil
        case .all, .softDirty, .hiwaterRSS: return true
        }
    }

    /// The whole user address space, as the kernel's walk from 0 to ~0UL.
    static func userRange(_ mm: AddressSpace) -> Range<UInt64> { 0..<mm.geometry.userAddressLimit }

    /// The range version: one update walk; each entry made old (with its
    /// folios unreferenced) or cleared of soft-dirty, a batch at a time.
    /// Present PTEs come in runs across folios, not looked up by the walk:
    /// the folio update resolves each page's folio as it goes.
    static func range(_ mm: AddressSpace, _ kind: AddressSpace.ClearRefs) throws(PageWalkError) -> MMUGather {
        let options = UpdateWalkOptions(respect: [], vmaFilter: { walks($0, kind) }, lookUpFolios: false)
        return try mm.withUpdateWalk(userRange(mm), lock: .mmapWrite, options: options) { (walk) throws(PageWalkError) in
            if kind == .softDirty { mm.clearSoftDirtyFlags() }
            try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in
                if kind == .softDirty {
                    try e.clearSoftDirty()
                    return .next
                }
                // vm_normal_folio() for PTEs (a run of normal pages, not
                // the special ones); any present PMD leaf (the huge zero
                // folio too, as pmd_folio() finds it).
                switch e.content {
                case .present where !e.entry.entryAttributesContain(.special), .folio:
                    try e.testAndClearYoung()
                    try e.clearFolioReferenced()
                case .pfn where e.level.tableLevel == .pmd:
                    try e.testAndClearYoung()
                default:
                    break
                }
                return .next
            }
            return walk.tlb
        }
    }
}
