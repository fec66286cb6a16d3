/// Migration of one folio a walker user isolated from the LRU
/// (`migrate_pages()` on a list built by the walk, as DAMOS's
/// `damon_migrate_pages()` calls it after its walk).
extension AddressSpace {
    /// Moves the isolated `folio`, whose first page is mapped at `address`,
    /// to `node`, by the kernel's rule: a new folio on `node` takes the
    /// contents and flags, every mapping is replaced by a migration entry
    /// and then points to the new folio (mapcounts and references move with
    /// it), the new folio goes on the LRU, and the old one is freed when
    /// the isolation reference is dropped. A folio the model cannot move is
    /// put back on the LRU (`putback_movable_pages()`): one no longer
    /// mapped, in the swap cache, KSM, device or hugetlb, locked by someone
    /// else, not mapped wholly inside one VMA at `address`, or a file folio
    /// that is large or mapped more than once (the model's rmap moves the
    /// mappings of the fork family at one address only). The isolation
    /// reference is consumed either way. Returns whether it moved.
    package func migrateIsolatedFolio(_ folio: Folio, at address: UInt64, toNode node: Int) throws(ModelError) -> Bool {
        guard (0..<memory.nodeCount).contains(node) else {
            throw .invalidArgument(name: "node", reason: "node \(node) does not exist (\(memory.nodeCount) nodes)")
        }
        try checkAlive()
        return try withMmapReadLock { (_) throws(ModelError) -> Bool in
            guard folio.tryLock() else { putBackOnLRU(folio); return false }
            var moved = false
            defer {
                folio.unlock()
                if moved { memory.put(folio) } else { putBackOnLRU(folio) }
            }
            guard folio.isMapped, !folio.test(.swapCache), !folio.isKSM, !folio.test(.zoneDevice), !folio.isHugetlb,
                  let vma = vma(containing: address), address + folio.size <= vma.end,
                  folio.isAnon || (!folio.isLarge && folio.mapcount == 1) else { return false }
            let target = try memory.allocateFolio(order: folio.order, node: node,
                                                  flags: folio.flags.subtracting([.locked, .anonExclusive]).union(.lru),
                                                  refcount: 0)
            for k in 0..<folio.pageCount where folio.pageFlags(k).contains(.anonExclusive) {
                target.setPageFlags(k, .anonExclusive, true)
            }
            try installMigrationEntries(folio, at: address)
            try removeMigrationEntries(folio, at: address, onto: target)
            moved = true
            return true
        }
    }
}
