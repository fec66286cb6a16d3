import Synchronization

extension AddressSpace {
    /// Whether dirtying sets the soft-dirty bit here.
    var tracksSoftDirty: Bool { options.softDirty && layout.supportsSoftDirty }

    /// The NUMA node a new folio for `address` in `vma` comes from
    /// (`policy_node()`; interleave by page index).
    func node(for vma: VMA, _ address: UInt64) -> Int {
        let n: Int
        switch vma.policy {
        case .default, .local: n = 0
        case .preferred(let p): n = p
        case .bind(let ns): n = ns.first ?? 0
        case .interleave(let ns), .weightedInterleave(let ns):
            n = ns.isEmpty ? 0 : ns[Int((address >> Geometry.pageShift) % UInt64(ns.count))]
        }
        return min(max(n, 0), memory.nodeCount - 1)
    }

    /// The attributes of a leaf the fault handler installs (`mk_pte()` with
    /// `vm_page_prot`, then `pte_mkyoung`/`pte_mkdirty`/`maybe_mkwrite`).
    @inline(__always)
    func faultAttributes(_ vma: VMA, write: Bool, writable: Bool) -> LeafAttributes {
        var a: LeafAttributes = [.user, .young]
        if vma.flags.contains(.exec) { a.insert(.executable) }
        if writable && vma.flags.contains(.write) { a.insert(.writable) }
        if write {
            a.insert(.dirty)
            if tracksSoftDirty { a.insert(.softDirty) }
        }
        return a
    }

    /// Faults `[start, end)` in as an access would (`handle_mm_fault()` for
    /// every page): anonymous reads map the zero page, writes allocate or
    /// break COW, file pages come from the page cache, swap entries are
    /// swapped in, hugetlb VMAs get huge pages. Guard and poisoned markers,
    /// hwpoison and migration entries are left alone (the access would
    /// signal or wait). Each VMA is faulted under its VMA lock, without the
    /// mmap lock, unless a writer holds it (then under the mmap lock for
    /// read, once the writer is done). A range not wholly mapped, or over
    /// the memory budget, fails before any page is touched.
    public func fault(_ start: UInt64, _ end: UInt64, write: Bool) throws(ModelError) {
        try checkAlive()
        let covered = try coveredVMAsLockless(start, end, operation: "fault")
        try checkPopulateBudget(covered[...], start, end, write: write, kind: .fault)
        var a = start
        while a < end {
            a = try withFaultVMA(at: a) { (vma) throws(ModelError) -> UInt64 in
                let e = min(end, vma.end)
                try faultVMA(vma, a, e, write: write)
                return e
            }
        }
    }

    /// Faults `[start, end)` of one VMA, whose lock (VMA or mmap) is held.
    private func faultVMA(_ vma: VMA, _ s: UInt64, _ e: UInt64, write: Bool) throws(ModelError) {
        if write && !vma.flags.contains(.write) {
            throw .wrongVMAKind(address: s, reason: "write fault on a VMA without write permission")
        }
        if !vma.flags.contains(.read) && !vma.flags.contains(.write) && !vma.flags.contains(.exec) {
            throw .wrongVMAKind(address: s, reason: "access to a PROT_NONE VMA")
        }
        if vma.isHugetlb { try populateHugetlbLocked(vma, s, e, write: write); return }
        if vma.flags.contains(.pfnMap) || vma.flags.contains(.mixedMap) { return }
        try faultPTEs(vma, s, e, write: write)
    }

    /// An access to the populated pages of `[start, end)` only: present
    /// entries become young (and dirty, or copied, on a write), as the
    /// hardware and `do_wp_page()` would; none and non-present entries are
    /// left alone. Locks as `fault` does.
    public func access(_ start: UInt64, _ end: UInt64, write: Bool) throws(ModelError) {
        try checkAlive()
        _ = try coveredVMAsLockless(start, end, operation: "touch")
        var a = start
        while a < end {
            a = try withFaultVMA(at: a) { (vma) throws(ModelError) -> UInt64 in
                let s = a, e = min(end, vma.end)
                if write && !vma.flags.contains(.write) {
                    throw .wrongVMAKind(address: vma.start, reason: "write access to a VMA without write permission")
                }
                if vma.isHugetlb || vma.isPFNMap { return e }
                try forEachPTE(s, e, pmd: { (s, a, _) throws(ModelError) -> PMDDecision in
                    _ = try self.faultPMD(vma, s, a, write: write)
                    return .skip
                }) { (t, i, a) throws(ModelError) in
                    let w = arena.entries(t)[i].load(ordering: .relaxed)
                    if layout.isPresent(w, .pte) { try faultPTE(vma, t, i, a, write: write) }
                }
                return e
            }
        }
    }

    /// Faults PTE-level pages of one VMA.
    func faultPTEs(_ vma: VMA, _ start: UInt64, _ end: UInt64, write: Bool) throws(ModelError) {
        if vma.isAnonymous && write { vma.hasAnonVMA = true }
        if vma.isPrivate && !vma.isAnonymous && write { vma.hasAnonVMA = true }
        var a = start
        while a < end {
            let next = geometry.entryEnd(a, at: .pmd, limit: end)
            switch try lockPTETable(a, allocate: true) {
            case .table(let t, _):
                defer { arena.lock(t).unlock() }
                try faultTable(vma, t, a, next, write: write)
            case .pmdEntry(let s):
                // A PMD leaf: an access touches it, a write to a read-only
                // one splits and breaks COW per page.
                if try faultPMD(vma, s, a, write: write) { a = next }
                continue
            case .blocked, .absent:
                throw .allocationFailed("no page table for \(hex(a))")
            }
            a = next
        }
    }

    /// Faults every page of `[start, end)` in PTE table `t` (locked).
    private func faultTable(_ vma: VMA, _ t: TableID, _ start: UInt64, _ end: UInt64, write: Bool) throws(ModelError) {
        let e = arena.entries(t)
        let first = geometry.tableIndex(start, .pte)
        let count = Int((end - start) >> Geometry.pageShift)
        // Populated entries first, one by one.
        for i in first..<(first + count) where e[i].load(ordering: .relaxed) != 0 {
            try faultPTE(vma, t, i, start + UInt64(i - first) << Geometry.pageShift, write: write)
        }
        guard vma.isAnonymous && write else {
            // The none entries as they were before any fault: one fault's
            // fault-around may map the next ones, which the access then
            // finds present (and makes young).
            let none = (first..<(first + count)).filter { e[$0].load(ordering: .relaxed) == 0 }
            for i in none {
                try faultPTE(vma, t, i, start + UInt64(i - first) << Geometry.pageShift, write: write)
            }
            return
        }
        // Fast path: none PTEs of private anonymous memory written for the
        // first time get their folios from one allocator call.
        var none = 0
        for i in first..<(first + count) where e[i].load(ordering: .relaxed) == 0 { none += 1 }
        guard none > 0 else { return }
        let nid = node(for: vma, start)
        let pfns: [UInt64]
        if case .interleave = vma.policy {
            for i in first..<(first + count) where e[i].load(ordering: .relaxed) == 0 {
                try faultPTE(vma, t, i, start + UInt64(i - first) << Geometry.pageShift, write: write)
            }
            return
        } else {
            pfns = try memory.reserveFrames(order: 0, node: nid, count: none)
        }
        var k = 0
        let pte0 = layout.leaf(pfn: 0, level: .pte, faultAttributes(vma, write: true, writable: true))
        // mlock_new_folio() in a VM_LOCKED VMA, as `mlockIfLocked`.
        let locked: PageFlags = vma.flags.contains(.locked) && vma.flags.isDisjoint(with: AddressSpace.specialFlags)
            ? [.mlocked, .unevictable] : []
        for i in first..<(first + count) where e[i].load(ordering: .relaxed) == 0 {
            let f = memory.installFolio(pfn: pfns[k], order: 0, node: nid,
                                        flags: locked.union([.anon, .swapBacked, .uptodate, .lru, .anonExclusive]), refcount: 1)
            k += 1
            f.head[RecordWord.mapcount].store(1, ordering: .relaxed)
            e[i].store(pte0 | (f.pfn << Geometry.pageShift), ordering: .releasing)
        }
        arena.adjustUsed(t, none)
        addRSS(.anon, none)
    }

    /// One page's fault on PTE `i` of locked table `t`.
    func faultPTE(_ vma: VMA, _ t: TableID, _ i: Int, _ address: UInt64, write: Bool) throws(ModelError) {
        let old = arena.entries(t)[i].load(ordering: .relaxed)
        if old == 0 {
            try faultNone(vma, t, i, address, write: write, uffdWP: false)
            return
        }
        if !layout.isPresent(old, .pte) {
            let leaf = SoftLeafEntry(decoding: old, layout: layout)
            switch leaf.leaf {
            case .marker(let m):
                if m.failsFaults { return }
                storePTE(t, i, 0)
                try faultNone(vma, t, i, address, write: write, uffdWP: true)
            case .swap:
                try swapInPTE(vma, t, i, address, write: write)
                // do_swap_page() finishes a write fault with do_wp_page(),
                // once the entry is mapped: a swap-in that met a busy folio
                // left it for the fault to be retried, and recursing into
                // the same swap entry with the PTL held would spin here (or
                // deadlock against the holder, which may need this PTL).
                if write && layout.isPresent(arena.entries(t)[i].load(ordering: .relaxed), .pte) {
                    try faultPTE(vma, t, i, address, write: true)
                }
            case .devicePrivate(_, let pfn):
                try restoreDevicePrivate(vma, t, i, address, pfn: pfn, bits: leaf.bits)
                if write { try faultPTE(vma, t, i, address, write: true) }
            case .deviceExclusive(let pfn):
                restoreDeviceExclusive(vma, t, i, pfn: pfn, bits: leaf.bits)
                if write { try faultPTE(vma, t, i, address, write: true) }
            case .migration, .hwpoison:
                return
            }
            return
        }
        // Present.
        let pfn = layout.pfn(old)
        let writable = old & layout.write != 0
        if write && !writable {
            try writeProtectFault(vma, t, i, address, old)
            return
        }
        var new = old | layout.young
        if write {
            new = layout.markDirty(new)
            if tracksSoftDirty { new |= layout.softDirty }
        }
        ptepSetAccessFlags(t, i, new)
        _ = pfn
    }

    /// Fault on a none PTE (`do_anonymous_page()`, `do_read_fault()`,
    /// `do_cow_fault()`, `do_shared_fault()`).
    private func faultNone(_ vma: VMA, _ t: TableID, _ i: Int, _ address: UInt64, write: Bool, uffdWP: Bool) throws(ModelError) {
        var attrs: LeafAttributes
        if vma.isAnonymous {
            if !write {
                attrs = [.user, .young, .special]
                if vma.flags.contains(.exec) { attrs.insert(.executable) }
                if uffdWP { attrs.insert(.uffdWP) }
                storePTE(t, i, layout.leaf(pfn: memory.zeroPage.pfn, level: .pte, attrs))
                return
            }
            let f = try memory.allocateFolio(order: 0, node: node(for: vma, address),
                                             flags: [.anon, .swapBacked, .uptodate, .lru])
            attrs = faultAttributes(vma, write: true, writable: !uffdWP)
            if uffdWP { attrs.insert(.uffdWP) }
            mapNewAnon(t, i, f, attrs)
            mlockIfLocked(vma, f)
            vma.hasAnonVMA = true
            return
        }
        guard let file = vma.file else { return }
        let cached = try pageCacheFolio(file, vma.pageIndex(address), node: node(for: vma, address))
        if vma.isPrivate && write {
            // COW of a file page into a new anonymous page.
            let f = try memory.allocateFolio(order: 0, node: node(for: vma, address),
                                             flags: [.anon, .swapBacked, .uptodate, .lru])
            attrs = faultAttributes(vma, write: true, writable: !uffdWP)
            if uffdWP { attrs.insert(.uffdWP) }
            mapNewAnon(t, i, f, attrs)
            mlockIfLocked(vma, f)
            vma.hasAnonVMA = true
            return
        }
        // Read faults of private mappings and all faults of shared ones map
        // the page-cache page. Shared file mappings are write-notified (read
        // faults map read-only); shmem has no dirty accounting.
        let writable = vma.isShared && (write || cached.folio.test(.swapBacked))
        attrs = faultAttributes(vma, write: write, writable: writable && !uffdWP)
        if uffdWP { attrs.insert(.uffdWP) }
        if write { cached.folio.setFlags(.dirty, true) }
        mapPage(t, i, cached, attrs)
        mlockIfLocked(vma, cached.folio)
        if !write { faultAround(vma, t, i, address, file) }
    }

    /// Fault-around (`do_fault_around()`, `filemap_map_pages()`): a read
    /// fault also maps the file's cached pages in the aligned window around
    /// it, within the VMA and the PTE table. Only none entries are filled
    /// (markers and swap entries stay), and only with pages that are up to
    /// date, not poisoned and not locked by someone else. Userfaultfd
    /// write-protect and minor VMAs do without, so every fault reaches
    /// user space. arm64 maps the prefaulted pages old, x86 young.
    private func faultAround(_ vma: VMA, _ t: TableID, _ i: Int, _ address: UInt64, _ file: FileObject) {
        guard vma.flags.isDisjoint(with: [.uffdWP, .uffdMinor]) else { return }
        let n = options.faultAroundPages(tableEntries: Geometry.entriesPerTable)
        guard n > 1 else { return }
        let offset = Int((address - vma.start) >> Geometry.pageShift)
        let vmaPages = Int(vma.size >> Geometry.pageShift)
        let from = max(i & ~(n - 1), i - min(i, offset))
        let to = min(from + n, Geometry.entriesPerTable, i - offset + vmaPages)
        let e = arena.entries(t)
        for j in from..<to where j != i && e[j].load(ordering: .relaxed) == 0 {
            let a = j < i ? address - UInt64(i - j) << Geometry.pageShift : address + UInt64(j - i) << Geometry.pageShift
            guard let pfn = file.cachedPFN(vma.pageIndex(a)), let page = memory.page(pfn) else { continue }
            let f = page.folio
            guard f.test(.uptodate), !page.isHWPoison, f.tryLock() else { continue }
            defer { f.unlock() }
            var attrs = faultAttributes(vma, write: false, writable: vma.isShared && f.test(.swapBacked))
            if layout.architecture == .arm64 { attrs.remove(.young) }   // arch_wants_old_prefaulted_pte()
            mapPage(t, j, page, attrs)
            mlockIfLocked(vma, f)
        }
    }

    /// `mlock_vma_folio()` and `mlock_new_folio()` as the fault path calls
    /// them: a small folio mapped into a VM_LOCKED (not VM_SPECIAL) VMA is
    /// mlocked; large ones are left to mlock's own walk, which mlocks them
    /// only when mapped whole.
    func mlockIfLocked(_ vma: VMA, _ folio: Folio) {
        guard !folio.isLarge, !folio.isZero, vma.flags.contains(.locked),
              vma.flags.isDisjoint(with: AddressSpace.specialFlags) else { return }
        folio.setFlags([.mlocked, .unevictable], true)
    }

    /// Maps a fresh exclusive anonymous order-0 folio.
    @inline(__always)
    func mapNewAnon(_ t: TableID, _ i: Int, _ f: Folio, _ attrs: LeafAttributes) {
        f.addPTEMappings(first: 0, count: 1, delta: 1)
        f.setPageFlags(0, .anonExclusive, true)
        storePTE(t, i, layout.leaf(pfn: f.pfn, level: .pte, attrs))
        addRSS(.anon, 1)
    }

    /// Maps `page` with one new PTE, taking a reference and a mapcount.
    @inline(__always)
    func mapPage(_ t: TableID, _ i: Int, _ page: Page, _ attrs: LeafAttributes) {
        page.folio.addPTEMappings(first: page.index, count: 1, delta: 1)
        page.folio.addRef(1)
        storePTE(t, i, layout.leaf(pfn: page.pfn, level: .pte, attrs))
        if let c = rssCounter(for: page.folio) { addRSS(c, 1) }
    }

    /// Brings pages `indexes` of `file` into the page cache without mapping
    /// them, as `read(2)` or `write(2)` do (`filemap_read()`,
    /// `generic_perform_write()`); a later read fault finds them, and so
    /// does fault-around.
    public func cachePages(of file: FileObject, _ indexes: Range<UInt64>, node: Int = 0) throws(ModelError) {
        try checkAlive()
        for index in indexes { _ = try pageCacheFolio(file, index, node: node) }
    }

    /// Drops page `index` of `file` from the page cache when it is there,
    /// clean and mapped nowhere, as reclaim or `POSIX_FADV_DONTNEED` may do
    /// (`mapping_evict_folio()`); returns whether it was dropped. For a
    /// mirror following a kernel whose reclaim evicted the page on its own.
    @discardableResult
    public func evictCachedPage(of file: FileObject, _ index: UInt64) throws(ModelError) -> Bool {
        try checkAlive()
        guard let pfn = file.cachedPFN(index), let page = memory.page(pfn), !page.folio.isLarge,
              !page.folio.isMapped, !page.folio.test(.dirty) else { return false }
        file.setCached(index, nil)
        memory.put(page.folio)
        return true
    }

    /// The page-cache page of `file` at `index`, read in (allocated) if
    /// absent (`filemap_fault()`, `shmem_fault()`).
    func pageCacheFolio(_ file: FileObject, _ index: UInt64, node: Int) throws(ModelError) -> Page {
        if let pfn = file.cachedPFN(index), let p = memory.page(pfn) { return p }
        let flags: PageFlags = file.isShmem ? [.uptodate, .lru, .swapBacked] : [.uptodate, .lru, .mappedToDisk]
        let f = try memory.allocateFolio(order: 0, node: node, flags: flags, refcount: 1)
        var result = f.page(0)
        file.withCache { c in
            if let existing = c[index], let p = memory.page(existing) {
                result = p
            } else {
                c[index] = f.pfn
            }
        }
        if result.pfn != f.pfn { memory.put(f) }
        return result
    }

    /// A write to a present read-only PTE (`do_wp_page()`): reuse an
    /// exclusive anonymous page, make a shared mapping writable, or copy.
    private func writeProtectFault(_ vma: VMA, _ t: TableID, _ i: Int, _ address: UInt64, _ old: UInt64) throws(ModelError) {
        if old & layout.uffdWP != 0 { return }   // userfaultfd would handle it
        let pfn = layout.pfn(old)
        let page = memory.page(pfn)
        let dirtyBits = { (w: UInt64) -> UInt64 in
            var n = self.layout.markDirty(w | self.layout.write | self.layout.young)
            if self.tracksSoftDirty { n |= self.layout.softDirty }
            return n
        }
        if vma.isShared {
            if let page { page.folio.setFlags(.dirty, true) }
            ptepSetAccessFlags(t, i, dirtyBits(old))
            return
        }
        if let page, !page.folio.isZero, page.folio.isAnon, !page.folio.isKSM {
            let f = page.folio
            var reusable = page.isAnonExclusive
            if !reusable && f.mapcount == 1 && !f.isLarge {
                // wp_can_reuse_anon_folio(): a swap-cache reference does not
                // prevent reuse when the swap can be freed (folio_free_swap()).
                if f.test(.swapCache) && f.refcount == 2 && f.tryLock() {
                    memory.folioFreeSwap(f)
                    f.unlock()
                }
                reusable = f.refcount == 1
            }
            if reusable {
                f.setPageFlags(page.index, .anonExclusive, true)
                ptepSetAccessFlags(t, i, dirtyBits(old))
                return
            }
        }
        // Copy: a new exclusive anonymous page replaces the mapping.
        let newFolio = try memory.allocateFolio(order: 0, node: node(for: vma, address),
                                                flags: [.anon, .swapBacked, .uptodate, .lru])
        if let page, !(layout.isSpecialPTE(old) && page.folio.isZero) {
            unmapPage(page, old)
        }
        var attrs = faultAttributes(vma, write: true, writable: true)
        if old & layout.uffdWP != 0 { attrs.insert(.uffdWP) }
        storePTE(t, i, 0)
        mapNewAnon(t, i, newFolio, attrs)
        mlockIfLocked(vma, newFolio)
        vma.hasAnonVMA = true
    }

    /// Drops one PTE mapping of `page` (`folio_remove_rmap_pte()` plus the
    /// reference put and RSS), carrying a dirty PTE into the folio.
    @inline(__always)
    func unmapPage(_ page: Page, _ old: UInt64) {
        let f = page.folio
        if f.isZero { return }
        if layout.isDirtyPTE(old) && !f.isAnon { f.setFlags(.dirty, true) }
        f.addPTEMappings(first: page.index, count: 1, delta: -1)
        if let c = rssCounter(for: f) { addRSS(c, -1) }
        memory.put(f)
    }

    /// Faults a PMD-level entry for `address`; returns true when the whole
    /// PMD range was handled, false when the caller should retry as PTEs.
    func faultPMD(_ vma: VMA, _ s: EntrySlot, _ address: UInt64, write: Bool) throws(ModelError) -> Bool {
        let l = arena.lock(s.table)
        l.lock()
        let w = load(s)
        guard layout.isPresent(w, .pmd) else { l.unlock(); return true }   // PMD migration entry
        if write && w & layout.uffdWP != 0 { l.unlock(); return true }    // userfaultfd would handle it (wp_huge_pmd())
        if write && w & layout.write == 0, let f = memory.folio(containing: layout.pfn(w)),
           f.isAnon, !f.isKSM, f.pageFlags(0).contains(.anonExclusive) {
            // do_huge_pmd_wp_page() reuses an exclusive THP.
            var new = layout.markDirty(layout.makeWritable(w) | layout.young)
            if tracksSoftDirty { new |= layout.softDirty }
            entryPointer(s).pointee.store(new, ordering: .releasing)
            l.unlock()
            return true
        }
        if write && w & layout.write == 0, memory.folio(containing: layout.pfn(w))?.test(.hugeZeroPage) == true,
           let folio = try? memory.allocateFolio(order: 9, node: node(for: vma, address),
                                                 flags: [.anon, .swapBacked, .uptodate, .lru, .anonExclusive]) {
            // do_huge_zero_wp_pmd() (6.12+): a write to the huge zero PMD
            // maps a new THP in its place, keeping the deposited table;
            // only a failed allocation falls back to the split below.
            folio.addEntireMapping(1)
            store(s, layout.leaf(pfn: folio.pfn, level: .pmd, faultAttributes(vma, write: true, writable: true)))
            addRSS(.anon, AddressSpace.pmdPages)
            vma.hasAnonVMA = true
            l.unlock()
            return true
        }
        if write && w & layout.write == 0 {
            l.unlock()
            try splitHugePMD(at: s)       // COW of a THP happens per page after a split
            return false
        }
        var new = w | layout.young
        if write {
            new = layout.markDirty(new)
            if tracksSoftDirty { new |= layout.softDirty }
        }
        entryPointer(s).pointee.store(new, ordering: .releasing)
        l.unlock()
        return true
    }
}

extension EntryLayout {
    /// `pte_mkdirty()`.
    @inlinable
    package func markDirty(_ raw: UInt64) -> UInt64 {
        switch architecture {
        case .x86_64: return raw | (1 << 6)
        case .arm64: return (raw | dirty) & (raw & write != 0 ? ~readOnly : ~0)
        }
    }

    /// `pte_mkclean()`.
    @inlinable
    package func markClean(_ raw: UInt64) -> UInt64 {
        switch architecture {
        case .x86_64: return raw & ~dirty
        case .arm64: return (raw & ~dirty) | (raw & write != 0 ? readOnly : 0)
        }
    }

    /// `pte_wrprotect()`: clears write; arm64 keeps hardware dirt in the
    /// software dirty bit.
    @inlinable
    package func writeProtect(_ raw: UInt64) -> UInt64 {
        switch architecture {
        case .x86_64: return raw & ~write
        case .arm64:
            let hwDirty = raw & write != 0 && raw & readOnly == 0
            return (raw & ~write) | readOnly | (hwDirty ? dirty : 0)
        }
    }

    /// `pte_mkwrite()`.
    @inlinable
    package func makeWritable(_ raw: UInt64) -> UInt64 {
        switch architecture {
        case .x86_64: return raw | write
        case .arm64: return (raw | write) & (raw & dirty != 0 ? ~readOnly : ~0)
        }
    }

    @inlinable package func isDirtyPTE(_ raw: UInt64) -> Bool {
        raw & dirty != 0 || (readOnly != 0 && raw & write != 0 && raw & readOnly == 0)
    }
    @inlinable package func isSpecialPTE(_ raw: UInt64) -> Bool { raw & special != 0 }
}
