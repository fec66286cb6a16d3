import Synchronization

extension AddressSpace {
    /// Migrates the exclusive anonymous order-0 pages of `[start, end)` to
    /// device-private memory (`migrate_vma_pages()`): each PTE becomes a
    /// device-private entry naming a new ZONE_DEVICE page.
    public func makeDevicePrivate(_ start: UInt64, _ end: UInt64, writable: Bool) throws(ModelError) {
        try checkAlive()
        try withMmapReadLock { (_) throws(ModelError) in
            for vma in try coveredVMAs(start, end, operation: "device_private") {
                guard vma.isAnonymous else { throw .wrongVMAKind(address: vma.start, reason: "device-private migration needs anonymous memory") }
                try forEachPTE(max(start, vma.start), min(end, vma.end)) { (t, i, a) throws(ModelError) in
                    let w = arena.entries(t)[i].load(ordering: .relaxed)
                    guard layout.isPresent(w, .pte), !layout.isSpecialPTE(w), let page = memory.page(layout.pfn(w)),
                          page.folio.isAnon, !page.folio.isLarge, !page.folio.isKSM, page.folio.mapcount == 1 else { return }
                    let device = try memory.allocateFolio(order: 0, node: page.folio.node,
                                                          flags: [.anon, .swapBacked, .uptodate, .zoneDevice, .devicePrivate, .anonExclusive])
                    device.addPTEMappings(first: 0, count: 1, delta: 1)
                    var bits: SwapPTEBits = [.exclusive]
                    if w & layout.softDirty != 0 { bits.insert(.softDirty) }
                    if w & layout.uffdWP != 0 { bits.insert(.uffdWP) }
                    let entry = try SoftLeafEntry(.devicePrivate(writable: writable && w & layout.write != 0, pfn: device.pfn), bits: bits).encode(layout)
                    storePTE(t, i, entry)
                    page.folio.addPTEMappings(first: 0, count: 1, delta: -1)
                    memory.put(page.folio)
                }
            }
        }
    }

    /// A CPU fault on a device-private entry migrates the page back.
    func restoreDevicePrivate(_ vma: VMA, _ t: TableID, _ i: Int, _ address: UInt64, pfn: UInt64, bits: SwapPTEBits) throws(ModelError) {
        guard let device = memory.page(pfn) else { return }
        let old = arena.entries(t)[i].load(ordering: .relaxed)
        guard case .devicePrivate(let writable, _) = SoftLeafEntry(decoding: old, layout: layout).leaf else { return }
        let f = try memory.allocateFolio(order: 0, node: node(for: vma, address),
                                         flags: [.anon, .swapBacked, .uptodate, .lru, .dirty])
        var attrs: LeafAttributes = [.user, .young]
        if writable { attrs.insert(.writable) }
        if bits.contains(.softDirty) { attrs.insert(.softDirty) }
        if bits.contains(.uffdWP) { attrs.insert(.uffdWP) }
        if vma.flags.contains(.exec) { attrs.insert(.executable) }
        f.addPTEMappings(first: 0, count: 1, delta: 1)
        if bits.contains(.exclusive) { f.setPageFlags(0, .anonExclusive, true) }
        storePTE(t, i, layout.leaf(pfn: f.pfn, level: .pte, attrs))
        device.folio.addPTEMappings(first: device.index, count: 1, delta: -1)
        memory.put(device.folio)
    }

    /// Makes the exclusive anonymous pages of `[start, end)` device-exclusive
    /// (`make_device_exclusive()`): the PTE becomes a device-exclusive entry
    /// naming the same page, which stays mapped and referenced.
    public func makeDeviceExclusive(_ start: UInt64, _ end: UInt64) throws(ModelError) {
        try checkAlive()
        try withMmapReadLock { (_) throws(ModelError) in
            for vma in try coveredVMAs(start, end, operation: "device_exclusive") {
                guard vma.isPrivate, !vma.isHugetlb else { throw .wrongVMAKind(address: vma.start, reason: "device-exclusive needs private memory") }
                try forEachPTE(max(start, vma.start), min(end, vma.end)) { (t, i, a) throws(ModelError) in
                    let w = arena.entries(t)[i].load(ordering: .relaxed)
                    guard layout.isPresent(w, .pte), !layout.isSpecialPTE(w), let page = memory.page(layout.pfn(w)),
                          page.folio.isAnon, page.isAnonExclusive, !page.folio.isKSM else { return }
                    var bits: SwapPTEBits = [.exclusive]
                    if w & layout.softDirty != 0 { bits.insert(.softDirty) }
                    if w & layout.uffdWP != 0 { bits.insert(.uffdWP) }
                    if layout.isDirtyPTE(w) { page.folio.setFlags(.dirty, true) }
                    storePTE(t, i, try SoftLeafEntry(.deviceExclusive(pfn: page.pfn), bits: bits).encode(layout))
                }
            }
        }
    }

    /// A CPU access to a device-exclusive entry restores the PTE
    /// (`restore_exclusive_pte()`).
    func restoreDeviceExclusive(_ vma: VMA, _ t: TableID, _ i: Int, pfn: UInt64, bits: SwapPTEBits) {
        guard let page = memory.page(pfn) else { return }
        var attrs: LeafAttributes = [.user]
        // Writable again only while exclusive: after fork the page is shared
        // and a write must break COW.
        if vma.flags.contains(.write) && !bits.contains(.uffdWP) && bits.contains(.exclusive) { attrs.insert(.writable) }
        if page.folio.test(.dirty) { attrs.insert(.dirty) }
        if bits.contains(.softDirty) { attrs.insert(.softDirty) }
        if bits.contains(.uffdWP) { attrs.insert(.uffdWP) }
        if vma.flags.contains(.exec) { attrs.insert(.executable) }
        storePTE(t, i, layout.leaf(pfn: page.pfn, level: .pte, attrs))
    }
}
