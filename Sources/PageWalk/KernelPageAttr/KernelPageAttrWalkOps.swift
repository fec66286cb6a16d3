import MemoryModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
            return { p, addr, next, walk in
                let e = p.entry
                if !p.hasTrivialEntries, e.isLeaf {
                    if refusesPartial(operation, walk.mm, level: level, addr, next) {
                        walk.privateData.partialBlockAt = addr
                        return -EINVAL
                    }
                    if isLockless(operation) { walk.action = .continue }   // arm64's handlers say so
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

    /// Whether the writer walks without `init_mm`'s lock (arm64).
    static func isLockless(_ operation: Operation) -> Bool {
        if case .arm64Masks = operation { return true }
        return false
    }

    /// The writers on the callback walker: `walk_kernel_page_table_range(
    /// start, end, ops, NULL, private)` under `init_mm`'s mmap write lock,
    /// or arm64's `walk_kernel_page_table_range_lockless()` with none.
    static func callbackWalk(_ operation: Operation, _ mm: AddressSpace, _ start: UInt64,
                             _ end: UInt64) throws(PageWalkError) -> KernelPageAttrResult {
        var result = KernelPageAttrResult()
        if isLockless(operation) {
            do throws(PageWalkError) {
                _ = try walkKernelPageTableRangeLockless(mm, start, end, ops: walkOps(operation), private: &result)
            } catch {
                // The handler's -EINVAL is reported from the result.
                guard result.partialBlockAt != nil else { throw error }
            }
            return result
        }
        try mm.withMmapWriteLock { (_) throws(PageWalkError) in
            _ = try walkKernelPageTableRange(mm, start, end, ops: walkOps(operation), private: &result)
        }
        return result
    }
}
