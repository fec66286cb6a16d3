import MemoryModel

extension KernelPageAttr {
    /// Models the three operation sets: riscv's and LoongArch's
    /// `pageattr_ops` (`pageattr_p4d_entry()` … `pageattr_pte_entry()`,
    /// LoongArch adding `pageattr_pgd_entry()`; `pageattr_pte_hole()` does
    /// nothing and is left out), and OpenRISC's `set_nocache_walk_ops` and
    /// `clear_nocache_walk_ops` (`page_set_nocache()`,
    /// `page_clear_nocache()`, PTEs only). `walk->private` is the result.
    static func walkOps(_ operation: Operation) -> MMWalkOps<KernelPageAttrResult> {
        typealias Ops = MMWalkOps<KernelPageAttrResult>
        func upper<E: PageTableEntry>(_ level: PageTableLevel) -> Ops.EntryHandler<E>? {
            guard rewrites(operation, level: level) else { return nil }
            return { p, addr, _, walk in
                let e = p.entry
                if !p.hasTrivialEntries, e.isLeaf {
                    let new = rewritten(operation, e.rawValue)
                    if new != e.rawValue {
                        walk.mm.setEntry(at: p.slot, new)
                        walk.privateData.changed += 1
                        walk.privateData.blockLeaves.append(addr)
                    }
                }
                return 0
            }
        }
        return Ops(
            pgdEntry: upper(.pgd), p4dEntry: upper(.p4d), pudEntry: upper(.pud), pmdEntry: upper(.pmd),
            pteEntry: { p, addr, _, walk in
                let e = p.entry
                guard e.isPresent else { return 0 }
                let new = rewritten(operation, e.rawValue)
                if new != e.rawValue {
                    walk.setPTE(p, PTE(rawValue: new, architecture: e.architecture))
                    walk.privateData.changed += 1
                }
                pageFlushes(operation, addr, pfn: e.layout.pfn(e.rawValue), &walk.privateData)
                return 0
            },
            walkLock: .write)
    }

    /// The writers on the callback walker: `walk_kernel_page_table_range(
    /// start, end, ops, NULL, private)` under `init_mm`'s mmap write lock.
    static func callbackWalk(_ operation: Operation, _ mm: AddressSpace, _ start: UInt64,
                             _ end: UInt64) throws(PageWalkError) -> KernelPageAttrResult {
        var result = KernelPageAttrResult()
        try mm.withMmapWriteLock { (_) throws(PageWalkError) in
            _ = try walkKernelPageTableRange(mm, start, end, ops: walkOps(operation), private: &result)
        }
        return result
    }
}
