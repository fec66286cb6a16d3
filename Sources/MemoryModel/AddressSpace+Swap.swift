import Synchronization

extension AddressSpace {
    /// Reclaims the anonymous folios mapped wholly inside `[start, end)` to
    /// swap (`MADV_PAGEOUT` → `shrink_folio_list()` → `try_to_unmap()`):
    /// each folio gets consecutive swap slots, every PTE mapping it in any
    /// process of the fork family becomes a swap entry (PMD mappings are
    /// split first), and the folio is freed. Mlocked, KSM, hugetlb and
    /// partially covered large folios stay resident, as the kernel would
    /// leave them on this path (it would split partial ones first).
    public func swapOut(_ start: UInt64, _ end: UInt64) throws(ModelError) {
        try checkAlive()
        try withMmapReadLock { (_) throws(ModelError) in
            for vma in try coveredVMAs(start, end, operation: "swapout") {
                guard vma.isPrivate, !vma.isHugetlb, !vma.isPFNMap else {
                    throw .wrongVMAKind(address: vma.start, reason: "swap-out applies to private memory")
                }
                if vma.flags.contains(.locked) { continue }
                let folios = try anonFoliosFullyInside(vma, max(start, vma.start), min(end, vma.end)) { f in
                    !f.isKSM && !f.isHugetlb && !f.test(.mlocked) && !f.test(.swapCache) && !f.test(.zoneDevice)
                }
                for (folio, address) in folios { try swapOutFolio(folio, at: address) }
            }
        }
    }

    /// Unmaps `folio` (first page at `address`) into fresh swap slots.
    func swapOutFolio(_ folio: Folio, at address: UInt64) throws(ModelError) {
        let n = folio.pageCount
        let first = try memory.swap.allocate(n)
        var references = [Int](repeating: 0, count: n)
        folio.addRef(1)   // hold the folio while unmapping it everywhere
        for mm in anonFamilyMembers() {
            for k in 0..<n {
                try withPTEMapping(in: mm, address + UInt64(k) * 4096, pfn: folio.pfn + UInt64(k)) { (t, i, w) throws(ModelError) in
                    var bits: SwapPTEBits = []
                    if folio.pageFlags(k).contains(.anonExclusive) { bits.insert(.exclusive) }
                    if w & mm.layout.softDirty != 0 { bits.insert(.softDirty) }
                    if w & mm.layout.uffdWP != 0 { bits.insert(.uffdWP) }
                    let entry = try SoftLeafEntry(.swap(SwapEntry(type: 0, offset: UInt64(first + k))), bits: bits).encode(mm.layout)
                    mm.storePTE(t, i, entry)
                    folio.addPTEMappings(first: k, count: 1, delta: -1)
                    mm.addRSS(.anon, -1)
                    mm.addRSS(.swapEntries, 1)
                    references[k] += 1
                    memory.put(folio)
                }
            }
        }
        for k in 0..<n { memory.swap.adjust(first + k, references[k] - 1) }
        if folio.mapcount > 0 {
            // Still mapped where the family walk could not reach: the folio
            // stays in the swap cache, holding one reference per page.
            folio.setFlags(.swapCache, true)
            folio.addRef(n)
            for k in 0..<n { memory.swap.setCache(first + k, folio.pfn + UInt64(k)) }
        } else {
            for k in 0..<n { folio.setPageFlags(k, .anonExclusive, false) }
        }
        memory.put(folio)
    }

    /// Swaps in every swap entry of `[start, end)` (`do_swap_page()` for a
    /// read access).
    public func swapIn(_ start: UInt64, _ end: UInt64) throws(ModelError) {
        try checkAlive()
        try withMmapReadLock { (_) throws(ModelError) in
            for vma in try coveredVMAs(start, end, operation: "swapin") {
                try forEachPTE(max(start, vma.start), min(end, vma.end), pmd: { _, _ in .skip }) { (t, i, a) throws(ModelError) in
                    let w = arena.entries(t)[i].load(ordering: .relaxed)
                    guard w != 0, !layout.isPresent(w, .pte),
                          case .swap = SoftLeafEntry(decoding: w, layout: layout).leaf else { return }
                    try swapInPTE(vma, t, i, a, write: false)
                }
            }
        }
    }

    /// Swaps in the swap entry at PTE `i` of locked table `t`: through the
    /// swap cache, as for a swap file (the folio stays cached until the
    /// slot's last reference goes, or a write makes it exclusive).
    func swapInPTE(_ vma: VMA, _ t: TableID, _ i: Int, _ address: UInt64, write: Bool) throws(ModelError) {
        let old = arena.entries(t)[i].load(ordering: .relaxed)
        let leaf = SoftLeafEntry(decoding: old, layout: layout)
        guard case .swap(let entry) = leaf.leaf else { return }
        let slot = Int(entry.offset)
        let page: Page
        if let pfn = memory.swap.cachedFolioPFN(slot), let p = memory.page(pfn) {
            page = p
        } else {
            let f = try memory.allocateFolio(order: 0, node: node(for: vma, address),
                                             flags: [.anon, .swapBacked, .uptodate, .lru, .swapCache], refcount: 1)
            memory.swap.setCache(slot, f.pfn)
            page = f.page(0)
        }
        let folio = page.folio
        memory.swap.adjust(slot, -1)
        var exclusive = leaf.bits.contains(.exclusive)
        var attrs: LeafAttributes = [.user, .young]
        if vma.flags.contains(.exec) { attrs.insert(.executable) }
        if leaf.bits.contains(.softDirty) { attrs.insert(.softDirty) }
        if leaf.bits.contains(.uffdWP) { attrs.insert(.uffdWP) }
        // should_try_to_free_swap(): a write, or mlock, frees the slot when
        // we are the only user.
        let freeSwap = memory.swap.count(slot) == 0 && folio.mapcount == 0
            && (write || vma.flags.contains(.locked) || folio.test(.mlocked))
        if freeSwap {
            memory.swap.setCache(slot, nil)
            folio.setFlags(.swapCache, false)
            folio.setFlags(.dirty, true)
            exclusive = true
        } else {
            folio.addRef(1)   // the mapping's reference; the cache keeps its own
        }
        if exclusive && vma.flags.contains(.write) && !leaf.bits.contains(.uffdWP) {
            attrs.insert(.writable)
            if write { attrs.insert(.dirty); if tracksSoftDirty { attrs.insert(.softDirty) } }
        }
        if exclusive { folio.setPageFlags(page.index, .anonExclusive, true) }
        folio.addPTEMappings(first: page.index, count: 1, delta: 1)
        storePTE(t, i, layout.leaf(pfn: page.pfn, level: .pte, attrs))
        addRSS(.swapEntries, -1)
        addRSS(.anon, 1)
        vma.hasAnonVMA = true
    }
}
