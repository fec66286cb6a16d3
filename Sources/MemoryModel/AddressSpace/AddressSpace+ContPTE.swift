import Synchronization

// arm64 contiguous PTEs (CONFIG_ARM64_CONTPTE): folding, unfolding, and the
// access-flag updates that leave a folded block folded. The caller of each
// function holds the lock of the PTE table it names.
extension AddressSpace {
    /// Whether PTE writes here may fold blocks: arm64 user address spaces
    /// with `foldContiguousPTEs` (the kernel folds only for user mms).
    @inline(__always)
    var foldsContPTEs: Bool { layout.contiguous != 0 && !isKernel && options.foldContiguousPTEs }

    /// The block containing PTE `i` of `table`.
    @inline(__always)
    func contBlock(_ table: TableID, _ i: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        arena.entries(table) + EntryLayout.contBlockStart(i)
    }

    /// `w` with young set or cleared and dirty set or left as `young` and
    /// `dirty` say (`pte_mkyoung()`, `pte_mkold()`, `pte_mkdirty()`).
    @inline(__always)
    func withAccessBits(_ w: UInt64, young: Bool, dirty: Bool) -> UInt64 {
        var n = young ? w | layout.young : w & ~layout.young
        if dirty { n = layout.markDirty(n) }
        return n
    }

    /// Models `contpte_convert()` as `__contpte_try_unfold()` uses it: the
    /// block containing PTE `i` loses PTE_CONT, and since the folded block
    /// had one access flag and one dirty state, every entry keeps the young
    /// and dirty state gathered over the block.
    func unfoldContiguous(_ table: TableID, _ i: Int) {
        let block = contBlock(table, i)
        let gathered = layout.contPTEGathered(block[0].load(ordering: .relaxed), block: block)
        let young = gathered & layout.young != 0, dirty = layout.isDirtyPTE(gathered)
        for k in 0..<EntryLayout.contPTEs {
            let w = block[k].load(ordering: .relaxed)
            guard layout.isValidCont(w) else { continue }
            block[k].store(withAccessBits(w & ~layout.contiguous, young: young || w & layout.young != 0, dirty: dirty),
                           ordering: .releasing)
        }
    }

    /// A split of `folio` remaps its pages (`unmap_folio()`, then
    /// `remove_migration_ptes()`), which leaves no block of it folded:
    /// unfolds the blocks of its PTE mapping that starts at PTE `first` of
    /// `table` (locked; the folio lies inside the table).
    package func unfoldContiguous(mapping folio: Folio, table: TableID, first: Int) {
        guard layout.contiguous != 0, first >= 0 else { return }
        let e = arena.entries(table)
        for i in stride(from: first, to: min(first + folio.pageCount, Geometry.entriesPerTable), by: EntryLayout.contPTEs)
        where layout.isValidCont(e[i].load(ordering: .relaxed)) {
            unfoldContiguous(table, i)
        }
    }

    /// `unfoldContiguous(mapping:table:first:)` in every address space
    /// that maps `folio`, whose first page is at `address` (the caller holds
    /// no PTE lock).
    func unfoldContiguousMappings(of folio: Folio, at address: UInt64) throws(ModelError) {
        guard layout.contiguous != 0, folio.pageCount >= EntryLayout.contPTEs else { return }
        let walk = beginRmapWalk(folio)
        defer { walk.end() }
        for mm in walk.spaces {
            for k in stride(from: 0, to: folio.pageCount, by: EntryLayout.contPTEs) {
                let a = address + UInt64(k) << Geometry.pageShift
                try withPTEMapping(in: mm, a, pfn: folio.pfn + UInt64(k)) { (t, i, _) throws(ModelError) in
                    if mm.layout.isValidCont(mm.arena.entries(t)[i].load(ordering: .relaxed)) { mm.unfoldContiguous(t, i) }
                }
            }
        }
    }

    /// `w` as `__contpte_try_fold()` compares it: old and clean
    /// (`pte_mkold(pte_mkclean())`).
    @inline(__always)
    func foldComparable(_ w: UInt64) -> UInt64 { layout.markClean(w) & ~layout.young }

    /// Models `contpte_try_fold()` after PTE `i` of `table` was written:
    /// only a write of a block's last entry tries, with a valid, not
    /// special, not folded entry mapping the last frame of an aligned 16.
    /// Then (`__contpte_try_fold()`) the block folds when its large folio
    /// covers the whole block and all 16 entries map its consecutive pages
    /// with the same bits but for young and dirty; the folded entries all
    /// carry the young and dirty state gathered over the block.
    func tryFoldContiguous(_ table: TableID, _ i: Int) {
        guard foldsContPTEs, EntryLayout.isLastInContBlock(i) else { return }
        let block = contBlock(table, i)
        let last = EntryLayout.contPTEs - 1
        let w = block[last].load(ordering: .relaxed)
        guard w & layout.valid != 0, w & layout.contiguous == 0, !layout.isSpecialPTE(w) else { return }
        let pfn = layout.pfn(w)
        guard pfn & UInt64(last) == UInt64(last), let page = memory.page(pfn), page.index >= last else { return }
        let expectedLast = foldComparable(w)
        for k in 0..<last {
            let offset = UInt64(last - k) << Geometry.pageShift
            if foldComparable(block[k].load(ordering: .relaxed)) != expectedLast &- offset { return }
        }
        let gathered = layout.contPTEGathered(w, block: block)
        let young = gathered & layout.young != 0, dirty = layout.isDirtyPTE(gathered)
        for k in 0...last {
            let s = block[k].load(ordering: .relaxed)
            block[k].store(withAccessBits(s | layout.contiguous, young: young, dirty: dirty), ordering: .releasing)
        }
    }

    /// Models `contpte_set_ptes()` for a new mapping of `count` consecutive
    /// pages from `pfn` at PTEs `first...` of `table` (all none): entries
    /// of a whole aligned block whose frames are aligned too are written
    /// folded, the others plain. Folding is subject to `foldsContPTEs`.
    func setPTEs(_ table: TableID, _ first: Int, pfn: UInt64, count: Int, level: PageTableLevel = .pte,
                 _ attrs: LeafAttributes) {
        let e = arena.entries(table)
        let n = EntryLayout.contPTEs
        for k in 0..<count {
            let i = first + k
            let blockStart = EntryLayout.contBlockStart(i)
            let p = pfn + UInt64(k)
            let whole = blockStart >= first && blockStart + n <= first + count
                && (p - UInt64(i - blockStart)) % UInt64(n) == 0
            var a = attrs
            if foldsContPTEs && whole { a.insert(.contiguous) } else { a.remove(.contiguous) }
            let old = e[i].load(ordering: .relaxed)
            e[i].store(layout.leaf(pfn: p, level: level, a), ordering: .releasing)
            if old == 0 { arena.adjustUsed(table, 1) }
        }
    }

    /// Models `ptep_test_and_clear_young()` on PTE `i` of `table`: whether
    /// the entry was young, now old. On a folded block
    /// (`contpte_ptep_test_and_clear_young()`) all 16 entries are made old,
    /// without unfolding, and the answer is whether any was young.
    package func ptepTestAndClearYoung(_ table: TableID, _ i: Int) -> Bool {
        let e = arena.entries(table)
        let w = e[i].load(ordering: .relaxed)
        guard layout.isValidCont(w) else {
            guard w & layout.young != 0, layout.isPresent(w, .pte) else { return false }
            e[i].store(w & ~layout.young, ordering: .releasing)
            return true
        }
        let block = contBlock(table, i)
        var any = false
        for k in 0..<EntryLayout.contPTEs {
            let s = block[k].load(ordering: .relaxed)
            if s & layout.young != 0 {
                block[k].store(s & ~layout.young, ordering: .releasing)
                any = true
            }
        }
        return any
    }

    /// `ptep_test_and_clear_young()` on PTEs `first ..< first + count` of
    /// `table`, one call per batch: whether any was young.
    package func ptepTestAndClearYoung(_ table: TableID, _ first: Int, count: Int) -> Bool {
        var any = false
        for i in first..<(first &+ count) where ptepTestAndClearYoung(table, i) { any = true }
        return any
    }

    /// Models `clear_young_dirty_ptes()` on the present PTEs
    /// `first ..< first + count` of `table` (MADV_FREE, MADV_COLD): made old
    /// and/or clean in place. A folded block at either end is taken whole
    /// and stays folded (`contpte_clear_young_dirty_ptes()`: access and
    /// dirty state is per folio). Returns how many entries changed.
    @discardableResult
    package func clearYoungDirtyPTEs(_ table: TableID, _ first: Int, count: Int, young: Bool, dirty: Bool) -> Int {
        guard count > 0 else { return 0 }
        let e = arena.entries(table)
        var lo = first, hi = first + count
        if layout.isValidCont(e[hi - 1].load(ordering: .relaxed)) {
            hi = EntryLayout.contBlockStart(hi - 1) + EntryLayout.contPTEs
        }
        if layout.isValidCont(e[lo].load(ordering: .relaxed)) { lo = EntryLayout.contBlockStart(lo) }
        var changed = 0
        for i in lo..<hi {
            let w = e[i].load(ordering: .relaxed)
            guard w != 0, layout.isPresent(w, .pte) else { continue }
            var n = w
            if young { n &= ~layout.young }
            if dirty { n = layout.markClean(n) }
            if n != w {
                e[i].store(n, ordering: .releasing)
                changed += 1
            }
        }
        return changed
    }

    /// Models `ptep_set_access_flags()` after a fault on present PTE `i` of
    /// `table`: `new` is the entry with the access bits the fault sets
    /// (young; dirty and perhaps writable on a write). On a folded block
    /// whose write permission stays (`contpte_ptep_set_access_flags()`) the
    /// bits go to all 16 entries and the block stays folded; a change of
    /// write permission unfolds the block first.
    func ptepSetAccessFlags(_ table: TableID, _ i: Int, _ new: UInt64) {
        let e = arena.entries(table)
        let old = e[i].load(ordering: .relaxed)
        guard layout.isValidCont(old) else {
            if new != old { e[i].store(new, ordering: .releasing) }
            return
        }
        if (old ^ new) & layout.write != 0 {
            unfoldContiguous(table, i)
            let now = e[i].load(ordering: .relaxed)
            e[i].store((new | (now & layout.young)) & ~layout.contiguous, ordering: .releasing)
            return
        }
        // __ptep_set_access_flags(): the access bits are or-ed in, and
        // PTE_RDONLY stays only where the new entry keeps it.
        let accessBits = layout.readOnly | layout.young | layout.write | layout.dirty
        let added = (new ^ layout.readOnly) & accessBits
        let block = contBlock(table, i)
        for k in 0..<EntryLayout.contPTEs {
            let s = block[k].load(ordering: .relaxed)
            let n = ((s ^ layout.readOnly) | added) ^ layout.readOnly
            if n != s { block[k].store(n, ordering: .releasing) }
        }
    }
}
