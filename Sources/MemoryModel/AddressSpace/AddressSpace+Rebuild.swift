import Synchronization

// Model-side primitives for rebuilding an address space from captured state
// (KernelSnapshot's `SnapshotRebuilder`). Normal mutations (fault, fork,
// swap-out, …) decide PFNs, entry bits and counts themselves; a rebuild must
// instead place exactly what was captured. Each primitive does one placement
// and keeps the bookkeeping the model's invariants rely on:
//
// | primitive                         | entry written            | accounting                                        |
// |-----------------------------------|--------------------------|---------------------------------------------------|
// | `PhysicalMemory.adoptFolio`       | —                        | memmap records at the PFN, budget, allocator skip |
// | `AddressSpace.insertCapturedVMA`  | —                        | VMA with exact flags (no implied flags)           |
// | `AddressSpace.mapCapturedPage`    | present PTE              | +1 page mapcount, +1 ref, RSS by `mm_counter`     |
// | `AddressSpace.mapCapturedPMD`     | present PMD leaf         | +1 entire mapcount, +1 ref, RSS, deposited table  |
// | `AddressSpace.mapCapturedHugetlb` | hugetlb leaf(s)          | +1 entire mapcount, +1 ref, hugetlb bytes         |
// | `AddressSpace.installCapturedSoftLeaf` | swap-format PTE     | swap: +1 slot count, swap RSS; migration: ref, RSS|
// | `Folio.addExternalMappings`       | —                        | +n page mapcount and refs (uncaptured mappers)    |
// | `Folio.setCapturedFlags` …        | —                        | folio / per-page flags                            |
// | `FileObject.placeCaptured`        | —                        | page-cache slot → PFN                             |
// | `PhysicalMemory.placeInSwapCache` | —                        | swap-cache slot → PFN                             |
//
// The zero page and PFN-mapped (no struct page) entries take no counts, as
// in the kernel. None of these take the mmap lock: they run on an address
// space nobody else can see yet. They are `package`: only the snapshot
// rebuild (a sibling module) places captured state.

extension PhysicalMemory {
    /// Places a folio of `order` at frame `pfn` (a captured PFN), charged to
    /// the budget as an allocation would be, so that it can later be freed
    /// like any other. Its refcount starts at `refcount`, its mapcounts at 0.
    /// Throws when a folio already covers any of its frames, when the frames
    /// reach the page-table frames, or when `pfn` is not aligned to the order.
    @discardableResult
    package func adoptFolio(pfn: UInt64, order: Int, node: Int, flags: PageFlags, refcount: Int) throws(ModelError) -> Folio {
        guard (0...18).contains(order) else { throw .invalidArgument(name: "order", reason: "\(order) is not in 0…18") }
        guard (0..<nodeCount).contains(node) else {
            throw .invalidArgument(name: "node", reason: "node \(node) does not exist (\(nodeCount) nodes)")
        }
        let n = UInt64(1) << UInt64(order)
        guard pfn & (n - 1) == 0 else { throw .unaligned(name: "folio pfn", value: pfn, alignment: n) }
        guard pfn + n <= PhysicalMemory.tableBasePFN else {
            throw .invalidArgument(name: "pfn", reason: "\(hex(pfn)) + \(n) reaches the page-table frames at \(hex(PhysicalMemory.tableBasePFN))")
        }
        for p in pfn..<(pfn + n) where folio(containing: p) != nil {
            throw .invalidArgument(name: "pfn", reason: "frame \(hex(p)) already belongs to a folio")
        }
        try chargeAdoptedFrames(pfn: pfn, order: order, node: node)
        return installFolio(pfn: pfn, order: order, node: node, flags: flags, refcount: refcount)
    }

    /// Records `folio` as the swap-cache folio of swap slot `offset` (type 0)
    /// and sets its swapcache flag; the slot is marked in use. The caller
    /// adds the references the cache holds.
    package func placeInSwapCache(_ folio: Folio, page: Int = 0, offset: UInt64) throws(ModelError) {
        try swap.adopt(Int(offset), references: 0)
        swap.setCache(Int(offset), folio.pfn + UInt64(page))
        folio.setFlags(.swapCache, true)
    }
}

extension Folio {
    /// Sets (or clears) folio-wide flags as captured (`kpageflags`).
    package func setCapturedFlags(_ f: PageFlags, _ on: Bool = true) { setFlags(f.subtracting(.perPage), on) }

    /// Sets (or clears) per-page flags (`PageAnonExclusive`, hwpoison) of page `index`.
    package func setCapturedPageFlags(_ index: Int, _ f: PageFlags, _ on: Bool = true) {
        precondition(index >= 0 && index < pageCount, "page index out of the folio")
        setPageFlags(index, f.intersection(.perPage), on)
    }

    /// Adds `count` PTE mappings of page `index` that live in address spaces
    /// the model does not hold (processes that were not captured), with the
    /// reference each mapping holds, so that `page_mapcount()` answers as the
    /// captured kernel did. They are never unmapped: the folio stays
    /// allocated.
    package func addExternalMappings(page index: Int, count: Int) {
        precondition(index >= 0 && index < pageCount, "page index out of the folio")
        guard count > 0 else { return }
        addPTEMappings(first: index, count: 1, delta: Int32(count))
        addRef(count)
    }

    /// Adds `count` references that no mapping holds (page cache, swap
    /// cache, the kernel's own reference on a special page).
    package func addCapturedReferences(_ count: Int) { if count != 0 { addRef(count) } }
}

extension FileObject {
    /// Places frame `pfn` in the page cache at page `index`. Returns the
    /// frame already cached there when it differs (nothing is changed then).
    @discardableResult
    package func placeCaptured(index: UInt64, pfn: UInt64) -> UInt64? {
        withCache { c in
            if let old = c[index], old != pfn { return old }
            c[index] = pfn
            return nil
        }
    }
}

extension AddressSpace {
    /// Inserts a VMA exactly as captured: `flags` are used as given (no
    /// may-flags, accounting or soft-dirty bits are implied). The range must
    /// be page aligned, free and below the user address limit (the gate
    /// VMA is not inserted: it comes with `AddressSpaceOptions.vsyscall`).
    @discardableResult
    package func insertCapturedVMA(start: UInt64, end: UInt64, flags: VMFlags, backing: VMABacking, name: String?,
                                  hugePageSize: UInt64 = 0, policy: MemoryPolicy = .default, protectionKey: Int = 0,
                                  hasAnonVMA: Bool = false) throws(ModelError) -> VMA {
        try checkAlive()
        guard start & Geometry.pageOffsetMask == 0 else { throw .unaligned(name: "start", value: start, alignment: Geometry.pageSize) }
        guard end & Geometry.pageOffsetMask == 0 else { throw .unaligned(name: "end", value: end, alignment: Geometry.pageSize) }
        guard start < end else { throw .invalidRange(start: start, end: end, reason: "start must be below end") }
        if end > geometry.userAddressLimit {
            throw .invalidRange(start: start, end: end, reason: "beyond the user address space (\(hex(geometry.userAddressLimit)))")
        }
        if flags.contains(.hugetlb) {
            guard geometry.hugetlbSizes.contains(hugePageSize) else {
                throw .invalidArgument(name: "huge page size", reason: "\(hugePageSize) is not a hugetlb size on \(geometry)")
            }
            guard start % hugePageSize == 0, end % hugePageSize == 0 else {
                throw .unaligned(name: "hugetlb mapping", value: start % hugePageSize == 0 ? end : start, alignment: hugePageSize)
            }
        }
        for v in vmas(intersecting: start, end) {
            throw .overlappingVMA(start: start, end: end, existingStart: v.start, existingEnd: v.end)
        }
        let vma = VMA(start: start, end: end, flags: flags, backing: backing, name: name, policy: policy,
                      protectionKey: protectionKey, hugePageSize: flags.contains(.hugetlb) ? hugePageSize : 0,
                      hasAnonVMA: hasAnonVMA)
        let i = firstVMAIndex(endingAfter: start)
        replaceVMAs(i..<i, with: [vma])
        return vma
    }

    /// The locked PTE table for `address`, allocating tables; throws when a
    /// leaf above the PTE level is in the way.
    private func capturedPTESlot(_ address: UInt64) throws(ModelError) -> (TableID, Int) {
        switch try lockPTETable(address, allocate: true) {
        case .table(let t, _):
            return (t, geometry.tableIndex(address, .pte))
        case .pmdEntry(let s), .blocked(let s), .absent(let s):
            throw .unsupported("\(hex(address)): a \(s.level) entry is in the way of a PTE")
        }
    }

    /// Maps page `pfn` at `address` with one PTE built from `attributes`
    /// (`set_pte_at()` after a fault, without the fault's choices). A normal
    /// page takes one PTE mapcount and one reference, and is charged to the
    /// RSS counter of its folio; the zero page, and a frame with no folio
    /// (a PFN mapping), take nothing — pass `.special` for them. The PTE
    /// must be none.
    package func mapCapturedPage(at address: UInt64, pfn: UInt64, attributes: LeafAttributes) throws(ModelError) {
        try checkAlive()
        let (t, i) = try capturedPTESlot(address)
        defer { arena.lock(t).unlock() }
        guard arena.entries(t)[i].load(ordering: .relaxed) == 0 else {
            throw .invalidArgument(name: "address", reason: "\(hex(address)) is already mapped")
        }
        var attrs = attributes
        if let page = memory.page(pfn), !page.folio.isZero, !attributes.contains(.special) {
            page.folio.addPTEMappings(first: page.index, count: 1, delta: 1)
            page.folio.addRef(1)
            if let c = rssCounter(for: page.folio) { addRSS(c, 1) }
        } else {
            attrs.insert(.special)
        }
        storePTE(t, i, layout.leaf(pfn: pfn, level: .pte, attrs))
    }

    /// Maps the whole PMD-sized `folio` at the PMD-aligned `address` with one
    /// PMD leaf: one entire mapcount and one reference, RSS for all its
    /// pages, and the PTE table the kernel deposits for anonymous THPs. The
    /// PMD must be none (no PTE table under it either).
    package func mapCapturedPMD(at address: UInt64, folio: Folio, attributes: LeafAttributes) throws(ModelError) {
        try checkAlive()
        guard address % AddressSpace.pmdSize == 0 else { throw .unaligned(name: "PMD address", value: address, alignment: AddressSpace.pmdSize) }
        guard folio.pageCount == AddressSpace.pmdPages else {
            throw .invalidArgument(name: "folio", reason: "order \(folio.order) is not PMD-sized")
        }
        guard hasEntries(at: .pmd), case .slot(let s) = try slot(address, at: .pmd, allocate: true) else {
            throw .unsupported("\(geometry) cannot map a PMD leaf at \(hex(address))")
        }
        let l = lock(forEntriesOf: s.table, level: .pmd)
        l.lock()
        defer { l.unlock() }
        guard load(s) == 0 else { throw .invalidArgument(name: "address", reason: "the PMD at \(hex(address)) is not none") }
        if folio.test(.hugeZeroPage) {
            store(s, layout.leaf(pfn: folio.pfn, level: .pmd, attributes.union(.special)))
        } else {
            folio.addEntireMapping(1)
            folio.addRef(1)
            if let c = rssCounter(for: folio) { addRSS(c, folio.pageCount) }
            store(s, layout.leaf(pfn: folio.pfn, level: .pmd, attributes))
        }
        if depositsTable(folio) { addTables(.pte, 1) }
    }

    /// Maps hugetlb `folio` at `address` in the hugetlb VMA there, with the
    /// leaves its size needs (PMD, PUD, or 16 contiguous entries on arm64):
    /// one entire mapcount, one reference, and the hugetlb usage.
    package func mapCapturedHugetlb(at address: UInt64, folio: Folio, attributes: LeafAttributes) throws(ModelError) {
        try checkAlive()
        guard let vma = vma(containing: address), vma.isHugetlb else {
            throw .wrongVMAKind(address: address, reason: "not a hugetlb VMA")
        }
        let size = vma.hugePageSize
        guard address % size == 0 else { throw .unaligned(name: "hugetlb address", value: address, alignment: size) }
        guard folio.size == size else {
            throw .invalidArgument(name: "folio", reason: "\(folio.size) bytes, the VMA's huge pages are \(size)")
        }
        let (level, count) = hugetlbEntryShape(forSize: size)
        let s: EntrySlot
        if level == .pte {
            let (t, i) = try capturedPTESlot(address)
            arena.lock(t).unlock()
            s = EntrySlot(t, i, .pte)
        } else {
            guard case .slot(let x) = try slot(address, at: level, allocate: true) else {
                throw .unsupported("no \(level) slot for \(hex(address))")
            }
            s = x
        }
        let l = count > 1 || level == .pud ? pageTableLock.ref : lock(forEntriesOf: s.table, level: level)
        l.lock()
        defer { l.unlock() }
        for k in 0..<count where load(EntrySlot(s.table, s.index + k, level)) != 0 {
            throw .invalidArgument(name: "address", reason: "\(hex(address)) is already mapped")
        }
        folio.addEntireMapping(1)
        folio.addRef(1)
        var attrs = attributes
        if count > 1 { attrs.insert(.contiguous) }
        let step = UInt64(1) << UInt64(geometry.shift(level) - 12)
        for k in 0..<count {
            store(EntrySlot(s.table, s.index + k, level), layout.leaf(pfn: folio.pfn + UInt64(k) * step, level: level, attrs))
        }
        addHugetlb(Int(size))
    }

    /// Writes the swap-format PTE `entry` at `address` (must be none):
    /// - a swap entry raises its slot's count by one and the swap RSS
    ///   (only swap type 0, the model's one device, is accepted);
    /// - a migration entry holds a reference on its folio and keeps the
    ///   RSS it had, as the kernel's unmap-for-migration does;
    /// - a marker (guard, uffd-wp, poisoned) and a hwpoison entry take nothing.
    /// Device-private and device-exclusive entries are refused: the capture
    /// cannot tell their device pages.
    package func installCapturedSoftLeaf(at address: UInt64, _ entry: SoftLeafEntry) throws(ModelError) {
        try checkAlive()
        switch entry.leaf {
        case .swap(let s):
            guard s.type == 0 else { throw .unsupported("swap type \(s.type): the model has one swap device (type 0)") }
        case .devicePrivate, .deviceExclusive:
            throw .unsupported("device entries cannot be rebuilt")
        case .migration(_, let pfn, _, _):
            guard memory.folio(containing: pfn) != nil else {
                throw .invalidArgument(name: "pfn", reason: "migration entry for \(hex(pfn)), which has no folio")
            }
        case .marker, .hwpoison:
            break
        }
        let raw = try entry.encode(layout)
        let (t, i) = try capturedPTESlot(address)
        defer { arena.lock(t).unlock() }
        guard arena.entries(t)[i].load(ordering: .relaxed) == 0 else {
            throw .invalidArgument(name: "address", reason: "\(hex(address)) is already mapped")
        }
        switch entry.leaf {
        case .swap(let s):
            try memory.swap.adopt(Int(s.offset), references: 1)
            addRSS(.swapEntries, 1)
        case .migration(_, let pfn, _, _):
            let f = memory.folio(containing: pfn)!
            f.addRef(1)
            if let c = rssCounter(for: f) { addRSS(c, 1) }
        default:
            break
        }
        storePTE(t, i, raw)
    }
}
