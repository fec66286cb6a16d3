extension AddressSpace {
    /// The move itself, for a folio locked by the caller: a new folio of the
    /// same order on `node` with `flags` (less the lock and the per-page
    /// exclusivity, which is copied page by page), migration entries for
    /// every mapping, then the entries restored onto the new folio, whose
    /// references they take; the old folio is freed when its last
    /// reference goes.
    func moveLockedFolio(_ folio: Folio, at address: UInt64, toNode node: Int, flags: PageFlags) throws(ModelError) {
        let target = try memory.allocateFolio(order: folio.order, node: node,
                                              flags: flags.subtracting([.locked, .anonExclusive]), refcount: 0)
        for k in 0..<folio.pageCount where folio.pageFlags(k).contains(.anonExclusive) {
            target.setPageFlags(k, .anonExclusive, true)
        }
        try installMigrationEntries(folio, at: address)
        try removeMigrationEntries(folio, at: address, onto: target)
    }

    /// `migrate_pages()` for one folio a walker isolated from the LRU
    /// (`folio_isolate_lru()`, with its reference), its first page mapped
    /// at `address`: the kernel's rule for a move to `node` (a new folio
    /// allocated there, every mapping pointed at it through migration
    /// entries, the new folio put on the LRU, the old one freed). A hugetlb
    /// folio (isolated by `folio_isolate_hugetlb()`, with a reference)
    /// moves as `unmap_and_move_huge_page()` moves it, see
    /// `moveLockedHugetlbFolio`. A folio the model cannot move is put back
    /// on the LRU (`putback_movable_pages()`): one no longer mapped, in the
    /// swap cache, KSM or device memory, or a file folio that is large or
    /// mapped more than once (the model's rmap moves the mappings of the
    /// fork family at one address only). Returns whether it moved; either way the isolation
    /// reference is gone. Takes the mmap read lock; the caller holds no
    /// lock of this address space.
    package func migrateIsolatedFolio(_ folio: Folio, at address: UInt64, toNode node: Int) throws(ModelError) -> Bool {
        guard (0..<memory.nodeCount).contains(node) else {
            throw .invalidArgument(name: "node", reason: "node \(node) does not exist (\(memory.nodeCount) nodes)")
        }
        try checkAlive()
        return try withMmapReadLock { (_) throws(ModelError) -> Bool in
            folio.lock()
            if folio.test(.hugetlb) {
                defer { folio.unlock(); memory.put(folio) }   // and the isolation reference
                return try moveLockedHugetlbFolio(folio, at: address, toNode: node)
            }
            guard folio.isMapped, !folio.test(.swapCache), !folio.isKSM, !folio.test(.zoneDevice),
                  folio.isAnon || (!folio.isLarge && folio.mapcount == 1) else {
                folio.unlock()
                putBackOnLRU(folio)
                return false
            }
            do throws(ModelError) {
                try moveLockedFolio(folio, at: address, toNode: node, flags: folio.flags.union(.lru))
            } catch {
                folio.unlock()
                putBackOnLRU(folio)
                throw error
            }
            folio.unlock()
            memory.put(folio)   // the isolation reference
            return true
        }
    }

    /// A hugetlb folio's move, under its lock: a new hugetlb folio of the
    /// same size on `node`, each huge entry mapping the old one (in this
    /// process and, for anonymous memory, the rest of its fork family)
    /// rewritten under the huge PTE lock to map the new one with the same
    /// bits, the mapping and page-cache references moved. Not moved (false)
    /// when some mapping of it lies outside those processes (a hugetlbfs
    /// file mapped elsewhere), or its entries are PTE-level (arm64 64K).
    func moveLockedHugetlbFolio(_ folio: Folio, at address: UInt64, toNode node: Int) throws(ModelError) -> Bool {
        guard let vma = vma(containing: address), vma.isHugetlb else { return false }
        let (level, count) = hugetlbEntryShape(forSize: vma.hugePageSize)
        guard level != .pte else { return false }
        let walk = beginRmapWalk(folio)
        defer { walk.end() }
        var slots: [(AddressSpace, EntrySlot)] = []
        for mm in walk.spaces {
            guard mm.hasEntries(at: level), case .slot(let s)? = try? mm.slot(address, at: level, allocate: false) else { continue }
            let w = mm.load(s)
            if mm.layout.isPresent(w, level) && mm.layout.pfn(w) == folio.pfn { slots.append((mm, s)) }
        }
        guard slots.count == folio.entireMapcount else { return false }
        let target = try memory.allocateFolio(order: folio.order, node: node,
                                              flags: folio.flags.subtracting([.locked, .anonExclusive]), refcount: 0)
        if folio.pageFlags(0).contains(.anonExclusive) { target.setPageFlags(0, .anonExclusive, true) }
        let step = UInt64(1) << UInt64(geometry.shift(level) - 12)
        for (mm, s) in slots {
            let l = mm.hugePTELock(forEntriesOf: s.table, level: level)
            l.lock()
            for k in 0..<count {
                let e = EntrySlot(s.table, s.index + k, level)
                let w = mm.load(e)
                mm.store(e, (w & ~mm.layout.pfnMask) | ((target.pfn + UInt64(k) * step) << Geometry.pageShift))
            }
            l.unlock()
            folio.addEntireMapping(-1)
            target.addEntireMapping(1)
            target.addRef(1)
            memory.put(folio)
        }
        if let file = vma.file, file.cachedPFN(vma.pageIndex(address)) == folio.pfn {
            file.setCached(vma.pageIndex(address), target.pfn)
            target.addRef(1)
            memory.put(folio)
        }
        return true
    }

    /// `folio_isolate_hugetlb()`'s reference: false when the folio is
    /// being freed. (The walker keeps which folios it isolated: the model
    /// has no hugetlb active list to take them off.)
    package func isolateHugetlb(_ folio: Folio) -> Bool { folio.test(.hugetlb) && folio.tryGet() }

    /// `folio_putback_hugetlb()`: the isolation reference dropped.
    package func putBackHugetlb(_ folio: Folio) { memory.put(folio) }

    /// `mbind_range()` over `[start, end)`: the VMAs whose policy differs
    /// are split at the range's edges, write-locked and given `policy`,
    /// then neighbours merge (`vma_modify_policy()`). Caller holds the
    /// mmap write lock.
    package func setVMAPolicy(_ policy: MemoryPolicy, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        for vma in try isolateVMAs(start, end, where: { $0.policy != policy }) {
            vmaStartWrite(vma)
            vma.policy = policy
        }
        mergeVMAs(around: start, end)
    }
}
