import MemoryModel

extension AddressSpace {
    /// An update walk of kernel tables (`init_mm`, no VMAs, no table locks),
    /// under `init_mm`'s mmap write lock, which this call takes unless the
    /// thread holds it already: what the architectures' kernel-table
    /// writers (`set_memory_*()` on riscv and LoongArch, OpenRISC's
    /// uncached DMA mappings) hold around `walk_kernel_page_table_range()`.
    /// Every entry word comes alone (no batching), a present one as `.pfn`
    /// at its level; the body changes it with `UpdateEntry.rewriteBits`.
    /// Package, not public: kernel tables are the kernel's.
    ///
    /// `lockless`: arm64's writers (`walk_kernel_page_table_range_lockless()`)
    /// hold no lock, the caller owning the range. The range walker needs a
    /// lock token, so such a walk runs under any hold the thread has, or
    /// takes `init_mm`'s mmap read lock, which excludes no other reader of
    /// kernel tables (ptdump holds it for read too).
    package func withKernelUpdateWalk<R>(_ range: Range<UInt64>, lockless: Bool = false,
                                         _ body: (inout UpdateWalk) throws(PageWalkError) -> R) throws(PageWalkError) -> R {
        guard isKernel else { throw .wrongAddressSpace("\(self) is not a kernel address space") }
        let options = RangeWalkOptions(batching: false)
        func run(_ token: MmapLockToken) throws(PageWalkError) -> R {
            var state = UpdateWalkState(mayInstall: false, layout: geometry.layout)
            let rw = try walk(range, lock: token, options: options)
            return try withUnsafeMutablePointer(to: &state) { (p) throws(PageWalkError) -> R in
                var walk = UpdateWalk(rw, lock: token.mode == .write ? .mmapWrite : .mmapRead, state: p, splitsHugePMDs: false)
                return try body(&walk)
            }
        }
        if let held = heldMmapLockToken(), held.mode == .write || lockless { return try run(held) }
        if lockless { return try withMmapReadLock { (t) throws(PageWalkError) in try run(t) } }
        return try withMmapWriteLock { (t) throws(PageWalkError) in try run(t) }
    }
}

extension UpdateEntry {
    /// Rewrites the bits of each present word of the entry as
    /// `(word & ~clear) | set`: a kernel-table writer's `set_pte()`,
    /// `set_pmd()` … of a changed protection. None and non-present words
    /// are left alone. Returns how many words changed; owes no flush (the
    /// writers flush the kernel range themselves).
    @discardableResult
    package func rewriteBits(set: UInt64, clear: UInt64) throws(PageWalkError) -> Int {
        try rewrite("rewriteBits") { w in isPresent(w) ? (w & ~clear) | set : nil }
    }
}

extension UpdateEntry {
    /// The slot of the one entry word of a kernel update walk's entry (the
    /// PTE, or the block leaf), for arm64's splits, which rebuild tables
    /// rather than rewrite bits; nil for an entry with no word.
    package func kernelSlot() throws(PageWalkError) -> EntrySlot? {
        try checkHeld()
        switch target {
        case .ptes(let table, let first, _): return EntrySlot(table, first, .pte)
        case .leaf(let slot): return slot
        case .noTable, .outside, .hugetlb: return nil
        }
    }
}
