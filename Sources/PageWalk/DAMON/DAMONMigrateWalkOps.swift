import MemoryModel

extension DAMONVaddr {
    /// Models the migrate walk's operations as `damos_va_migrate()` builds
    /// them: `damos_va_migrate_pmd_entry()` judges a present PMD THP whole
    /// under the PMD lock and sets `ACTION_CONTINUE` so the walker does not
    /// split it; `damos_va_migrate_pte_entry()` judges each present PTE's
    /// folio under the PTE lock the walker holds. Either isolates a folio
    /// that passes onto its destination's list (`folio_isolate_lru()`).
    static func migrateOps(_ mm: AddressSpace) -> MMWalkOps<MigratePrivate> {
        let layout = mm.geometry.layout
        return MMWalkOps<MigratePrivate>(
            pmdEntry: { p, addr, _, walk in
                guard !p.hasTrivialEntries, let vma = walk.vma else { return 0 }
                let lock = mm.lock(forEntriesOf: p.slot.table, level: .pmd)
                lock.lock()
                defer { lock.unlock() }
                let w = p.rawValue
                guard layout.isPresent(w, .pmd), layout.isLeaf(w, .pmd) else { return 0 }
                walk.action = .continue
                guard let f = damonGetFolio(mm.memory, layout.pfn(w)) else { return 0 }
                let young = w & layout.young != 0
                let choice = migrateChoice(walk.privateData, f, vma: vma, addr: addr, entryYoung: young)
                if choice.makeOld {
                    if young { mm.setEntry(at: p.slot, w & ~layout.young) }
                    markOld(f, wasYoung: young)
                }
                if let i = choice.list, mm.isolateFromLRU(f) {
                    let first = addr & ~(mm.geometry.entrySize(.pmd) - 1)
                    walk.privateData.isolated.lists[i].append((f, first))
                }
                return 0
            },
            pteEntry: { p, addr, _, walk in
                let w = p.rawValue
                guard w != 0, layout.isPresent(w, .pte), let vma = walk.vma else { return 0 }
                let pfn = layout.pfn(w)
                guard let f = damonGetFolio(mm.memory, pfn) else { return 0 }
                let choice = migrateChoice(walk.privateData, f, vma: vma, addr: addr, entryYoung: p.entry.isYoung)
                if choice.makeOld { markOld(f, wasYoung: mm.ptepTestAndClearYoung(p.slot.table, p.slot.index)) }
                if let i = choice.list, mm.isolateFromLRU(f) {
                    walk.privateData.isolated.lists[i].append((f, firstPageAddress(f, pfn: pfn, addr: addr)))
                }
                return 0
            },
            walkLock: .read)
    }

    static func callbackMigrateWalk(_ mm: AddressSpace, _ range: Range<UInt64>, _ priv: inout MigratePrivate) throws(PageWalkError) {
        try mm.withMmapReadLock { (_) throws(PageWalkError) in
            _ = try walkPageRange(mm, range.lowerBound, range.upperBound, ops: migrateOps(mm), private: &priv)
        }
    }
}
