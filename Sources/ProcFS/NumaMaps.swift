import MemoryModel
import PageWalk
import Synchronization

/// `/proc/PID/numa_maps` (fs/proc/task_mmu.c: show_numa_map(),
/// gather_stats()): one line per VMA.
public enum NumaMaps {
    @_specialize(where S == CountingSink)
    @_specialize(where S == ByteCollector)
    @_specialize(where S == FileDescriptorSink)
    public static func write<S: ProcSink>(_ mm: AddressSpace, to w: inout ProcWriter<S>,
                                          options: ProcOptions = ProcOptions()) throws(PageWalkError) {
        try mm.withMmapReadLock { (lock) throws(PageWalkError) in
            // Not the gate VMA: it has no vm_mm, and show_numa_map() skips it.
            for vma in mm.vmas {
                let md = try gather(mm, vma, lock: lock, options: options)
                show(vma, md, mm: mm, to: &w)
            }
        }
    }

    public static func text(_ mm: AddressSpace, options: ProcOptions = ProcOptions()) throws(PageWalkError) -> String {
        var w = ProcWriter(ByteCollector())
        try write(mm, to: &w, options: options)
        return w.finish().text
    }

    public static func gather(_ mm: AddressSpace, _ vma: VMA, lock: AddressSpace.MmapLockToken,
                              options: ProcOptions) throws(PageWalkError) -> NumaStats {
        switch options.walker {
        case .range: return try gatherRange(mm, vma, lock: lock, batching: options.batching)
        case .callback: return try gatherCallback(mm, vma)
        }
    }

    static func show<S: ProcSink>(_ vma: VMA, _ md: NumaStats, mm: AddressSpace, to w: inout ProcWriter<S>) {
        w.writeHex(vma.start, width: 8)
        w.put(32)
        w.write(VMAInfo.policyString(vma.policy))
        if let file = vma.file {
            w.write(" file=")
            w.writeEscaped(file.path, escape: [10, 9, 32, 61])   // seq_path(m, path, "\n\t= ")
        } else if vma.name == "[heap]" {
            w.write(" heap")
        } else if vma.name == "[stack]" {
            w.write(" stack")
        }
        if vma.isHugetlb { w.write(" huge") }
        if md.pages != 0 {
            if md.anon != 0 { w.write(" anon="); w.writeDecimal(md.anon) }
            if md.dirty != 0 { w.write(" dirty="); w.writeDecimal(md.dirty) }
            if md.pages != md.anon && md.pages != md.dirty { w.write(" mapped="); w.writeDecimal(md.pages) }
            if md.mapcountMax > 1 { w.write(" mapmax="); w.writeDecimal(md.mapcountMax) }
            if md.swapcache != 0 { w.write(" swapcache="); w.writeDecimal(md.swapcache) }
            if md.active < md.pages && !vma.isHugetlb { w.write(" active="); w.writeDecimal(md.active) }
            if md.writeback != 0 { w.write(" writeback="); w.writeDecimal(md.writeback) }
            for node in 0..<min(mm.memory.nodeCount, md.nodes.count) where md.nodes[node] != 0 {
                w.write(" N"); w.writeDecimal(UInt64(node)); w.put(61); w.writeDecimal(md.nodes[node])
            }
            w.write(" kernelpagesize_kB="); w.writeDecimal(VMAInfo.kernelPageSize(vma) >> 10)
        }
        w.put(10)
    }

    /// numa_maps only cares about the dirty bit of batched PTEs.
    public static let walkOptions = RangeWalkOptions(batching: true, respect: [.dirty])

    static func gatherRange(_ mm: AddressSpace, _ vma: VMA, lock: AddressSpace.MmapLockToken,
                            batching: Bool) throws(PageWalkError) -> NumaStats {
        var md = NumaStats()
        if vma.isPFNMap { return md }
        var opts = walkOptions
        opts.batching = batching
        for e in try mm.walk(vma.start..<vma.end, lock: lock, options: opts) {
            guard case .folio(let f, let first, let n) = e.content else { continue }
            let dirty = e.entryAttributesContain(.dirty)
            if vma.isHugetlb {
                // pte_page() of the huge entry: the first page it maps.
                let entryFirst = first - Int((e.start - (e.start & ~(vma.hugePageSize - 1))) >> Geometry.pageShift)
                md.gatherHugetlb(f, first: entryFirst, dirty: dirty)
            } else if e.level.tableLevel != .pte {
                if f.isZero { continue }
                md.gatherPMD(f, first: first, count: n, dirty: dirty)
            } else {
                md.gatherPTEs(f, first: first, count: n, dirty: dirty)
            }
        }
        return md
    }

    static func gatherCallback(_ mm: AddressSpace, _ vma: VMA) throws(PageWalkError) -> NumaStats {
        var md = NumaStats()
        let layout = mm.geometry.layout
        let memory = mm.memory
        var ops = MMWalkOps<NumaStats>()
        ops.pmdEntry = { p, addr, next, walk in
            if p.hasTrivialEntries { return 0 }
            let w = p.rawValue
            if w == 0 || layout.isTable(w, .pmd) { return 0 }
            walk.action = .continue
            guard layout.isPresent(w, .pmd) else { return 0 }
            let pfn = layout.pfn(w) + ((addr & (mm.geometry.entrySize(.pmd) - 1)) >> Geometry.pageShift)
            guard let f = memory.folio(containing: pfn), !f.isZero else { return 0 }
            walk.privateData.gatherPMD(f, first: Int(pfn - f.pfn), count: Int((next - addr) >> Geometry.pageShift), dirty: p.entry.isDirty)
            return 0
        }
        ops.pteEntry = { p, _, _, walk in
            let w = p.rawValue
            guard layout.isPresent(w, .pte), w & layout.special == 0 else { return 0 }
            let pfn = layout.pfn(w)
            guard let f = memory.folio(containing: pfn) else { return 0 }
            walk.privateData.gatherPTEs(f, first: Int(pfn - f.pfn), count: 1, dirty: p.entry.isDirty)
            return 0
        }
        ops.hugetlbEntry = { p, _, _, _, walk in
            let w = p.rawValue
            let level = p.slot.level
            guard layout.isPresent(w, level) else { return 0 }
            // huge_ptep_get(): dirty over the whole contiguous run.
            var dirty = PTE(rawValue: w, architecture: layout.architecture).isDirty
            let entries = mm.hugetlbEntryShape(forSize: vma.hugePageSize).entries
            if entries > 1 {
                let base = mm.memory.tables.entries(p.slot.table) + p.slot.index
                for k in 1..<entries where PTE(rawValue: (base + k).pointee.load(ordering: .relaxed),
                                                  architecture: layout.architecture).isDirty { dirty = true }
            }
            let pfn = layout.pfn(w)
            guard let f = memory.folio(containing: pfn) else { return 0 }
            walk.privateData.gatherHugetlb(f, first: Int(pfn - f.pfn), dirty: dirty)
            return 0
        }
        _ = try walkPageRange(mm, vma.start, vma.end, ops: ops, private: &md)
        return md
    }
}
