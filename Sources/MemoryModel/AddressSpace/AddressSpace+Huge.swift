import Synchronization

extension AddressSpace {
    static let pmdSize: UInt64 = 2 << 20
    static let pmdPages = 512

    /// Whether a folio's PMD mapping carries a deposited PTE table (anon THP
    /// and the huge zero folio: `pgtable_trans_huge_deposit()`).
    func depositsTable(_ folio: Folio) -> Bool { folio.isAnon || folio.test(.hugeZeroPage) }

    /// Leaf attributes read back from a PMD/PUD word, for re-use at PTE level.
    func attributesForSplit(_ w: UInt64, level: PageTableLevel) -> LeafAttributes {
        layout.attributes(of: w, level: level).subtracting(.contiguous)
    }

    /// Splits the PMD leaf (or PMD migration entry) at `s` into a PTE table
    /// mapping the same pages (`__split_huge_pmd()`); the folio stays large.
    package func splitHugePMD(at s: EntrySlot) throws(ModelError) {
        let l = lock(forEntriesOf: s.table, level: .pmd)
        let table = try arena.allocate(level: .pte)
        l.lock()
        defer { l.unlock() }
        let w = load(s)
        guard w != 0, !layout.isTable(w, .pmd) else { arena.free(table); return }
        let e = arena.entries(table)
        if !layout.isPresent(w, .pmd) {
            // A PMD migration entry becomes 512 PTE migration entries.
            let leaf = SoftLeafEntry(decoding: w, layout: layout)
            guard case .migration(let kind, let pfn, let young, let dirty) = leaf.leaf else {
                arena.free(table)
                throw .unsupported("splitting a non-present PMD entry \(leaf)")
            }
            for k in 0..<AddressSpace.pmdPages {
                let entry = SoftLeafEntry(.migration(kind, pfn: pfn + UInt64(k), young: young, dirty: dirty), bits: leaf.bits)
                e[k].store(try entry.encode(layout), ordering: .relaxed)
            }
            // The model's convention: one folio reference per migration
            // entry, as the entry's removal drops one for each.
            memory.folio(containing: pfn)?.addRef(AddressSpace.pmdPages - 1)
        } else {
            let pfn = layout.pfn(w)
            guard let folio = memory.folio(containing: pfn) else {
                arena.free(table)
                throw .unsupported("splitting a PMD leaf without a folio at \(hex(pfn))")
            }
            if folio.isHugetlb { arena.free(table); throw .unsupported("hugetlb PMDs cannot be split") }
            var attrs = attributesForSplit(w, level: .pmd)
            if folio.test(.hugeZeroPage) {
                attrs.insert(.special)
                attrs.remove(.writable)
                for k in 0..<AddressSpace.pmdPages {
                    e[k].store(layout.leaf(pfn: memory.zeroPage.pfn, level: .pte, attrs), ordering: .relaxed)
                }
            } else {
                let exclusive = folio.isAnon && folio.pageFlags(0).contains(.anonExclusive)
                // __split_huge_pmd_locked() maps the pages with one
                // set_ptes(), which on arm64 folds every aligned 64K block
                // (contpte_set_ptes()).
                if foldsContPTEs { attrs.insert(.contiguous) }
                for k in 0..<AddressSpace.pmdPages {
                    e[k].store(layout.leaf(pfn: pfn + UInt64(k), level: .pte, attrs), ordering: .relaxed)
                    if exclusive { folio.setPageFlags(k, .anonExclusive, true) }
                }
                folio.addEntireMapping(-1)
                folio.addPTEMappings(first: 0, count: AddressSpace.pmdPages, delta: 1)
                folio.addRef(AddressSpace.pmdPages - 1)
            }
        }
        arena.adjustUsed(table, AddressSpace.pmdPages)
        let depositUsed = layout.isPresent(w, .pmd)
            ? memory.folio(containing: layout.pfn(w)).map(depositsTable) ?? false : true
        if !depositUsed { addTables(.pte, 1) }
        entryPointer(s).pointee.store(layout.table(pfn: arena.pfn(of: table), user: !isKernel), ordering: .releasing)
    }

    /// Splits a PMD leaf that maps `address` without starting at it (VMA
    /// splits, partial zaps).
    func splitLeafStraddling(_ address: UInt64) throws(ModelError) {
        guard address % AddressSpace.pmdSize != 0, hasEntries(at: .pmd) else { return }
        guard case .slot(let s) = try slot(address, at: .pmd, allocate: false) else { return }
        let w = load(s)
        guard w != 0, !layout.isTable(w, .pmd) else { return }
        if layout.isPresent(w, .pmd), let f = memory.folio(containing: layout.pfn(w)), f.isHugetlb { return }
        try splitHugePMD(at: s)
    }

    /// Populates `[start, end)` of a private anonymous VMA with PMD THPs
    /// where a whole, empty, aligned PMD range is available
    /// (`do_huge_pmd_anonymous_page()`); elsewhere falls back to 4K faults.
    /// A read fault maps the huge zero folio when enabled.
    public func populateTHP(_ start: UInt64, _ end: UInt64, write: Bool = true) throws(ModelError) {
        try checkAlive()
        try withMmapReadLock { (_) throws(ModelError) in
            let covered = try coveredVMAs(start, end, operation: "thp")
            if covered.allSatisfy({ $0.isAnonymous && !$0.isHugetlb }) {
                try checkPopulateBudget(covered, start, end, write: write, kind: .thp)
            }
            for vma in covered {
                guard vma.isAnonymous, !vma.isHugetlb else {
                    throw .wrongVMAKind(address: vma.start, reason: "THP needs a private anonymous VMA")
                }
                if write && !vma.flags.contains(.write) {
                    throw .wrongVMAKind(address: vma.start, reason: "write fault on a VMA without write permission")
                }
                let s = max(start, vma.start), e = min(end, vma.end)
                var a = s
                while a < e {
                    let next = geometry.entryEnd(a, at: .pmd, limit: e)
                    if a % AddressSpace.pmdSize == 0 && next - a == AddressSpace.pmdSize,
                       try mapTHP(vma, a, write: write) {
                        a = next
                        continue
                    }
                    try faultPTEs(vma, a, next, write: write)
                    a = next
                }
            }
        }
    }

    /// Maps one PMD THP at `address` if the PMD is none; false otherwise.
    private func mapTHP(_ vma: VMA, _ address: UInt64, write: Bool) throws(ModelError) -> Bool {
        guard hasEntries(at: .pmd), case .slot(let s) = try slot(address, at: .pmd, allocate: true) else { return false }
        let l = lock(forEntriesOf: s.table, level: .pmd)
        l.lock()
        defer { l.unlock() }
        guard load(s) == 0 else { return false }
        if !write && options.useHugeZeroPage {
            var attrs: LeafAttributes = [.user, .young, .special]
            if vma.flags.contains(.exec) { attrs.insert(.executable) }
            store(s, layout.leaf(pfn: memory.hugeZeroFolio.pfn, level: .pmd, attrs))
            addTables(.pte, 1)
            return true
        }
        let folio = try memory.allocateFolio(order: 9, node: node(for: vma, address),
                                             flags: [.anon, .swapBacked, .uptodate, .lru, .anonExclusive])
        folio.addEntireMapping(1)
        let attrs = faultAttributes(vma, write: true, writable: true)
        store(s, layout.leaf(pfn: folio.pfn, level: .pmd, attrs))
        addRSS(.anon, AddressSpace.pmdPages)
        addTables(.pte, 1)
        vma.hasAnonVMA = true
        return true
    }

    /// Populates `[start, end)` of a private anonymous VMA with large folios
    /// of `order` (mTHP, 2…8) mapped by PTEs, where a whole aligned block of
    /// none PTEs is available (`alloc_anon_folio()`); other pages get 4K
    /// write faults. On arm64, aligned 64K blocks fold into contiguous PTEs.
    public func populateLargeFolios(_ start: UInt64, _ end: UInt64, order: Int) throws(ModelError) {
        try checkAlive()
        guard (2...8).contains(order) else {
            throw .invalidArgument(name: "order", reason: "mTHP orders are 2…8, not \(order)")
        }
        try withMmapReadLock { (_) throws(ModelError) in
            let covered = try coveredVMAs(start, end, operation: "mthp")
            if covered.allSatisfy({ $0.isAnonymous && !$0.isHugetlb && $0.flags.contains(.write) }) {
                try checkPopulateBudget(covered, start, end, write: true, kind: .largeFolios)
            }
            for vma in covered {
                guard vma.isAnonymous, !vma.isHugetlb, vma.flags.contains(.write) else {
                    throw .wrongVMAKind(address: vma.start, reason: "mTHP needs a writable private anonymous VMA")
                }
                vma.hasAnonVMA = true
                let s = max(start, vma.start), e = min(end, vma.end)
                let size = UInt64(Geometry.pageSize) << UInt64(order)
                var a = s
                while a < e {
                    let next = geometry.entryEnd(a, at: .pmd, limit: e)
                    switch try lockPTETable(a, allocate: true) {
                    case .table(let t, _):
                        defer { arena.lock(t).unlock() }
                        var b = a
                        while b < next {
                            if b % size == 0 && b + size <= next, try mapLargeFolio(vma, t, b, order: order) {
                                b += size
                            } else {
                                try faultPTE(vma, t, geometry.tableIndex(b, .pte), b, write: true)
                                b += Geometry.pageSize
                            }
                        }
                    case .pmdEntry:
                        break   // already mapped by a PMD
                    case .blocked, .absent:
                        throw .allocationFailed("no page table for \(hex(a))")
                    }
                    a = next
                }
            }
        }
    }

    /// Maps one large folio over none PTEs at `address` in locked table `t`.
    private func mapLargeFolio(_ vma: VMA, _ t: TableID, _ address: UInt64, order: Int) throws(ModelError) -> Bool {
        let e = arena.entries(t)
        let first = geometry.tableIndex(address, .pte)
        let n = 1 << order
        for i in first..<(first + n) where e[i].load(ordering: .relaxed) != 0 { return false }
        let folio = try memory.allocateFolio(order: order, node: node(for: vma, address),
                                             flags: [.anon, .swapBacked, .uptodate, .lru], refcount: n)
        folio.addPTEMappings(first: 0, count: n, delta: 1)
        for k in 0..<n { folio.setPageFlags(k, .anonExclusive, true) }
        setPTEs(t, first, pfn: folio.pfn, count: n, faultAttributes(vma, write: true, writable: true))
        addRSS(.anon, n)
        return true
    }

    /// Faults hugetlb pages into `[start, end)` of a hugetlb VMA
    /// (`hugetlb_fault()`): PMD, PUD, contiguous-PTE or contiguous-PMD
    /// leaves by the VMA's huge page size.
    public func populateHugetlb(_ start: UInt64, _ end: UInt64, write: Bool = true) throws(ModelError) {
        try checkAlive()
        try withMmapReadLock { (_) throws(ModelError) in
            let covered = try coveredVMAs(start, end, operation: "hugetlb")
            if covered.allSatisfy(\.isHugetlb) { try checkPopulateBudget(covered, start, end, write: write, kind: .hugetlb) }
            for vma in covered {
                guard vma.isHugetlb else { throw .wrongVMAKind(address: vma.start, reason: "not a hugetlb VMA") }
                try populateHugetlbLocked(vma, max(start, vma.start), min(end, vma.end), write: write)
            }
        }
    }

    /// How a hugetlb size is mapped: the entry level and how many entries.
    package func hugetlbEntryShape(forSize size: UInt64) -> (level: PageTableLevel, entries: Int) {
        switch size {
        case 64 << 10: return (.pte, 16)
        case 2 << 20: return (.pmd, 1)
        case 32 << 20: return (.pmd, 16)
        default: return (.pud, 1)
        }
    }

    func populateHugetlbLocked(_ vma: VMA, _ start: UInt64, _ end: UInt64, write: Bool) throws(ModelError) {
        let size = vma.hugePageSize
        guard start % size == 0, end % size == 0 else {
            throw .unaligned(name: "hugetlb range", value: start % size == 0 ? end : start, alignment: size)
        }
        if write && !vma.flags.contains(.write) {
            throw .wrongVMAKind(address: start, reason: "write fault on a VMA without write permission")
        }
        vma.hugetlbLock.lockRead()
        defer { vma.hugetlbLock.unlockRead() }
        let (level, count) = hugetlbEntryShape(forSize: size)
        let order = (size / Geometry.pageSize).trailingZeroBitCount
        var a = start
        while a < end {
            defer { a += size }
            let s: EntrySlot
            if level == .pte {
                guard case .table(let t, _) = try lockPTETable(a, allocate: true) else { continue }
                arena.lock(t).unlock()
                s = EntrySlot(t, geometry.tableIndex(a, .pte), .pte)
            } else {
                guard case .slot(let x) = try slot(a, at: level, allocate: true) else { continue }
                s = x
            }
            let l = hugePTELock(forEntriesOf: s.table, level: level)
            l.lock()
            defer { l.unlock() }
            guard load(s) == 0 else { continue }
            let folio: Folio
            var fresh = true
            if vma.isShared, let file = vma.file {
                let index = vma.pageIndex(a)
                if let pfn = file.cachedPFN(index), let f = memory.folio(containing: pfn) {
                    folio = f
                    fresh = false
                    folio.addRef(1)
                } else {
                    folio = try memory.allocateFolio(order: order, node: node(for: vma, a),
                                                     flags: [.hugetlb, .uptodate], refcount: 2)
                    file.setCached(index, folio.pfn)
                }
            } else {
                folio = try memory.allocateFolio(order: order, node: node(for: vma, a),
                                                 flags: [.hugetlb, .uptodate, .anon, .anonExclusive])
                vma.hasAnonVMA = true
            }
            _ = fresh
            folio.addEntireMapping(1)
            var attrs: LeafAttributes = [.user, .young]
            if vma.flags.contains(.exec) { attrs.insert(.executable) }
            let writable = vma.flags.contains(.write) && (vma.isShared || write)
            if writable { attrs.formUnion([.writable, .dirty]) }
            if write && tracksSoftDirty { attrs.insert(.softDirty) }
            if count > 1 { attrs.insert(.contiguous) }
            let step = UInt64(1) << UInt64(geometry.shift(level) - 12)
            for k in 0..<count {
                let slot = EntrySlot(s.table, s.index + k, level)
                store(slot, layout.leaf(pfn: folio.pfn + UInt64(k) * step, level: level, attrs))
            }
            addHugetlb(Int(size))
        }
    }
}

extension AddressSpace {
    /// Splits the PMD THP mapping `address` into 512 PTEs
    /// (`split_huge_pmd()`); the folio stays large. Throws when no PMD leaf
    /// maps the address.
    public func splitHugePMD(containing address: UInt64) throws(ModelError) {
        try checkAlive()
        try withMmapReadLock { (_) throws(ModelError) in
            guard let vma = vma(containing: address) else { throw .noVMA(address: address) }
            guard !vma.isHugetlb else { throw .wrongVMAKind(address: address, reason: "hugetlb PMDs cannot be split") }
            guard hasEntries(at: .pmd), case .slot(let s) = try slot(address, at: .pmd, allocate: false),
                  load(s) != 0, !layout.isTable(load(s), .pmd) else {
                throw .invalidArgument(name: "address", reason: "\(hex(address)) is not mapped by a PMD leaf")
            }
            try splitHugePMD(at: s)
        }
    }

    /// `MADV_COLLAPSE` on a private anonymous VMA: every 2M-aligned block
    /// wholly inside the range whose PTE table holds only none entries, zero
    /// pages and present anonymous pages is copied into a new PMD THP; the
    /// old pages are unmapped and the PTE table becomes the THP's deposited
    /// table. Blocks with swap or other non-present entries are refused.
    public func collapse(_ start: UInt64, _ end: UInt64) throws(ModelError) {
        try checkAlive()
        try withMmapReadLock { (_) throws(ModelError) in
            for vma in try coveredVMAs(start, end, operation: "collapse") {
                guard vma.isAnonymous, !vma.isHugetlb, vma.flags.contains(.write) else {
                    throw .wrongVMAKind(address: vma.start, reason: "collapse needs a writable private anonymous VMA")
                }
                var a = (max(start, vma.start) + AddressSpace.pmdSize - 1) & ~(AddressSpace.pmdSize - 1)
                while a + AddressSpace.pmdSize <= min(end, vma.end) {
                    try collapseBlock(vma, a)
                    a += AddressSpace.pmdSize
                }
            }
        }
    }

    private func collapseBlock(_ vma: VMA, _ address: UInt64) throws(ModelError) {
        guard hasEntries(at: .pmd), case .slot(let s) = try slot(address, at: .pmd, allocate: false) else { return }
        let pmdLock = lock(forEntriesOf: s.table, level: .pmd)
        pmdLock.lock()
        defer { pmdLock.unlock() }
        let w = load(s)
        guard layout.isTable(w, .pmd) else { return }
        let t = arena.uncheckedTable(atPFN: layout.pfn(w))
        let ptl = arena.lock(t)
        ptl.lock()
        let e = arena.entries(t)
        for i in 0..<AddressSpace.pmdPages {
            let x = e[i].load(ordering: .relaxed)
            if x != 0 && !layout.isPresent(x, .pte) {
                ptl.unlock()
                throw .unsupported("collapse at \(hex(address)): non-present entry at \(hex(address + UInt64(i) * Geometry.pageSize))")
            }
        }
        let folio: Folio
        do {
            folio = try memory.allocateFolio(order: 9, node: node(for: vma, address),
                                             flags: [.anon, .swapBacked, .uptodate, .lru, .anonExclusive])
        } catch { ptl.unlock(); throw error }
        for i in 0..<AddressSpace.pmdPages {
            let x = e[i].load(ordering: .relaxed)
            guard x != 0 else { continue }
            e[i].store(0, ordering: .relaxed)
            if !layout.isSpecialPTE(x), let p = memory.page(layout.pfn(x)) { unmapPage(p, x) }
        }
        ptl.unlock()
        folio.addEntireMapping(1)
        store(s, layout.leaf(pfn: folio.pfn, level: .pmd, faultAttributes(vma, write: true, writable: true)))
        arena.free(t)   // kept in the accounting as the deposited table
        addRSS(.anon, AddressSpace.pmdPages)
        vma.hasAnonVMA = true
    }
}
