import MemoryModel

/// Models the kernel-table writers built on `walk_kernel_page_table_range()`
/// in Linux 6.18, on the model's kernel address space (`init_mm`):
///
/// - riscv's and LoongArch's `__set_memory()` with their `pageattr_ops`
///   (arch/riscv/mm/pageattr.c, arch/loongarch/mm/pageattr.c): every
///   leaf of the range, block leaves at any level included, and every
///   PTE has its bits rewritten with the set and clear masks; then the
///   kernel TLB is flushed over the range. riscv's handlers start at the
///   P4D, LoongArch's at the PGD; holes are passed over.
/// - OpenRISC's `arch_dma_set_uncached()` and `arch_dma_clear_uncached()`
///   (arch/openrisc/kernel/dma.c, `set_nocache_walk_ops`,
///   `clear_nocache_walk_ops`): each PTE gains or loses the cache-inhibit
///   bit, and its page is flushed from the TLB (and, when made uncached,
///   from the data cache). A block leaf has no `pte_entry` and is left.
///
/// The model has no riscv, LoongArch or OpenRISC layout: the masks are the
/// x86-64 and arm64 bits (`PageAttrMasks`), and OpenRISC's `_PAGE_CI` is the
/// x86 cache-disable bit (PCD), which ptdump prints as `PCD`. Only present
/// words are rewritten: the kernels' PTE handlers write every PTE of the
/// range, none ones too, which in the model's layouts would turn a none
/// entry into a swap-format word (their callers pass mapped ranges only).
/// riscv's own split of its linear mapping before the walk is not the
/// walker's and is not modelled: a block leaf straddling the range is
/// rewritten whole, as the walker alone does.
///
/// All run under `init_mm`'s mmap write lock, as the callers take it.
/// `walker`: `.callback` runs the operations through
/// `walkKernelPageTableRange`; `.range` is a kernel update walk
/// (`withKernelUpdateWalk`). The tables, counts and flushes come out the
/// same.
public enum KernelPageAttr {
    /// Which architecture's `pageattr_ops`: the levels whose leaves are
    /// rewritten differ (riscv from the P4D, LoongArch from the PGD).
    public enum Flavor: Sendable, CaseIterable {
        case riscv
        case loongarch
    }

    /// What a walk does to the entries it meets.
    enum Operation: Equatable {
        case masks(PageAttrMasks, Flavor)
        /// arm64's `pageattr_ops`: PUD and PMD block leaves, which the
        /// range must cover whole, and PTEs.
        case arm64Masks(PageAttrMasks)
        case setNoCache(UInt64)
        case clearNoCache(UInt64)
    }

    /// Models `__set_memory(addr, numpages, set_mask, clear_mask)`: from
    /// `address` rounded down to a page, `pages` pages; nothing for 0
    /// pages. The TLB flush over the range follows the walk.
    public static func setMemory(_ initMM: AddressSpace, _ address: UInt64, pages: UInt64, _ masks: PageAttrMasks,
                                 flavor: Flavor = .riscv,
                                 walker: WalkerKind = .range) throws(KernelPageAttrError) -> KernelPageAttrResult {
        guard pages > 0 else { return KernelPageAttrResult() }
        let start = address & ~Geometry.pageOffsetMask
        let end = start &+ pages &* Geometry.pageSize
        var result = try run(.masks(masks, flavor), initMM, start, end, walker)
        result.tlbFlushes.append(start..<end)
        return result
    }

    /// Models arm64's `__change_memory_common(start, size, set_mask,
    /// clear_mask)` (arch/arm64/mm/pageattr.c), under `set_memory_*()` and
    /// `set_memory_valid()`: `update_range_prot()` walks `[start, start +
    /// size)` with `walk_kernel_page_table_range_lockless()` and
    /// `pageattr_ops`, rewriting each PUD and PMD block leaf whole (then
    /// `ACTION_CONTINUE`) and each PTE, clear mask first; then the kernel
    /// TLB is flushed over the range. A block leaf the range covers only in
    /// part ends the walk with `.partialBlock` (the kernel WARNs and returns
    /// -EINVAL; its callers split such leaves first with
    /// `split_kernel_leaf_mapping()`, which is not modelled). The
    /// `find_vm_area()` checks of `change_memory_common()` and the linear
    /// alias update under `rodata_full` are not modelled: the model's kernel
    /// tables have no vmalloc areas. Only present words are rewritten, as
    /// for the other flavours; the model has no present-invalid encoding,
    /// so the flush is never skipped.
    public static func arm64ChangeMemory(_ initMM: AddressSpace, _ start: UInt64, size: UInt64, _ masks: PageAttrMasks,
                                         walker: WalkerKind = .range) throws(KernelPageAttrError) -> KernelPageAttrResult {
        let arch = initMM.geometry.layout.architecture
        guard arch == .arm64 else { throw .notArm64(arch) }
        guard size > 0 else { return KernelPageAttrResult() }
        var result = try run(.arm64Masks(masks), initMM, start, start &+ size, walker)
        result.tlbFlushes.append(start..<start &+ size)
        return result
    }

    /// Models `arch_dma_set_uncached(cpu_addr, size)`: each PTE of the
    /// range made cache-inhibited, its page flushed from the TLB and the
    /// data cache.
    public static func setNoCache(_ initMM: AddressSpace, _ address: UInt64, size: UInt64,
                                  walker: WalkerKind = .range) throws(KernelPageAttrError) -> KernelPageAttrResult {
        try run(.setNoCache(try cacheInhibitBit(initMM)), initMM, address, address &+ size, walker)
    }

    /// Models `arch_dma_clear_uncached(cpu_addr, size)`: each PTE of the
    /// range cacheable again, its page flushed from the TLB.
    public static func clearNoCache(_ initMM: AddressSpace, _ address: UInt64, size: UInt64,
                                    walker: WalkerKind = .range) throws(KernelPageAttrError) -> KernelPageAttrResult {
        try run(.clearNoCache(try cacheInhibitBit(initMM)), initMM, address, address &+ size, walker)
    }

    static func cacheInhibitBit(_ mm: AddressSpace) throws(KernelPageAttrError) -> UInt64 {
        let bit = mm.geometry.layout.cacheDisable
        guard bit != 0 else { throw .noCacheInhibitBit(mm.geometry.layout.architecture) }
        return bit
    }

    static func run(_ operation: Operation, _ mm: AddressSpace, _ start: UInt64, _ end: UInt64,
                    _ walker: WalkerKind) throws(KernelPageAttrError) -> KernelPageAttrResult {
        let result: KernelPageAttrResult
        do throws(PageWalkError) {
            switch walker {
            case .range: result = try rangeWalk(operation, mm, start, end)
            case .callback: result = try callbackWalk(operation, mm, start, end)
            }
        } catch {
            throw .walk(error)
        }
        if let at = result.partialBlockAt { throw .partialBlock(address: at) }
        return result
    }

    /// arm64's handlers refuse a block leaf at `level` that `[addr, next)`
    /// does not cover whole (`WARN_ON_ONCE((next - addr) != PMD_SIZE)`).
    static func refusesPartial(_ operation: Operation, _ mm: AddressSpace, level: PageTableLevel,
                               _ addr: UInt64, _ next: UInt64) -> Bool {
        guard case .arm64Masks = operation, level != .pte else { return false }
        return next &- addr != mm.geometry.entrySize(level)
    }

    // MARK: Shared rules

    /// Whether a leaf at `level` is rewritten: every PTE; block leaves by
    /// the flavor's handlers (riscv from the P4D, LoongArch from the PGD);
    /// never by OpenRISC, which has only a `pte_entry`.
    static func rewrites(_ operation: Operation, level: PageTableLevel) -> Bool {
        if level == .pte { return true }
        if case .arm64Masks = operation { return level == .pud || level == .pmd }
        guard case .masks(_, let flavor) = operation else { return false }
        return level != .pgd || flavor == .loongarch
    }

    /// The new value of a present word.
    static func rewritten(_ operation: Operation, _ word: UInt64) -> UInt64 {
        switch operation {
        case .masks(let m, _), .arm64Masks(let m): return m.apply(word)
        case .setNoCache(let bit): return word | bit
        case .clearNoCache(let bit): return word & ~bit
        }
    }

    /// The flushes OpenRISC's handlers make for the PTE of `address`
    /// mapping `pfn`.
    static func pageFlushes(_ operation: Operation, _ address: UInt64, pfn: UInt64, _ result: inout KernelPageAttrResult) {
        switch operation {
        case .masks, .arm64Masks:
            return
        case .setNoCache:
            result.tlbFlushes.append(address..<address + Geometry.pageSize)
            result.dcacheFlushes.append(pfn << Geometry.pageShift..<(pfn + 1) << Geometry.pageShift)
        case .clearNoCache:
            result.tlbFlushes.append(address..<address + Geometry.pageSize)
        }
    }
}
