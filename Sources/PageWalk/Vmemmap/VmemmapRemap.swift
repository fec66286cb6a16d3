import MemoryModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Models the HugeTLB vmemmap optimisation's walks (mm/hugetlb_vmemmap.c,
/// `vmemmap_remap_ops` over `walk_kernel_page_table_range()`, under
/// `init_mm`'s mmap read lock), on kernel-table PTEs: the model has no
/// vmemmap (its memmap is not mapped in kernel tables), so the walks run
/// on whatever kernel range the caller names, and pages are frames with no
/// contents (the kernel's `copy_page()` of the head is not modelled).
///
/// - `split` (`vmemmap_remap_split()`): each PMD leaf of `[reuse, end)` is
///   split into a new PTE table under `init_mm`'s `page_table_lock`
///   (`vmemmap_split_pmd()`), and the PTEs are not visited
///   (`ACTION_CONTINUE`).
/// - `remapFree` (`vmemmap_remap_free()`): as `split`, then the PTEs of
///   `[reuse, end)` are remapped (`vmemmap_remap_pte()`) to the reuse
///   page, read-only, their frames kept for the caller to free; with
///   `newHead` (the page the kernel allocates and copies the head into) the
///   reuse PTE itself is remapped to it read-write, else the page it maps is
///   the reuse page and it stays.
/// - `restore` (`vmemmap_remap_alloc()`): each PTE of `[start, end)`, which
///   must map the reuse page, gets the next of `pages`, read-write
///   (`vmemmap_restore_pte()`).
///
/// `start` must be `reuse + PAGE_SIZE`. The new PTEs of a split keep the
/// leaf's attributes (the kernel writes `PAGE_KERNEL`); the self-hosted
/// check (-ENOTSUPP, memory hotplug's memmap on memory) and the TLB
/// flushes are not modelled. `.range` is a kernel update walk that, after
/// splitting a PMD leaf, walks again from it to meet the new PTEs.
public enum VmemmapRemap {
    public static func split(_ initMM: AddressSpace, start: UInt64, end: UInt64, reuse: UInt64,
                             walker: WalkerKind = .range) throws(VmemmapRemapError) -> VmemmapRemapResult {
        try run(VmemmapRemapWalk(mode: .split, reuseAddress: reuse, pages: []), initMM, start, end, walker)
    }

    public static func remapFree(_ initMM: AddressSpace, start: UInt64, end: UInt64, reuse: UInt64, newHead: UInt64?,
                                 walker: WalkerKind = .range) throws(VmemmapRemapError) -> VmemmapRemapResult {
        try run(VmemmapRemapWalk(mode: .remap, reuseAddress: reuse, reusePFN: newHead, pages: []), initMM, start, end, walker)
    }

    public static func restore(_ initMM: AddressSpace, start: UInt64, end: UInt64, reuse: UInt64, pages: [UInt64],
                               walker: WalkerKind = .range) throws(VmemmapRemapError) -> VmemmapRemapResult {
        guard UInt64(pages.count) >= (end &- start) / Geometry.pageSize else { throw .noMemory }
        return try run(VmemmapRemapWalk(mode: .restore, reuseAddress: reuse, pages: pages), initMM, start, end, walker)
    }

    static func run(_ state: VmemmapRemapWalk, _ mm: AddressSpace, _ start: UInt64, _ end: UInt64,
                    _ walker: WalkerKind) throws(VmemmapRemapError) -> VmemmapRemapResult {
        guard start &- state.reuseAddress == Geometry.pageSize else { throw .reuseNotBeforeStart }
        var s = state
        var result = VmemmapRemapResult()
        do throws(PageWalkError) {
            switch walker {
            case .range: try rangeWalk(mm, state.reuseAddress, end, &s, &result)
            case .callback: try callbackWalk(mm, state.reuseAddress, end, &s, &result)
            }
        } catch {
            if s.failure == nil { throw .walk(error) }
        }
        if let f = s.failure { throw f }
        result.walked = s.walked
        result.pages = s.pages
        result.reusePFN = s.reusePFN
        return result
    }

    /// `vmemmap_split_pmd()`'s install under `init_mm.page_table_lock`.
    static func splitPMD(_ mm: AddressSpace, _ slot: EntrySlot) throws(VmemmapRemapError) -> Bool {
        let lock = mm.lock(forEntriesOf: slot.table, level: .pmd)
        lock.lock()
        defer { lock.unlock() }
        do { return try mm.splitKernelBlock(slot) } catch { throw .noMemory }
    }

    /// Models `vmemmap_remap_ops` (`vmemmap_pmd_entry()`,
    /// `vmemmap_pte_entry()`); `walk->private` is the walk state.
    static func walkOps(_ mm: AddressSpace, _ result: UnsafeMutablePointer<VmemmapRemapResult>) -> MMWalkOps<VmemmapRemapWalk> {
        let layout = mm.geometry.layout
        return MMWalkOps<VmemmapRemapWalk>(
            pmdEntry: { p, addr, _, walk in
                if walk.privateData.mode == .split { walk.action = .continue }
                guard p.entry.isLeaf else { return 0 }
                do throws(VmemmapRemapError) {
                    if try splitPMD(mm, p.slot) { result.pointee.pmdSplits.append(addr) }
                } catch {
                    walk.privateData.failure = error
                    return -ENOMEM
                }
                return 0
            },
            pteEntry: { p, addr, _, walk in
                guard let new = walk.privateData.pte(p.rawValue, at: addr, layout) else {
                    return walk.privateData.failure == nil ? 0 : -EINVAL
                }
                walk.setPTE(p, PTE(rawValue: new, architecture: layout.architecture))
                return 0
            })
    }

    static func callbackWalk(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64, _ s: inout VmemmapRemapWalk,
                             _ result: inout VmemmapRemapResult) throws(PageWalkError) {
        try mm.withMmapReadLock { (_) throws(PageWalkError) in
            _ = try withUnsafeMutablePointer(to: &result) { (r) throws(PageWalkError) -> Int32 in
                try walkKernelPageTableRange(mm, start, end, ops: walkOps(mm, r), private: &s)
            }
        }
    }

    /// The range version: kernel update walks under `init_mm`'s mmap read
    /// lock; a PMD leaf is split and the walk opened again at it (or past
    /// it when only splitting); each PTE rewritten through `rewriteBits`.
    static func rangeWalk(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64, _ s: inout VmemmapRemapWalk,
                          _ result: inout VmemmapRemapResult) throws(PageWalkError) {
        let layout = mm.geometry.layout
        let pmdSize = mm.geometry.entrySize(.pmd)
        var state = s
        var r = result
        var from = start
        while from < end, state.failure == nil {
            var splitAt: UInt64?
            try mm.withKernelUpdateWalk(from..<end, lockless: true) { (walk) throws(PageWalkError) -> Void in
                try walk.forEach { (u) throws(PageWalkError) -> UpdateStep in
                    guard case .pfn = u.entry.content, let slot = try u.kernelSlot() else { return .next }
                    let at = u.entry.start
                    if slot.level == .pmd {
                        do throws(VmemmapRemapError) {
                            guard try splitPMD(mm, slot) else { return .next }
                        } catch {
                            state.failure = error
                            return .stop
                        }
                        r.pmdSplits.append(at)
                        splitAt = at
                        return .stop
                    }
                    guard slot.level == .pte, state.mode != .split else { return .next }
                    if let new = state.pte(u.entry.raw, at: at, layout) {
                        try u.rewriteBits(set: new, clear: ~0)
                    }
                    return state.failure == nil ? .next : .stop
                }
            }
            guard let at = splitAt else { break }
            from = state.mode == .split ? (at & ~(pmdSize - 1)) + pmdSize : at
        }
        s = state
        result = r
    }
}
