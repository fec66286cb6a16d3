import MemoryModel

/// The reference's swap-out and swap-in, the page-granular counterpart of
/// `AddressSpace+Swap.swift`. Each operation follows the documented semantics of
/// the model's operation (named in its comment), checks its arguments in the same
/// order and throws the same `ModelError` cases.
extension ReferenceModel {
    /// `AddressSpace.swapOut`.
    public func swapOut(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for vma in try covered(p, start, end, "swapout") {
            guard vma.isPrivate, !vma.isHugetlb, !vma.isPFNMap else {
                throw .wrongVMAKind(address: vma.start, reason: "swap-out applies to private memory")
            }
            if vma.flags.contains(.locked) { continue }
            let list = try anonFoliosInside(p, max(start, vma.start), min(end, vma.end)) { f in
                !f.isKSM && !f.isHugetlb && !f.flags.contains(.mlocked) && !f.flags.contains(.swapCache) && !f.flags.contains(.zoneDevice)
            }
            for (f, a) in list { try swapOutFolio(p, f, a) }
        }
    }

    func swapOutFolio(_ p: ReferenceProcess, _ f: ReferenceFolioID, _ address: UInt64) throws(ModelError) {
        let n = folios[f]!.pageCount
        let first = nextSlot
        nextSlot += n
        for k in 0..<n { slotCounts[first + k] = 0 }
        for mm in familyMembers(p) {
            for k in 0..<n {
                let a = address + UInt64(k) * Geometry.pageSize
                try withPTEMapping(mm, a, folio: f, page: k) { (pp) in
                    var bits: SwapPTEBits = []
                    if self.folios[f]!.exclusive[k] { bits.insert(.exclusive) }
                    if pp.attrs.contains(.softDirty) { bits.insert(.softDirty) }
                    if pp.attrs.contains(.uffdWP) { bits.insert(.uffdWP) }
                    self.set(mm, a, .swap(slot: first + k, bits: bits))
                }
            }
        }
        if folios[f]!.mapcount > 0 {
            folios[f]!.flags.insert(.swapCache)
            for k in 0..<n {
                swapCache[first + k] = (f, k)
                folios[f]!.swapCacheRefs += 1
            }
        } else {
            for k in 0..<n { folios[f]!.exclusive[k] = false }
        }
    }

    /// `AddressSpace.swapIn`.
    public func swapIn(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for vma in try covered(p, start, end, "swapin") {
            try forEachPTE(p, max(start, vma.start), min(end, vma.end), pmd: { _ in .skip }) { (a) throws(ModelError) in
                if case .swap? = p.pages[a] { try swapInPage(p, vma, a, write: false) }
            }
        }
    }

    func swapInPage(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ a: UInt64, write: Bool) throws(ModelError) {
        guard case .swap(let slot, let bits)? = p.pages[a] else { return }
        let f: ReferenceFolioID, i: Int
        if let (cf, ci) = swapCache[slot] { f = cf; i = ci } else {
            f = newFolio(order: 0, node: node(vma, a), flags: [.anon, .swapBacked, .swapCache])
            i = 0
            swapCache[slot] = (f, 0)
            folios[f]!.swapCacheRefs += 1
        }
        set(p, a, nil)   // the swap reference goes
        var exclusive = bits.contains(.exclusive)
        var attrs: LeafAttributes = [.young]
        if bits.contains(.softDirty) { attrs.insert(.softDirty) }
        if bits.contains(.uffdWP) { attrs.insert(.uffdWP) }
        let freeSwap = slotCounts[slot] == 0 && folios[f]!.mapcount == 0
            && (write || vma.flags.contains(.locked) || folios[f]!.flags.contains(.mlocked))
        if freeSwap {
            swapCache[slot] = nil
            folios[f]!.swapCacheRefs -= 1
            folios[f]!.flags.remove(.swapCache)
            folios[f]!.flags.insert(.dirty)
            exclusive = true
        }
        if exclusive && vma.flags.contains(.write) && !bits.contains(.uffdWP) {
            attrs.insert(.writable)
            if write { attrs.insert(.dirty); if tracksSoftDirty { attrs.insert(.softDirty) } }
        }
        if exclusive { folios[f]!.exclusive[i] = true }
        set(p, a, .present(ReferencePresent(target: .folio(f, page: i), attrs: attrs)))
        vma.hasAnonVMA = true
    }
}
