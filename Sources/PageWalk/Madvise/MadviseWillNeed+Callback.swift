import MemoryModel

// MADV_WILLNEED's swap-in as mm/madvise.c writes it: `swapin_walk_ops`, one
// `pmd_entry` (`swapin_walk_pmd_entry()`) that maps and locks the PTE table,
// and for each swap entry unlocks it, reads the entry into the swap cache
// and locks the table again for the next address. A PMD leaf has no PTE
// table to lock, so the handler does nothing there.
extension WillNeedWalk {
    struct Private {
        var reads = 0
        var failure: ModelError?
    }

    static func callback(_ mm: AddressSpace, _ vma: VMA, _ start: UInt64, _ end: UInt64) throws(PageWalkError) -> Int {
        let access = LevelAccess(mm)
        let layout = mm.geometry.layout
        let ops = MMWalkOps<Private>(
            pmdEntry: { p, addr, next, walk in
                var table: TableID?
                var a = addr
                while a < next {
                    defer { a += Geometry.pageSize }
                    if table == nil {
                        guard let t = access.lockPTETable(p.slot) else { break }
                        table = t
                    }
                    let w = mm.memory.tables.entries(table!)[mm.geometry.tableIndex(a, .pte)].load(ordering: .relaxed)
                    guard w != 0, !layout.isPresent(w, .pte),
                          case .swap(let entry) = SoftLeafEntry(decoding: w, layout: layout).leaf else { continue }
                    mm.memory.tables.lock(table!).unlock()
                    table = nil
                    do throws(ModelError) {
                        if try mm.readSwapCacheAsync(entry, vma: vma, address: a) { walk.privateData.reads += 1 }
                    } catch {
                        walk.privateData.failure = error
                        return -12   // -ENOMEM
                    }
                }
                if let t = table { mm.memory.tables.lock(t).unlock() }
                return 0
            },
            walkLock: .read)
        var data = Private()
        do {
            _ = try walkPageRangeVMA(mm, vma, start, end, ops: ops, private: &data)
        } catch {
            if let failure = data.failure { throw .model(failure) }
            throw error
        }
        return data.reads
    }
}
