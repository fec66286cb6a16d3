import MemoryModel

// clear_refs as fs/proc/task_mmu.c writes it: `clear_refs_walk_ops`, a
// `pmd_entry` that handles a THP under the PMD lock, and the PTEs of the
// table, with `test_walk` choosing the VMAs.
extension ClearRefsWalk {
    static func callback(_ mm: AddressSpace, _ kind: AddressSpace.ClearRefs) throws(PageWalkError) -> MMUGather {
        let layout = mm.geometry.layout
        let ops = MMWalkOps<MMUGather>(
            pmdEntry: { p, addr, next, walk in
                let pmd = p.entry
                // pmd_trans_huge_lock(): a THP or a PMD migration entry.
                guard !p.hasTrivialEntries, pmd.isLeaf || pmd.isSwapFormat else { return 0 }
                let l = mm.lock(forEntriesOf: p.slot.table, level: .pmd)
                l.lock()
                defer { l.unlock() }
                walk.action = .continue
                let w = p.rawValue
                if kind == .softDirty {
                    if pmd.isPresent {
                        mm.setEntry(at: p.slot, layout.writeProtect(w) & ~layout.softDirty)
                        walk.privateData.adjust(addr, next)
                    } else if w != 0 && layout.swapSoftDirty != 0 {
                        mm.setEntry(at: p.slot, w & ~layout.swapSoftDirty)
                    }
                    return 0
                }
                guard pmd.isPresent else { return 0 }
                mm.setEntry(at: p.slot, w & ~layout.young)
                if let f = mm.memory.folio(containing: pmd.pfn) { f.clearReferenced() }
                return 0
            },
            pteEntry: { p, addr, next, walk in
                let pte = p.entry
                let w = p.rawValue
                if kind == .softDirty {
                    if pte.isPresent {
                        walk.setPTE(p, PTE(rawValue: layout.writeProtect(w) & ~layout.softDirty, architecture: pte.architecture))
                        walk.privateData.adjust(addr, next)
                    } else if pte.isSwapFormat && layout.swapSoftDirty != 0 {
                        walk.setPTE(p, PTE(rawValue: w & ~layout.swapSoftDirty, architecture: pte.architecture))
                    }
                    return 0
                }
                // vm_normal_folio(): special entries (the zero page, PFN
                // maps) have no folio and keep their young bit.
                guard pte.isPresent, !pte.isSpecial, let f = mm.memory.folio(containing: pte.pfn) else { return 0 }
                if pte.isYoung { _ = mm.ptepTestAndClearYoung(p.slot.table, p.slot.index) }
                f.clearReferenced()
                return 0
            },
            testWalk: { start, _, walk in
                guard let vma = walk.vma else { return 1 }
                return walks(vma, kind) ? 0 : 1
            },
            walkLock: .write)
        var gather = MMUGather()
        let range = userRange(mm)
        try mm.withMmapWriteLock { (_) throws(PageWalkError) in
            if kind == .softDirty { mm.clearSoftDirtyFlags() }
            _ = try walkPageRange(mm, range.lowerBound, range.upperBound, ops: ops, private: &gather)
        }
        gather.flush(.finish)
        return gather
    }
}
