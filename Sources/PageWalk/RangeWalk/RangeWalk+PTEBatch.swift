import MemoryModel
import Synchronization

// The PTE level: a locked table read as batches of like entries.
extension RangeWalk.Iterator {
    /// The next entry of the locked PTE table: a batch starting at `ptIndex`.
    @inlinable @inline(always)
    mutating func pteEntry(_ e: UnsafeMutablePointer<Atomic<UInt64>>) -> WalkEntry {
        let i = ptIndex
        var g = GatheredBlock()
        let w = batchWord(e, i, contValidBits, &g)
        let a = ptBase &+ UInt64(truncatingIfNeeded: i) << Geometry.pageShift
        if w == 0 { return nonePTEs(e, i, a) }
        if w & ptePresentBits != 0 { return presentPTE(e, i, w, a) }
        if layout.swapType(w) < SoftLeaf.maxSwapFiles { return swapPTEs(e, i, w, a) }
        return nonPresentPTE(e, i, w, a)
    }

    /// Swap entries from `i`: with batching, `swap_pte_batch()` — the
    /// following PTEs that are the same word but for the next offsets.
    @inlinable @inline(always)
    mutating func swapPTEs(_ e: UnsafeMutablePointer<Atomic<UInt64>>, _ i: Int, _ w: UInt64, _ a: UInt64) -> WalkEntry {
        var n = 1
        if batching {
            let step = layout.swapOffsetStep
            var expected = w
            while i + n < ptEnd {
                expected &+= step
                if e[i + n].load(ordering: .relaxed) != expected { break }
                n += 1
            }
        }
        ptIndex = i &+ n
        return WalkEntry(start: a, end: runEnd(a, n), level: .pte, count: n, vmaPointer: ptVMAPointer, raw: w,
                         attributes: Self.swapAttributes(layout.swapBits(w)),
                         content: .swap(SwapEntry(type: layout.swapType(w), offset: layout.swapOffset(w))))
    }

    /// A run of none PTEs from `i`.
    @inlinable @inline(always)
    mutating func nonePTEs(_ e: UnsafeMutablePointer<Atomic<UInt64>>, _ i: Int, _ a: UInt64) -> WalkEntry {
        var n = 1
        if batching { while i + n < ptEnd && e[i + n].load(ordering: .relaxed) == 0 { n += 1 } }
        ptIndex = i &+ n
        let content: WalkContent = ptVMAPointer == nil ? .hole(depth: geometry.realDepth(4)) : .none
        return WalkEntry(start: a, end: runEnd(a, n), level: .pte, count: n, vmaPointer: ptVMAPointer, raw: 0,
                         attributes: [], content: content)
    }

    /// The end of `n` pages from `a`; the walk's end when they reach the
    /// top of the address space.
    @inlinable @inline(always)
    func runEnd(_ a: UInt64, _ n: Int) -> UInt64 {
        let e = a &+ UInt64(truncatingIfNeeded: n) << Geometry.pageShift
        return e == 0 ? end : e
    }

    @inlinable @inline(always)
    mutating func presentPTE(_ e: UnsafeMutablePointer<Atomic<UInt64>>, _ i: Int, _ w: UInt64, _ a: UInt64) -> WalkEntry {
        if presentRuns { return presentRun(e, i, w, a) }
        let pfn = layout.pfn(w)
        // vm_normal_page(): special entries have no page, except the zero
        // page when asked for as a folio; kernel mappings have none.
        if w & noPageBits == 0 || (pfn == zeroPFN && zeroPageAsFolio && !isKernel),
           let (f, isLarge) = folios.folioAndSize(containing: pfn) {
            let page = Int(pfn &- f.pfn)
            var n = 1
            var merged = w
            if batching && isLarge {
                let (count, orBits) = folioPTEBatch(e, i, w, limit: f.pageCount - page)
                n = count
                merged = w | (orBits & ignoredBits)
            }
            ptIndex = i &+ n
            // A whole aligned arm64 contiguous run (only a batch can be one).
            let level: EntryLevel = n >= 16 && i & 15 == 0 && merged & layout.contiguous != 0 ? .contPTE : .pte
            return WalkEntry(start: a, end: runEnd(a, n), level: level, count: n, vmaPointer: ptVMAPointer, raw: w,
                             attributeWord: AttributeWord(presentWord: merged, presentSource),
                             content: .folio(f, firstPage: page, pageCount: n))
        }
        ptIndex = i &+ 1
        return WalkEntry(start: a, end: runEnd(a, 1), level: .pte, count: 1, vmaPointer: ptVMAPointer, raw: w,
                         attributeWord: AttributeWord(presentWord: w, presentSource), content: .pfn(pfn))
    }

    /// The access state of the folded block a batch last met, gathered once
    /// per block.
    @usableFromInline
    struct GatheredBlock {
        @usableFromInline var block = -1
        @usableFromInline var young = false
        @usableFromInline var dirty = false
        @inlinable init() {}
    }

    /// PTE `j` as `ptep_get()` reads it, for a batch: a folded arm64
    /// block's young and dirty state gathered once per block; `contBits` is
    /// `contValidBits`, read by the caller before its loop. (`mutating`
    /// only so that the iterator is passed by reference: called per PTE, a
    /// non-mutating method copied the whole iterator each time.)
    @inlinable @inline(always)
    mutating func batchWord(_ e: UnsafeMutablePointer<Atomic<UInt64>>, _ j: Int, _ contBits: UInt64,
                            _ g: inout GatheredBlock) -> UInt64 {
        let w = e[j].load(ordering: .relaxed)
        guard contBits != 0 && w & contBits == contBits else { return w }
        return gatheredWord(e, j, w, &g)
    }

    /// `batchWord` for a PTE of a folded block, kept out of line so that
    /// the loops of walks without contiguous entries stay small.
    @usableFromInline @inline(never)
    mutating func gatheredWord(_ e: UnsafeMutablePointer<Atomic<UInt64>>, _ j: Int, _ w: UInt64,
                               _ g: inout GatheredBlock) -> UInt64 {
        let b = EntryLayout.contBlockStart(j)
        if b != g.block {
            (g.young, g.dirty) = layout.contPTEAccessState(block: e + b)
            g.block = b
        }
        return layout.withGatheredAccess(w, young: g.young, dirty: g.dirty)
    }

    /// A `.present` run from `i` (folios not looked up): with batching, the
    /// following present PTEs that agree on `presentRunBits`, each read as
    /// `ptep_get()` reads it. Out of line: called once per run, and
    /// inlined it grew the walks that look folios up.
    @usableFromInline @inline(never)
    mutating func presentRun(_ e: UnsafeMutablePointer<Atomic<UInt64>>, _ i: Int, _ w: UInt64, _ a: UInt64) -> WalkEntry {
        var n = 1
        var merged = w
        if batching {
            let keep = presentRunBits
            let present = ptePresentBits
            let cont = contValidBits
            var gathered = GatheredBlock()
            while i &+ n < ptEnd {
                let w2 = batchWord(e, i &+ n, cont, &gathered)
                if w2 & present == 0 || (w2 ^ w) & keep != 0 { break }
                merged |= w2
                n &+= 1
            }
            merged = w | (merged & ignoredBits)
        }
        ptIndex = i &+ n
        return WalkEntry(start: a, end: runEnd(a, n), level: .pte, count: n, vmaPointer: ptVMAPointer, raw: w,
                         attributeWord: AttributeWord(presentWord: merged, presentSource),
                         content: .present(firstPFN: layout.pfn(w)))
    }

    /// `folio_pte_batch()`: how many PTEs from `i` map the next pages of
    /// the same folio (at most `limit`) with no difference but the
    /// ignored bits, and those bits or-ed over the run. Each PTE is read as
    /// `ptep_get()` reads it (a folded arm64 block's young and dirty state
    /// gathered once per block).
    /// (`mutating` only so that the iterator is passed by reference:
    /// a non-mutating call copied the whole iterator per batch.)
    @usableFromInline
    mutating func folioPTEBatch(_ e: UnsafeMutablePointer<Atomic<UInt64>>, _ i: Int, _ w: UInt64, limit folioLeft: Int) -> (Int, UInt64) {
        let limit = Swift.min(ptEnd - i, folioLeft)
        let keep = ~ignoredBits
        var expected = w
        var orBits = w
        var n = 1
        let cont = contValidBits
        var gathered = GatheredBlock()
        while n < limit {
            expected &+= 1 << Geometry.pageShift
            let w2 = batchWord(e, i + n, cont, &gathered)
            if (w2 ^ expected) & keep != 0 { break }
            orBits |= w2
            n += 1
        }
        return (n, orBits)
    }

    @usableFromInline
    mutating func nonPresentPTE(_ e: UnsafeMutablePointer<Atomic<UInt64>>, _ i: Int, _ w: UInt64, _ a: UInt64) -> WalkEntry {
        let leaf = SoftLeafEntry(decoding: w, layout: layout)
        var n = 1
        if batching {
            switch leaf.leaf {
            case .swap(let s):
                // swap_pte_batch(): consecutive offsets, same type and bits.
                while i + n < ptEnd {
                    let w2 = e[i + n].load(ordering: .relaxed)
                    guard w2 != 0, !layout.isPresent(w2, .pte) else { break }
                    let next = SoftLeafEntry(decoding: w2, layout: layout)
                    guard next.bits == leaf.bits,
                          case .swap(let s2) = next.leaf, s2.type == s.type, s2.offset == s.offset + UInt64(n) else { break }
                    n += 1
                }
            case .marker:
                while i + n < ptEnd && e[i + n].load(ordering: .relaxed) == w { n += 1 }
            default:
                break
            }
        }
        ptIndex = i &+ n
        return WalkEntry(start: a, end: runEnd(a, n), level: .pte, count: n, vmaPointer: ptVMAPointer, raw: w,
                         attributes: Self.swapAttributes(leaf.bits), content: content(of: leaf.leaf, offset: 0))
    }
}
