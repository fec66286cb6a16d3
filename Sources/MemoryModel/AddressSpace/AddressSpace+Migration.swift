import Synchronization

extension AddressSpace {
    /// Migrates the folios mapped wholly inside `[start, end)` to `node`
    /// (`migrate_pages()`): migration entries replace every mapping (in the
    /// fork family for anonymous folios), a new folio takes the contents and
    /// flags, and the entries are restored onto it.
    public func migrate(_ start: UInt64, _ end: UInt64, toNode node: Int) throws(ModelError) {
        guard (0..<memory.nodeCount).contains(node) else {
            throw .invalidArgument(name: "node", reason: "node \(node) does not exist (\(memory.nodeCount) nodes)")
        }
        try checkAlive()
        try withMmapReadLock { (_) throws(ModelError) in
            try forEachLockedFolio(try migratableFolios(start, end)) { (folio, address) throws(ModelError) in
                try moveLockedFolio(folio, at: address, toNode: node, flags: folio.flags)
            }
        }
    }

    /// Installs migration entries for the folios of `[start, end)` and leaves
    /// them (a migration in flight, as a walker would meet it).
    public func startMigration(_ start: UInt64, _ end: UInt64) throws(ModelError) {
        try checkAlive()
        try withMmapReadLock { (_) throws(ModelError) in
            try forEachLockedFolio(try migratableFolios(start, end)) { (folio, address) throws(ModelError) in
                try installMigrationEntries(folio, at: address)
            }
        }
    }

    /// Restores the migration entries of `[start, end)` onto their original
    /// folios (`remove_migration_ptes()` after a failed migration).
    public func finishMigration(_ start: UInt64, _ end: UInt64) throws(ModelError) {
        try checkAlive()
        try withMmapReadLock { (_) throws(ModelError) in
            var done = Set<UInt64>()
            for vma in try coveredVMAs(start, end, operation: "migration") {
                var found: [(Folio, UInt64)] = []
                try forEachPTE(max(start, vma.start), min(end, vma.end), pmd: { (s, a, _) throws(ModelError) -> PMDDecision in
                    if case .migration(_, let pfn, _, _)? = (self.load(s) == 0 ? nil : SoftLeafEntry(decoding: self.load(s), layout: self.layout).leaf),
                       !self.layout.isPresent(self.load(s), .pmd), let f = self.memory.folio(containing: pfn) {
                        found.append((f, a))
                    }
                    return .skip
                }) { (t, i, a) throws(ModelError) in
                    let w = arena.entries(t)[i].load(ordering: .relaxed)
                    guard w != 0, !layout.isPresent(w, .pte),
                          case .migration(_, let pfn, _, _) = SoftLeafEntry(decoding: w, layout: layout).leaf,
                          let page = memory.page(pfn) else { return }
                    found.append((page.folio, a - UInt64(page.index) * Geometry.pageSize))
                }
                for (f, a) in found where done.insert(f.pfn).inserted {
                    try removeMigrationEntries(f, at: a, onto: f)
                }
            }
        }
    }

    /// Runs `body` on each folio (given with a reference) under its folio
    /// lock, if it is still mapped and not in the swap cache, then puts the
    /// reference.
    private func forEachLockedFolio(_ folios: [(Folio, UInt64)],
                                    _ body: (Folio, UInt64) throws(ModelError) -> Void) throws(ModelError) {
        var failure: ModelError?
        for (folio, address) in folios {
            if failure == nil {
                folio.lock()
                if folio.isMapped && !folio.test(.swapCache) {
                    do throws(ModelError) { try body(folio, address) } catch { failure = error }
                }
                folio.unlock()
            }
            memory.put(folio)
        }
        if let failure { throw failure }
    }

    /// Folios that may migrate: normal (not zero, KSM, hugetlb or device)
    /// folios mapped wholly inside the range, each with a reference.
    private func migratableFolios(_ start: UInt64, _ end: UInt64) throws(ModelError) -> [(Folio, UInt64)] {
        var out: [(Folio, UInt64)] = []
        for vma in try coveredVMAs(start, end, operation: "migrate") {
            guard !vma.isHugetlb, !vma.isPFNMap else {
                throw .wrongVMAKind(address: vma.start, reason: "migration of hugetlb or PFN-mapped memory is not modelled")
            }
            let s = max(start, vma.start), e = min(end, vma.end)
            out += try anonFoliosFullyInside(vma, s, e) { !$0.isKSM && !$0.test(.zoneDevice) && !$0.test(.swapCache) }
            // File folios: only where this process holds every mapping.
            try forEachPTE(s, e, pmd: { _, _, _ in .skip }) { (t, i, a) throws(ModelError) in
                let w = arena.entries(t)[i].load(ordering: .relaxed)
                guard layout.isPresent(w, .pte), !layout.isSpecialPTE(w), let page = memory.page(layout.pfn(w)),
                      !page.folio.isAnon, !page.folio.isLarge, page.folio.mapcount == 1,
                      page.folio.tryGet() else { return }
                out.append((page.folio, a))
            }
        }
        return out
    }

    /// The migration entry kind for a present mapping (`try_to_migrate_one()`).
    private func migrationKind(_ w: UInt64, exclusive: Bool) -> MigrationKind {
        w & layout.write != 0 ? .write : (exclusive ? .readExclusive : .read)
    }

    /// Replaces every mapping of `folio` by migration entries; the folio
    /// keeps one reference per entry.
    func installMigrationEntries(_ folio: Folio, at address: UInt64) throws(ModelError) {
        let walk = beginRmapWalk(folio)
        defer { walk.end() }
        for mm in walk.spaces {
            // A PMD mapping becomes one PMD migration entry.
            if folio.order == 9, address % AddressSpace.pmdSize == 0, mm.hasEntries(at: .pmd),
               case .slot(let s)? = try? mm.slot(address, at: .pmd, allocate: false) {
                let l = mm.lock(forEntriesOf: s.table, level: .pmd)
                l.lock()
                let w = mm.load(s)
                if mm.layout.isPresent(w, .pmd) && mm.layout.isLeaf(w, .pmd) && mm.layout.pfn(w) == folio.pfn {
                    var bits: SwapPTEBits = []
                    if w & mm.layout.softDirty != 0 { bits.insert(.softDirty) }
                    if w & mm.layout.uffdWP != 0 { bits.insert(.uffdWP) }
                    let kind = migrationKind(w, exclusive: folio.pageFlags(0).contains(.anonExclusive))
                    let entry = SoftLeafEntry(.migration(kind, pfn: folio.pfn, young: w & mm.layout.young != 0,
                                                         dirty: mm.layout.isDirtyPTE(w)), bits: bits)
                    do { mm.store(s, try entry.encode(mm.layout)) } catch { l.unlock(); throw error }
                    folio.addEntireMapping(-1)
                    // The entry kind now carries exclusivity (try_to_migrate_one()).
                    if folio.isAnon { folio.setPageFlags(0, .anonExclusive, false) }
                }
                l.unlock()
            }
            for k in 0..<folio.pageCount {
                try withPTEMapping(in: mm, address + UInt64(k) * Geometry.pageSize, pfn: folio.pfn + UInt64(k)) { (t, i, w) throws(ModelError) in
                    var bits: SwapPTEBits = []
                    if w & mm.layout.softDirty != 0 { bits.insert(.softDirty) }
                    if w & mm.layout.uffdWP != 0 { bits.insert(.uffdWP) }
                    let kind = migrationKind(w, exclusive: folio.pageFlags(k).contains(.anonExclusive))
                    let entry = SoftLeafEntry(.migration(kind, pfn: folio.pfn + UInt64(k), young: w & mm.layout.young != 0,
                                                         dirty: mm.layout.isDirtyPTE(w)), bits: bits)
                    mm.storePTE(t, i, try entry.encode(mm.layout))
                    folio.addPTEMappings(first: k, count: 1, delta: -1)
                    if folio.isAnon { folio.setPageFlags(k, .anonExclusive, false) }
                }
            }
        }
    }

    /// Turns the migration entries naming `folio` back into mappings of
    /// `target` (the same folio, or its copy), moving references and page
    /// cache slots, and frees `folio` when it was replaced.
    func removeMigrationEntries(_ folio: Folio, at address: UInt64, onto target: Folio) throws(ModelError) {
        let walk = beginRmapWalk(folio)
        defer { walk.end() }
        let moving = folio != target
        for mm in walk.spaces {
            guard let vma = mm.vma(containing: address) else { continue }
            let attrsFor = { (kind: MigrationKind, young: Bool, dirty: Bool, bits: SwapPTEBits) -> LeafAttributes in
                var a: LeafAttributes = [.user]
                if vma.flags.contains(.exec) { a.insert(.executable) }
                if kind == .write { a.insert(.writable) }
                if young { a.insert(.young) }
                if dirty { a.insert(.dirty) }
                if bits.contains(.softDirty) { a.insert(.softDirty) }
                if bits.contains(.uffdWP) { a.insert(.uffdWP) }
                return a
            }
            if folio.order == 9, address % AddressSpace.pmdSize == 0, mm.hasEntries(at: .pmd),
               case .slot(let s)? = try? mm.slot(address, at: .pmd, allocate: false) {
                let l = mm.lock(forEntriesOf: s.table, level: .pmd)
                l.lock()
                let w = mm.load(s)
                if w != 0 && !mm.layout.isPresent(w, .pmd) {
                    let leaf = SoftLeafEntry(decoding: w, layout: mm.layout)
                    if case .migration(let kind, let pfn, let young, let dirty) = leaf.leaf, pfn == folio.pfn {
                        mm.store(s, mm.layout.leaf(pfn: target.pfn, level: .pmd, attrsFor(kind, young, dirty, leaf.bits)))
                        target.addEntireMapping(1)
                        if kind != .read && folio.isAnon { target.setPageFlags(0, .anonExclusive, true) }
                        if moving { target.addRef(1); memory.put(folio) }
                    }
                }
                l.unlock()
            }
            var a = address
            let end = address + folio.size
            while a < end {
                let next = geometry.entryEnd(a, at: .pmd, limit: end)
                if case .table(let t, _) = try mm.lockPTETable(a, allocate: false) {
                    var b = a
                    while b < next {
                        let i = mm.geometry.tableIndex(b, .pte)
                        let w = mm.arena.entries(t)[i].load(ordering: .relaxed)
                        let k = Int((b - address) >> Geometry.pageShift)
                        if w != 0 && !mm.layout.isPresent(w, .pte) {
                            let leaf = SoftLeafEntry(decoding: w, layout: mm.layout)
                            if case .migration(let kind, let pfn, let young, let dirty) = leaf.leaf, pfn == folio.pfn + UInt64(k) {
                                mm.storePTE(t, i, mm.layout.leaf(pfn: target.pfn + UInt64(k), level: .pte,
                                                                 attrsFor(kind, young, dirty, leaf.bits)))
                                target.addPTEMappings(first: k, count: 1, delta: 1)
                                if kind != .read && folio.isAnon { target.setPageFlags(k, .anonExclusive, true) }
                                if moving { target.addRef(1); memory.put(folio) }
                            }
                        }
                        b += Geometry.pageSize
                    }
                    mm.arena.lock(t).unlock()
                }
                a = next
            }
        }
        guard moving else { return }
        // Page-cache references move with the folio.
        if let vma = vma(containing: address), let file = vma.file, !folio.isAnon {
            let index = vma.pageIndex(address)
            file.withCache { c in
                for k in 0..<folio.pageCount where c[index + UInt64(k)] == folio.pfn + UInt64(k) {
                    c[index + UInt64(k)] = target.pfn + UInt64(k)
                    target.addRef(1)
                    memory.put(folio)
                }
            }
        }
    }
}
