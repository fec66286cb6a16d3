import MemoryModel

/// DAMOS's migrate actions on virtual addresses (`damos_va_migrate()`,
/// mm/damon/vaddr.c, with `damon_migrate_pages()` of mm/damon/ops-common.c).
extension DAMONVaddr {
    /// The folios one walk isolated, per migration list: each with the
    /// address of its first page, where the model's rmap finds its mappings.
    public struct MigrateLists {
        /// `priv.migration_lists`.
        public internal(set) var lists: [[(folio: Folio, firstPage: UInt64)]]
        init(count: Int) { lists = Array(repeating: [], count: count) }
    }

    /// `walk->private` of the migrate walk (`struct damos_va_migrate_private`).
    public struct MigratePrivate {
        var scheme: DAMOSScheme
        let dests: DAMOSMigrateDests
        public internal(set) var isolated: MigrateLists
    }

    /// Models `damos_va_migrate(target, region, scheme, ...)`: walks `range`
    /// under the mmap read lock, isolating from the LRU each folio that
    /// passes the scheme's filters (the young filter making its entry old)
    /// onto the list of its destination (`damos_va_migrate_dests_add()`),
    /// then migrates each list to its node (`damon_migrate_pages()`): a
    /// folio already there, any folio when the node is `NUMA_NO_NODE`, and
    /// one the model cannot move, is put back. A PMD THP is judged whole and
    /// never split; a PTE-mapped large folio is isolated at its first PTE in
    /// the range, later PTEs finding it off the LRU. Returns the bytes
    /// migrated (`applied * PAGE_SIZE`).
    public static func migrate(_ mm: AddressSpace, _ range: Range<UInt64>, scheme: inout DAMOSScheme,
                               dests: DAMOSMigrateDests, walker: WalkerKind = .range) throws(DAMONMigrateError) -> UInt64 {
        guard dests.useTargetNode || dests.nodes.count == dests.weights.count else {
            throw .weightsMismatch(nodes: dests.nodes.count, weights: dests.weights.count)
        }
        for n in dests.nodes where !(0..<mm.memory.nodeCount).contains(n) { throw .noSuchNode(n) }
        var priv = MigratePrivate(scheme: scheme, dests: dests, isolated: MigrateLists(count: dests.listCount))
        do {
            switch walker {
            case .range: try rangeMigrateWalk(mm, range, &priv)
            case .callback: try callbackMigrateWalk(mm, range, &priv)
            }
        } catch { throw .walk(error) }
        scheme = priv.scheme
        return try migrateLists(mm, priv.isolated, dests)
    }

    /// `damon_migrate_pages()` for every list, after the walk, the mmap
    /// lock dropped: the pages migrated, in bytes.
    static func migrateLists(_ mm: AddressSpace, _ isolated: MigrateLists,
                             _ dests: DAMOSMigrateDests) throws(DAMONMigrateError) -> UInt64 {
        var pages: UInt64 = 0
        var failure: ModelError?
        for (i, list) in isolated.lists.enumerated() {
            let node = dests.node(ofList: i)
            for (folio, first) in list {
                // __damon_migrate_folio_list(): nothing for NUMA_NO_NODE or a
                // folio already on the target node; a failure puts the rest back.
                guard failure == nil, let node, folio.node != node else { mm.putBackOnLRU(folio); continue }
                // Counted before the move: the old folio is freed by it.
                let n = UInt64(folio.pageCount)
                do throws(ModelError) {
                    if try mm.migrateIsolatedFolio(folio, at: first, toNode: node) { pages += n }
                } catch { failure = error }
            }
        }
        if let failure { throw .model(failure) }
        return pages * Geometry.pageSize
    }

    /// `vma->vm_pgoff`: the file offset in pages, or the start's page
    /// number for anonymous memory (the model does not keep an mremap-moved
    /// VMA's old offset).
    static func vmPgoff(_ vma: VMA) -> UInt64 {
        vma.file != nil ? vma.backing.pageOffset : vma.start >> UInt64(Geometry.pageShift)
    }

    /// The shared body of both migrate handlers once a folio was found on
    /// the LRU at `addr`: the filters' verdict, whether the young filter
    /// makes the entry old (the caller does, then `markOld`), and the list
    /// to isolate onto, nil when the folio is filtered out or stays.
    static func migrateChoice(_ priv: MigratePrivate, _ folio: Folio, vma: VMA, addr: UInt64,
                              entryYoung: Bool) -> (list: Int?, makeOld: Bool) {
        let v = filterVerdict(priv.scheme, folio, entryYoung: entryYoung)
        guard !v.out else { return (nil, v.makeOld) }
        return (priv.dests.list(order: folio.order, folioNode: folio.node, addr: addr, vmaStart: vma.start,
                                pgoff: vmPgoff(vma)), v.makeOld)
    }

    /// The address of the first page of `folio`, whose page `pfn` is mapped
    /// at `addr`.
    static func firstPageAddress(_ folio: Folio, pfn: UInt64, addr: UInt64) -> UInt64 {
        (addr & ~Geometry.pageOffsetMask) - (pfn - folio.pfn) * Geometry.pageSize
    }

    /// The migrate walk on the range walker: an update walk of the region,
    /// one entry at a time, PMD leaves whole (no `splitHugePMDs`, the
    /// `ACTION_CONTINUE` of the kernel's handler).
    static func rangeMigrateWalk(_ mm: AddressSpace, _ range: Range<UInt64>, _ priv: inout MigratePrivate) throws(PageWalkError) {
        let layout = mm.geometry.layout
        let pmdMask = mm.geometry.entrySize(.pmd) - 1
        var p = priv
        try mm.withUpdateWalk(range, lock: .mmapRead, options: updateOptions) { (walk) throws(PageWalkError) -> Void in
            try walk.forEach { (u) throws(PageWalkError) -> UpdateStep in
                let e = u.entry
                guard isPresentLeaf(e), let vma = try e.vma else { return .next }
                let pfn = entryPFN(e, layout)
                guard let f = damonGetFolio(mm.memory, pfn) else { return .next }
                let choice = migrateChoice(p, f, vma: vma, addr: max(e.start, range.lowerBound),
                                           entryYoung: e.entryAttributesContain(.young))
                if choice.makeOld { markOld(f, wasYoung: try u.testAndClearYoung()) }
                if let i = choice.list, let g = try u.isolateFolio() {
                    let at = e.level.tableLevel == .pmd ? e.start & ~pmdMask : e.start
                    p.isolated.lists[i].append((g, firstPageAddress(g, pfn: pfn, addr: at)))
                }
                return .next
            }
        }
        priv = p
    }
}
