import MemoryModel
import PageWalk

// /proc/PID/smaps and smaps_rollup (fs/proc/task_mmu.c: show_smap(),
// show_smaps_rollup(), smap_gather_stats()). The accounting is shared
// (`MemSizeStats`); the range walker and the callback walker only differ in
// how they find the entries.

/// `/proc/PID/smaps`.
public enum Smaps {
    /// Writes the smaps of every VMA of `mm`, then of its gate VMA, holding
    /// its mmap read lock.
    @_specialize(where S == CountingSink)
    @_specialize(where S == ByteCollector)
    @_specialize(where S == FileDescriptorSink)
    public static func write<S: ProcSink>(_ mm: AddressSpace, to w: inout ProcWriter<S>,
                                          options: ProcOptions = ProcOptions()) throws(PageWalkError) {
        try mm.withMmapReadLock { (lock) throws(PageWalkError) in
            for vma in mm.mapsVMAs {
                let mss = try gather(mm, vma, lock: lock, options: options)
                show(vma, mss, mm: mm, to: &w, options: options)
            }
        }
    }

    /// smaps as text.
    public static func text(_ mm: AddressSpace, options: ProcOptions = ProcOptions()) throws(PageWalkError) -> String {
        var w = ProcWriter(ByteCollector())
        try write(mm, to: &w, options: options)
        return w.finish().text
    }

    /// The counters of one VMA (`smap_gather_stats()` from the VMA's start).
    public static func gather(_ mm: AddressSpace, _ vma: VMA, lock: AddressSpace.MmapLockToken,
                              options: ProcOptions) throws(PageWalkError) -> MemSizeStats {
        // The gate VMA has no vm_mm: walk_page_vma() refuses it, every
        // counter stays zero.
        if vma === mm.gateVMA { return MemSizeStats() }
        switch options.walker {
        case .range: return try gatherRange(mm, vma, lock: lock, batching: options.batching)
        case .callback:
            if options.specialized {
                var mss = MemSizeStats()
                _ = try walkPageRange(mm, vma.start, vma.end, ops: SmapsWalkOps(mm, vma), private: &mss)
                return mss
            }
            return try gatherCallback(mm, vma)
        }
    }

    /// `show_smap()` for one VMA whose counters are `mss`.
    static func show<S: ProcSink>(_ vma: VMA, _ mss: MemSizeStats, mm: AddressSpace, to w: inout ProcWriter<S>,
                                  options: ProcOptions) {
        w.write(VMAInfo.header(vma))
        w.writeField("Size:           ", vma.size >> 10)
        w.writeField(" kB\nKernelPageSize: ", VMAInfo.kernelPageSize(vma) >> 10)
        w.writeField(" kB\nMMUPageSize:    ", VMAInfo.kernelPageSize(vma) >> 10)
        w.write(" kB\n")
        showCounters(mss, rollup: false, to: &w)
        // thp_vma_allowable_orders() refuses a VMA without vm_mm: the gate VMA.
        let eligible = vma !== mm.gateVMA && VMAInfo.thpEligible(vma, options.thp, mm.geometry)
        w.writeField("THPeligible:    ", eligible ? 1 : 0)
        w.write("\n")
        if options.protectionKeys {
            w.writeField("ProtectionKey:  ", UInt64(vma.protectionKey))
            w.write("\n")
        }
        w.write(VMAInfo.vmFlags(vma.flags, architecture: mm.geometry.architecture))
    }

    /// `__show_smap()`: the counters smaps and smaps_rollup share.
    static func showCounters<S: ProcSink>(_ m: MemSizeStats, rollup: Bool, to w: inout ProcWriter<S>) {
        w.writeField("Rss:            ", m.resident >> 10)
        w.writeField(" kB\nPss:            ", (m.pss >> pssShift) >> 10)
        w.writeField(" kB\nPss_Dirty:      ", (m.pssDirty >> pssShift) >> 10)
        if rollup {
            w.writeField(" kB\nPss_Anon:       ", (m.pssAnon >> pssShift) >> 10)
            w.writeField(" kB\nPss_File:       ", (m.pssFile >> pssShift) >> 10)
            w.writeField(" kB\nPss_Shmem:      ", (m.pssShmem >> pssShift) >> 10)
        }
        w.writeField(" kB\nShared_Clean:   ", m.sharedClean >> 10)
        w.writeField(" kB\nShared_Dirty:   ", m.sharedDirty >> 10)
        w.writeField(" kB\nPrivate_Clean:  ", m.privateClean >> 10)
        w.writeField(" kB\nPrivate_Dirty:  ", m.privateDirty >> 10)
        w.writeField(" kB\nReferenced:     ", m.referenced >> 10)
        w.writeField(" kB\nAnonymous:      ", m.anonymous >> 10)
        w.writeField(" kB\nKSM:            ", m.ksm >> 10)
        w.writeField(" kB\nLazyFree:       ", m.lazyFree >> 10)
        w.writeField(" kB\nAnonHugePages:  ", m.anonymousTHP >> 10)
        w.writeField(" kB\nShmemPmdMapped: ", m.shmemTHP >> 10)
        w.writeField(" kB\nFilePmdMapped:  ", m.fileTHP >> 10)
        w.writeField(" kB\nShared_Hugetlb: ", m.sharedHugetlb >> 10)
        w.writeField(" kB\nPrivate_Hugetlb: ", m.privateHugetlb >> 10, width: 7)
        w.writeField(" kB\nSwap:           ", m.swap >> 10)
        w.writeField(" kB\nSwapPss:        ", (m.swapPss >> pssShift) >> 10)
        w.writeField(" kB\nLocked:         ", (m.pssLocked >> pssShift) >> 10)
        w.write(" kB\n")
    }

    // MARK: Range walker

    /// The walk options smaps uses: batches may merge entries that differ in
    /// writable, soft-dirty or uffd-wp (smaps ignores them) but not in young
    /// or dirty (Referenced and the dirty counters are per page).
    public static let walkOptions = RangeWalkOptions(batching: true, respect: [.young, .dirty])

    static func gatherRange(_ mm: AddressSpace, _ vma: VMA, lock: AddressSpace.MmapLockToken,
                            batching: Bool) throws(PageWalkError) -> MemSizeStats {
        var mss = MemSizeStats()
        // walk_page_test(): VM_PFNMAP VMAs are not walked.
        if vma.isPFNMap { return mss }
        let locked = vma.flags.contains(.locked)
        let memory = mm.memory
        var opts = walkOptions
        opts.batching = batching
        for e in try mm.walk(vma.start..<vma.end, lock: lock, options: opts) {
            let pmdLevel = e.level.tableLevel != .pte
            if vma.isHugetlb {
                switch e.content {
                case .folio(let f, _, _): mss.accountHugetlb(f, present: true, size: vma.hugePageSize)
                case .migration(_, _, let f?), .device(_, _, _, let f?):
                    mss.accountHugetlb(f, present: false, size: vma.hugePageSize)
                case .hwpoison(let pfn):
                    if let f = memory.folio(containing: pfn) { mss.accountHugetlb(f, present: false, size: vma.hugePageSize) }
                default: break
                }
                continue
            }
            switch e.content {
            case .folio(let f, let first, let n):
                let young = e.entryAttributesContain(.young), dirty = e.entryAttributesContain(.dirty)
                if pmdLevel {
                    mss.accountPMD(f, first: first, count: n, young: young, dirty: dirty, locked: locked, present: true)
                } else {
                    mss.account(f, first: first, count: n, young: young, dirty: dirty, locked: locked, present: true)
                }
            case .swap(let s):
                mss.accountSwap(s, count: e.pageCount, memory: memory)
            case .migration(_, let pfn, _):
                accountPFNEntry(&mss, memory, pfn: pfn, pages: e.pageCount, pmd: pmdLevel, locked: locked, present: false)
            case .device(let exclusive, _, let pfn, _):
                accountPFNEntry(&mss, memory, pfn: pfn, pages: e.pageCount, pmd: pmdLevel, locked: locked, present: !exclusive)
            case .hwpoison(let pfn):
                accountPFNEntry(&mss, memory, pfn: pfn, pages: e.pageCount, pmd: pmdLevel, locked: locked, present: false)
            case .none, .hole, .pfn, .marker, .present:
                break   // (.present is not produced: this walk looks folios up)
            }
        }
        return mss
    }

    /// A non-present entry that names a page (`is_pfn_swap_entry()`):
    /// migration, device and hwpoison entries; counted page by page.
    static func accountPFNEntry(_ mss: inout MemSizeStats, _ memory: PhysicalMemory, pfn: UInt64, pages: Int,
                                pmd: Bool, locked: Bool, present: Bool) {
        if pmd {
            guard let f = memory.folio(containing: pfn) else { return }
            mss.accountPMD(f, first: Int(pfn - f.pfn), count: pages, young: false, dirty: false, locked: locked, present: present)
            return
        }
        for k in 0..<UInt64(pages) {
            guard let f = memory.folio(containing: pfn + k) else { continue }
            mss.account(f, first: Int(pfn + k - f.pfn), count: 1, young: false, dirty: false, locked: locked, present: present)
        }
    }

    // MARK: Callback walker

    /// `smaps_walk_ops` on the callback walker: a `pmd_entry` for PMD leaves
    /// (and PMD migration entries), `pte_entry` per PTE, `hugetlb_entry`.
    static func gatherCallback(_ mm: AddressSpace, _ vma: VMA) throws(PageWalkError) -> MemSizeStats {
        var mss = MemSizeStats()
        let handlers = SmapsWalkOps(mm, vma)
        var ops = MMWalkOps<MemSizeStats>()
        ops.pmdEntry = { handlers.pmdEntry($0, $1, $2, &$3) }
        ops.pteEntry = { handlers.pteEntry($0, $1, $2, &$3) }
        ops.hugetlbEntry = { handlers.hugetlbEntry($0, $1, $2, $3, &$4) }
        // walk_page_vma(): walk_page_test() first, so VM_PFNMAP is skipped.
        _ = try walkPageRange(mm, vma.start, vma.end, ops: ops, private: &mss)
        return mss
    }
}

/// `/proc/PID/smaps_rollup`.
public enum SmapsRollup {
    /// The summed counters of every VMA of the mm, with the range from the
    /// first VMA's start to the last one's end: show_smaps_rollup() walks
    /// the mm's VMA tree only, so the gate VMA neither counts nor ends it.
    public static func gather(_ mm: AddressSpace, options: ProcOptions = ProcOptions()) throws(PageWalkError) -> (MemSizeStats, UInt64, UInt64) {
        try mm.withMmapReadLock { (lock) throws(PageWalkError) -> (MemSizeStats, UInt64, UInt64) in
            var total = MemSizeStats()
            let vmas = mm.vmas
            for vma in vmas { total.add(try Smaps.gather(mm, vma, lock: lock, options: options)) }
            return (total, vmas.first?.start ?? 0, vmas.last?.end ?? 0)
        }
    }

    @_specialize(where S == CountingSink)
    @_specialize(where S == ByteCollector)
    @_specialize(where S == FileDescriptorSink)
    public static func write<S: ProcSink>(_ mm: AddressSpace, to w: inout ProcWriter<S>,
                                          options: ProcOptions = ProcOptions()) throws(PageWalkError) {
        let (mss, first, last) = try gather(mm, options: options)
        var h = HeaderLine.prefix(start: first, end: last, perms: "---p", offset: 0, device: .none, inode: 0)
        h.pad()
        h.text("[rollup]\n")
        w.write(h)
        Smaps.showCounters(mss, rollup: true, to: &w)
    }

    public static func text(_ mm: AddressSpace, options: ProcOptions = ProcOptions()) throws(PageWalkError) -> String {
        var w = ProcWriter(ByteCollector())
        try write(mm, to: &w, options: options)
        return w.finish().text
    }
}
