import MemoryModel

/// The reference's zap, `munmap` and `tearDown`, the page-granular counterpart of
/// `AddressSpace+Zap.swift`. Each operation follows the documented semantics of
/// the model's operation (named in its comment), checks its arguments in the same
/// order and throws the same `ModelError` cases.
extension ReferenceModel {
    /// `AddressSpace.zap` (MADV_DONTNEED).
    public func zap(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        let vs = try covered(p, start, end, "zap")
        for v in vs {
            guard !v.flags.contains(.locked), !v.flags.contains(.pfnMap) else {
                throw .wrongVMAKind(address: v.start, reason: "MADV_DONTNEED on a VM_LOCKED or VM_PFNMAP VMA")
            }
            try zapRange(p, v, max(start, v.start), min(end, v.end), dropMarkers: false)
        }
    }

    /// `AddressSpace.munmap`.
    public func munmap(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        guard start & Geometry.pageOffsetMask == 0, end & Geometry.pageOffsetMask == 0, start < end else {
            throw .invalidRange(start: start, end: end, reason: "munmap needs a page-aligned, non-empty range")
        }
        for v in p.vmas(intersecting: start, end) where v.isHugetlb {
            if max(start, v.start) % v.hugePageSize != 0 || min(end, v.end) % v.hugePageSize != 0 {
                throw .unaligned(name: "hugetlb munmap", value: start, alignment: v.hugePageSize)
            }
        }
        let vs = try isolate(p, start, end)
        for v in vs { try zapRange(p, v, v.start, v.end, dropMarkers: true) }
        p.vmas.removeAll { v in vs.contains { $0 === v } }
        // free_pgtables(): empty PTE tables no VMA needs.
        var a = pmdBase(start)
        while a < end {
            if p.pteTables.contains(a) && tableEmpty(p, a) && p.vmas(intersecting: a, a + ReferenceModel.pmdSize).isEmpty {
                p.pteTables.remove(a)
            }
            a += ReferenceModel.pmdSize
        }
    }

    /// `AddressSpace.tearDown`.
    public func tearDown(pid: Int) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for v in p.vmas { try? zapRange(p, v, v.start, v.end, dropMarkers: true) }
        p.vmas.removeAll()
        p.pteTables.removeAll()
        p.alive = false
    }

    func zapRange(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ start: UInt64, _ end: UInt64, dropMarkers: Bool) throws(ModelError) {
        if vma.isHugetlb { try zapHugetlb(p, vma, start, end); return }
        var a = start
        while a < end {
            let next = geometry.entryEnd(a, at: .pmd, limit: end)
            switch lookupTable(p, a, allocate: false) {
            case .table:
                var b = a
                while b < next { zapPTE(p, vma, b, dropMarkers: dropMarkers); b += Geometry.pageSize }
                if tableEmpty(p, a) { p.pteTables.remove(pmdBase(a)) }
            case .pmdEntry:
                if a % ReferenceModel.pmdSize == 0 && next - a == ReferenceModel.pmdSize {
                    for k in 0..<512 { set(p, a + UInt64(k) << Geometry.pageShift, nil) }
                } else {
                    try splitPMD(p, a)
                    continue
                }
            case .blocked:
                let size = geometry.entrySize(.pud)
                a = min(end, (a & ~(size - 1)) + size)
                continue
            case .absent:
                break
            }
            a = next
        }
    }

    func zapPTE(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ a: UInt64, dropMarkers: Bool) {
        guard let old = p.pages[a] else { return }
        switch old {
        case .present(let pp):
            set(p, a, nil)
            if case .folio(let f, _) = pp.target, !pp.attrs.contains(.special) {
                if pp.attrs.contains(.dirty) && !folios[f]!.isAnon { folios[f]!.flags.insert(.dirty) }
                // folio_mark_accessed() for a young file page: not idle.
                if pp.attrs.contains(.young) && !folios[f]!.isAnon { folios[f]!.flags.remove(.idle) }
                freeSwapCache(f)
            }
            // Anonymous memory keeps no trace of the protection after a zap.
            if !dropMarkers && !vma.isAnonymous && vma.flags.contains(.uffdWP) && pp.attrs.contains(.uffdWP) {
                set(p, a, .marker(.uffdWP))
            }
        case .marker(let m):
            // uffd-wp markers go with anonymous memory, guards only when
            // markers are dropped, poison always.
            let drop = m.contains(.uffdWP) ? (vma.isAnonymous || dropMarkers) : m.contains(.guardRegion) ? dropMarkers : true
            if drop { set(p, a, nil) }
        case .swap(let slot, _):
            set(p, a, nil)
            releaseSwap(slot)
        case .migration, .devicePrivate, .deviceExclusive, .hwpoison:
            set(p, a, nil)
        }
    }

    /// `AddressSpace.freeSwapCache`: an unmapped anonymous folio whose
    /// swap-cache slots no swap entry refers to leaves the swap cache.
    func freeSwapCache(_ f: ReferenceFolioID) {
        guard let folio = folios[f], folio.isAnon, folio.mapcount == 0 else { return }
        folioFreeSwap(f)
    }

    /// `PhysicalMemory.folioFreeSwap`: out of the swap cache unless a swap
    /// entry still refers to one of its slots.
    func folioFreeSwap(_ f: ReferenceFolioID) {
        guard let folio = folios[f], folio.flags.contains(.swapCache) else { return }
        let slots = swapCache.filter { $0.value.folio == f }.map(\.key)
        guard slots.allSatisfy({ slotCounts[$0, default: 0] == 0 }) else { return }
        for slot in slots {
            swapCache[slot] = nil
            folios[f]!.swapCacheRefs -= 1
        }
        folios[f]!.flags.remove(.swapCache)
    }

    /// `releaseSwapReference`: a slot left with only its cached, unmapped
    /// folio releases it.
    func releaseSwap(_ slot: ReferenceSlotID) {
        if slotCounts[slot] == 0, let (f, _) = swapCache[slot], folios[f]!.mapcount == 0 {
            swapCache[slot] = nil
            folios[f]!.swapCacheRefs -= 1
            folios[f]!.flags.remove(.swapCache)
        }
    }

    func zapHugetlb(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let size = vma.hugePageSize
        guard start % size == 0, end % size == 0 else {
            throw .unaligned(name: "hugetlb range", value: start % size == 0 ? end : start, alignment: size)
        }
        var a = start
        while a < end {
            for k in 0..<Int(size / Geometry.pageSize) { set(p, a + UInt64(k) << Geometry.pageShift, nil) }
            a += size
        }
    }
}
