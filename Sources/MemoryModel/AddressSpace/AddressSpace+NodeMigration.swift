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
    /// entries, the new folio put on the LRU, the old one freed). A folio
    /// that is no longer mapped, or is in the swap cache, is put back on
    /// the LRU instead, and a hugetlb folio (isolated by
    /// `folio_isolate_hugetlb()`, with a reference) is not moved: hugetlb
    /// migration is not modelled. Returns whether it moved; either way the isolation
    /// reference is gone. Caller holds no table lock.
    package func migrateIsolatedFolio(_ folio: Folio, at address: UInt64, toNode node: Int) throws(ModelError) -> Bool {
        guard (0..<memory.nodeCount).contains(node) else {
            throw .invalidArgument(name: "node", reason: "node \(node) does not exist (\(memory.nodeCount) nodes)")
        }
        folio.lock()
        if folio.test(.hugetlb) {
            // Not modelled: the hugetlb folio goes back to its active list.
            folio.unlock()
            memory.put(folio)
            return false
        }
        guard folio.isMapped, !folio.test(.swapCache) else {
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
