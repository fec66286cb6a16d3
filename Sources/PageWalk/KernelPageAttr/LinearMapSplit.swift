import MemoryModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Models arm64's `range_split_to_ptes(start, end)` with
/// `split_to_ptes_ops` (arch/arm64/mm/mmu.c), the boot-time repaint of the
/// linear map to page granularity when a CPU lacks BBML2: over
/// `walk_kernel_page_table_range_lockless()`, each PUD block becomes a new
/// table of PMD blocks (`split_pud()`), which the walk then meets; each PMD
/// block, a contiguous one first losing its contiguous bit across its run
/// (`split_contpmd()`), becomes a new table of pages (`split_pmd()`, no
/// contiguous bits) and the walk goes on past it (`ACTION_CONTINUE`); each
/// PTE of a contiguous run has the bit cleared across the run
/// (`split_contpte()`). A block the range covers in part is split whole. A
/// table that cannot be allocated ends the walk with -ENOMEM.
///
/// `walker`: `.callback` runs the operations through
/// `walkKernelPageTableRangeLockless`; `.range` is the kernel update walk
/// (`withKernelUpdateWalk(lockless: true)`): the range walker does not
/// descend into a table made under it, so at each block it splits, it
/// stops and walks again from that block's address, meeting the new table.
/// The tables left and the splits reported are the same.
public enum LinearMapSplit {
    public static func splitToPTEs(_ initMM: AddressSpace, _ range: Range<UInt64>,
                                   walker: WalkerKind = .range) throws(KernelPageAttrError) -> LinearMapSplitResult {
        let arch = initMM.geometry.layout.architecture
        guard arch == .arm64 else { throw .notArm64(arch) }
        var result = LinearMapSplitResult()
        do throws(PageWalkError) {
            switch walker {
            case .range: try rangeSplit(initMM, range, &result)
            case .callback: try callbackSplit(initMM, range, &result)
            }
        } catch {
            throw .walk(error)
        }
        return result
    }

    /// One block leaf met at `addr`: its contiguous run cleared (PMD), then
    /// split; recorded.
    static func splitBlock(_ mm: AddressSpace, _ s: EntrySlot, _ addr: UInt64,
                           _ result: inout LinearMapSplitResult) throws(ModelError) {
        if s.level == .pmd, mm.clearContiguousRun(s) { result.contiguousRuns.append(addr) }
        guard try mm.splitKernelBlock(s) else { return }
        if s.level == .pud { result.pudSplits.append(addr) } else { result.pmdSplits.append(addr) }
    }

    /// Models `split_to_ptes_ops`; `walk->private` is the result (the
    /// kernel's is the allocation flags). An allocation failure is kept in
    /// `failure` and returned as -ENOMEM.
    static func walkOps(_ mm: AddressSpace, _ failure: UnsafeMutablePointer<ModelError?>) -> MMWalkOps<LinearMapSplitResult> {
        typealias Ops = MMWalkOps<LinearMapSplitResult>
        func block<E: PageTableEntry>(_ continues: Bool) -> Ops.EntryHandler<E> {
            return { p, addr, _, walk in
                guard !p.hasTrivialEntries, p.entry.isLeaf else { return 0 }
                do throws(ModelError) { try splitBlock(mm, p.slot, addr, &walk.privateData) } catch {
                    failure.pointee = error
                    return -ENOMEM
                }
                if continues { walk.action = .continue }
                return 0
            }
        }
        return Ops(
            pudEntry: block(false), pmdEntry: block(true),
            pteEntry: { p, addr, _, walk in
                if mm.clearContiguousRun(p.slot) { walk.privateData.contiguousRuns.append(addr) }
                return 0
            })
    }

    static func callbackSplit(_ mm: AddressSpace, _ range: Range<UInt64>,
                              _ result: inout LinearMapSplitResult) throws(PageWalkError) {
        var failure: ModelError?
        do throws(PageWalkError) {
            _ = try withUnsafeMutablePointer(to: &failure) { (f) throws(PageWalkError) -> Int32 in
                try walkKernelPageTableRangeLockless(mm, range.lowerBound, range.upperBound, ops: walkOps(mm, f),
                                                     private: &result)
            }
        } catch {
            if let failure { throw .model(failure) }
            throw error
        }
    }

    /// The range version: kernel update walks from `from`, each stopping
    /// after the block it split, until one meets no block.
    static func rangeSplit(_ mm: AddressSpace, _ range: Range<UInt64>,
                           _ result: inout LinearMapSplitResult) throws(PageWalkError) {
        let pmdSize = mm.geometry.entrySize(.pmd)
        var from = range.lowerBound
        var r = result
        var failure: ModelError?
        while from < range.upperBound {
            var split: (at: UInt64, level: PageTableLevel)?
            try mm.withKernelUpdateWalk(from..<range.upperBound, lockless: true) { (walk) throws(PageWalkError) -> Void in
                try walk.forEach { (u) throws(PageWalkError) -> UpdateStep in
                    guard case .pfn = u.entry.content else { return .next }
                    let at = u.entry.start
                    guard let slot = try u.kernelSlot() else { return .next }
                    if slot.level == .pte {
                        if mm.clearContiguousRun(slot) { r.contiguousRuns.append(at) }
                        return .next
                    }
                    do throws(ModelError) { try splitBlock(mm, slot, at, &r) } catch {
                        failure = error
                        return .stop
                    }
                    split = (at, slot.level)
                    return .stop
                }
            }
            if let failure { throw .model(failure) }
            guard let split else { break }
            // A PUD block's new PMD blocks are met next; a PMD block's pages
            // need no visit (ACTION_CONTINUE).
            from = split.level == .pud ? split.at : (split.at & ~(pmdSize - 1)) + pmdSize
        }
        result = r
    }
}
