import MemoryModel

// Placing a plan in the address space, then checking the mapcounts the
// captured kpagecount words imply.
extension RebuildSession {
    func adopt(_ fi: Int, node: Int) throws -> Folio {
        if let f = adopted[fi] { return f }
        let c = folios[fi]
        var flags = SnapshotRebuilder.pageFlags(c.head)
        flags.remove(.swapCache)
        let folio = try memory.adoptFolio(pfn: c.pfn, order: c.order, node: node, flags: flags, refcount: 0)
        let recs = snap.kpageflags
        for k in 0..<c.pageCount {
            let r = recs[c.first + k]
            if r.flags.contains(.hwpoison) { folio.setCapturedPageFlags(k, .hwpoison) }
            if c.isAnon && c.head.contains(.mappedToDisk) { folio.setCapturedPageFlags(k, .anonExclusive) }
        }
        if c.head.contains(.swapCache) {
            // The swap slot a swap-cache folio belongs to is not captured.
            folio.setCapturedFlags(.swapCache)
            folio.addCapturedReferences(c.pageCount)
            warnings.add(.swapCacheSlotUnknown, pid: nil, detail: "swap-cache folio without a known slot",
                         example: "pfn 0x\(rhex(c.pfn))", count: 1)
        }
        adopted[fi] = folio
        stats.folios += 1
        stats.frames += c.pageCount
        return folio
    }

    /// Page-cache and kernel references for a non-anonymous folio the first
    /// time it is mapped through `vma` at `address` (page `page` of it).
    func placeFileFolio(_ fi: Int, _ folio: Folio, _ vma: VMA, _ address: UInt64, page: Int, pid: Int32) {
        let c = folios[fi]
        guard !c.isAnon, !cachedFolios.contains(fi) else { return }
        cachedFolios.insert(fi)
        guard let file = vma.file else {
            // A kernel page in a special mapping ([vdso]): the kernel keeps its own reference.
            folio.addCapturedReferences(1)
            return
        }
        let headIndex = vma.pageIndex(address) &- UInt64(page)
        let pages = c.isHugetlb ? 1 : c.pageCount
        for k in 0..<pages {
            if let other = file.placeCaptured(index: headIndex + UInt64(k), pfn: c.pfn + UInt64(k)) {
                warnings.add(.pageCacheConflict, pid: pid, detail: "two frames for one page of \(file.path)",
                             example: "index \(headIndex + UInt64(k)): pfn 0x\(rhex(other)) and 0x\(rhex(c.pfn + UInt64(k)))")
            } else {
                stats.pageCachePages += 1
            }
        }
        folio.addCapturedReferences(1)
    }

    func execute(_ plan: [PlannedEntry], _ p: ProcessSnapshot, _ i: Int, _ vma: VMA, _ space: AddressSpace) throws {
        let node = self.node(p, p.maps[i])
        let pagemapPath = p.directory + "/pagemap"
        func fail(_ word: Int, _ address: UInt64, _ error: Error) -> SnapshotError {
            .malformedBinary(path: pagemapPath, offset: word * 8,
                             reason: "entry for 0x\(rhex(address)) cannot be rebuilt: \(error)")
        }
        for e in plan {
            switch e {
            case .pte(let t):
                do {
                    if let fi = t.folio {
                        let folio = try adopt(fi, node: node)
                        let page = Int(t.pfn - folio.pfn)
                        placeFileFolio(fi, folio, vma, t.address, page: page, pid: p.pid)
                        try space.mapCapturedPage(at: t.address, pfn: t.pfn, attributes: t.attrs)
                        stats.pteMappings += 1
                    } else {
                        try space.mapCapturedPage(at: t.address, pfn: t.pfn, attributes: t.attrs)
                        if t.pfn == memory.zeroPage.pfn { stats.zeroPageMappings += 1 } else { stats.pfnMappings += 1 }
                    }
                } catch { throw fail(t.word, t.address, error) }
            case .pmd(let address, let fi, let attrs, let word):
                do {
                    if folios[fi].pfn == hugeZeroPFN {
                        try space.mapCapturedPMD(at: address, folio: memory.hugeZeroFolio, attributes: attrs)
                    } else {
                        let folio = try adopt(fi, node: node)
                        placeFileFolio(fi, folio, vma, address, page: 0, pid: p.pid)
                        try space.mapCapturedPMD(at: address, folio: folio, attributes: attrs)
                    }
                    stats.pmdMappings += 1
                } catch { throw fail(word, address, error) }
            case .hugetlb(let address, let fi, let attrs, let word):
                do {
                    let folio = try adopt(fi, node: node)
                    placeFileFolio(fi, folio, vma, address, page: 0, pid: p.pid)
                    try space.mapCapturedHugetlb(at: address, folio: folio, attributes: attrs)
                    stats.hugetlbMappings += 1
                } catch { throw fail(word, address, error) }
            case .softLeaf(let address, let leaf, let word):
                do {
                    if case .migration(_, let pfn, _, _) = leaf.leaf, let fi = folioIndex(pfn) {
                        _ = try adopt(fi, node: node)
                    }
                    try space.installCapturedSoftLeaf(at: address, leaf)
                    switch leaf.leaf {
                    case .swap: stats.swapEntries += 1
                    case .migration: stats.migrationEntries += 1
                    default: stats.markers += 1
                    }
                } catch { throw fail(word, address, error) }
            }
        }
    }


    /// Compares every adopted page's mapcount with kpagecount; represents
    /// the surplus as external mappings (options) and warns either way.
    func checkMapcounts() {
        let recs = snap.kpageflags
        for fi in adopted.keys.sorted() {
            let c = folios[fi]
            let folio = adopted[fi]!
            for k in 0..<c.pageCount {
                var captured = Int(recs[c.first + k].count)
                let rebuilt = folio.pageMapcount(k)
                switch exclusiveFromPagemap[c.first + k] {
                case true?: captured = min(captured, max(rebuilt, 1))     // mapped once, as pagemap said
                case false?: captured = max(captured, rebuilt, 2)         // mapped more than once
                case nil: break
                }
                if captured > rebuilt {
                    let extra = captured - rebuilt
                    warnings.add(.externalMappings, pid: nil,
                                 detail: options.representExternalMappings
                                    ? "pages mapped by processes outside the snapshot (extra mapcount added)"
                                    : "pages mapped by processes outside the snapshot (not represented)",
                                 example: "pfn 0x\(rhex(c.pfn + UInt64(k))) kpagecount \(captured), rebuilt \(rebuilt)")
                    if options.representExternalMappings {
                        folio.addExternalMappings(page: k, count: extra)
                        stats.externallyMappedPages += 1
                        stats.externalMappings += extra
                    }
                } else if captured < rebuilt {
                    warnings.add(.mapcountBelowRebuilt, pid: nil, detail: "kpagecount below the rebuilt mapcount",
                                 example: "pfn 0x\(rhex(c.pfn + UInt64(k))) kpagecount \(captured), rebuilt \(rebuilt)")
                }
            }
        }
    }
}
