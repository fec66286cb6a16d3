import MemoryModel
import Synchronization

/// One entry of an update walk, with the updates a walker user makes under
/// the entry's table lock: what the kernel's handlers do through the `pte_t *`
/// or `pmd_t *` they are given.
///
/// `~Copyable`, and lent to the loop body as `borrowing`: the body cannot
/// keep it, return it or capture it in a closure, so every update happens
/// while the walker holds the lock. Each update also checks that the walk
/// has not moved past the entry (`handleOutlivedLock` otherwise).
///
/// An update applies to the whole entry: every page-table entry of a batch,
/// or the one PMD or PUD leaf. Updates that do not change an entry of the
/// kind met are no-ops (making a swap entry old); those that cannot apply
/// are `misuse` errors (a marker on a present page). Hugetlb entries are
/// read-only here, as the kernel's hugetlb walkers use their own helpers;
/// the one exception is the package `clearHugetlbYoung()` (DAMON).
public struct UpdateEntry: ~Copyable {
    /// The entry as a read walk reports it.
    public let entry: WalkEntry
    /// The walk came back to this address after dropping the lock
    /// (`.unlockAndRetry`, `.splitFolio`, `.splitPMD`): the entry was read
    /// anew. A body that asked for a split can tell a split that could not
    /// be made.
    public let isRetry: Bool
    let target: UpdateTarget
    unowned(unsafe) let mm: AddressSpace
    let state: UnsafeMutablePointer<UpdateWalkState>
    let generation: UInt64

    init(entry: WalkEntry, target: UpdateTarget, mm: AddressSpace, state: UnsafeMutablePointer<UpdateWalkState>,
         generation: UInt64, isRetry: Bool) {
        self.entry = entry; self.target = target; self.mm = mm; self.state = state
        self.generation = generation; self.isRetry = isRetry
    }

    @inlinable public var start: UInt64 { entry.start }
    @inlinable public var end: UInt64 { entry.end }
    @inlinable public var content: WalkContent { entry.content }
    @inlinable public var level: EntryLevel { entry.level }

    /// The folio the entry maps, if any.
    public var folio: Folio? {
        if case .folio(let f, _, _) = entry.content { return f }
        return nil
    }

    // MARK: Checks

    @inline(__always)
    func checkHeld() throws(PageWalkError) {
        guard state.pointee.generation == generation else {
            throw .handleOutlivedLock("entry 0x\(String(entry.start, radix: 16))-0x\(String(entry.end, radix: 16)): the walk has moved on")
        }
    }

    /// The VMA, which the walk lock keeps (unretained: no reference
    /// counting per entry).
    var vmaUnretained: VMA? {
        entry.vmaPointer.map { Unmanaged<VMA>.fromOpaque($0).takeUnretainedValue() }
    }

    /// The layout, read through the walk's state (not copied per entry).
    var layout: EntryLayout { @inline(__always) get { state.pointee.layout } }

    /// Rewrites each word of the entry with `transform` (nil leaves it),
    /// under the lock the walk holds. Returns how many words changed.
    @discardableResult @inline(__always)
    func rewrite(_ what: String, _ transform: (UInt64) throws(PageWalkError) -> UInt64?) throws(PageWalkError) -> Int {
        try checkHeld()
        var changed = 0
        switch target {
        case .ptes(let table, let first, let words):
            for i in first..<(first + entry.count) {
                let old = words[i].load(ordering: .relaxed)
                guard let new = try transform(old), new != old else { continue }
                mm.storePTE(table, i, new)
                changed += 1
            }
        case .leaf(let slot):
            let old = mm.entry(at: slot)
            if let new = try transform(old), new != old {
                mm.setEntry(at: slot, new)
                changed += 1
            }
        case .hugetlb:
            throw .misuse("\(what) on the hugetlb entry at 0x\(String(entry.start, radix: 16)): hugetlb entries are read-only in an update walk")
        case .noTable, .outside:
            break
        }
        return changed
    }

    @inline(__always)
    func isPresent(_ w: UInt64) -> Bool { w != 0 && state.pointee.layout.isPresent(w, entry.level.tableLevel) }

    /// A non-present entry that is neither none nor a marker: swap,
    /// migration, device, hwpoison; their soft-dirty and uffd-wp bits live
    /// in the swap layout.
    func isSwapLike(_ w: UInt64) -> Bool {
        guard w != 0, !layout.isPresent(w, level.tableLevel) else { return false }
        if case .marker = SoftLeafEntry(decoding: w, layout: layout).leaf { return false }
        return true
    }

    func marker(of w: UInt64) -> PTEMarker? {
        guard w != 0, !layout.isPresent(w, level.tableLevel),
              case .marker(let m) = SoftLeafEntry(decoding: w, layout: layout).leaf else { return nil }
        return m
    }

    func encode(_ m: PTEMarker) throws(PageWalkError) -> UInt64 {
        do { return try SoftLeafEntry(.marker(m)).encode(layout) } catch { throw .model(error) }
    }

    /// The entry's range, owed to the TLB gather.
    func owesFlush() { state.pointee.tlb.adjust(entry.start, entry.end) }

    // MARK: Access and dirty bits

    /// `ptep_test_and_clear_young()` / `pmdp_test_and_clear_young()` over
    /// the entry: true when some page was young. Needs no TLB flush.
    @discardableResult
    public func testAndClearYoung() throws(PageWalkError) -> Bool {
        try checkHeld()
        let young = state.pointee.layout.young
        // The common case: a batch of present PTEs in a locked table.
        // A folded arm64 block is made old whole, and stays folded.
        // (One call for the batch: a call per PTE through the unretained
        // `mm` retained it each time.)
        if case .ptes(let table, let first, _) = target {
            return mm.ptepTestAndClearYoung(table, first, count: entry.count)
        }
        return try rewrite("testAndClearYoung") { w in isPresent(w) && w & young != 0 ? w & ~young : nil } > 0
    }

    /// `clear_young_dirty_ptes()` (MADV_FREE): present entries made old
    /// and/or clean; the range is owed a flush.
    public func clearYoungDirty(young: Bool = true, dirty: Bool = true) throws(PageWalkError) {
        // PTEs in place, without unfolding a folded arm64 block.
        if case .ptes(let table, let first, _) = target {
            try checkHeld()
            if mm.clearYoungDirtyPTEs(table, first, count: entry.count, young: young, dirty: dirty) > 0 { owesFlush() }
            return
        }
        let l = layout
        let n = try rewrite("clearYoungDirty") { w in
            guard isPresent(w) else { return nil }
            var n = w
            if young { n &= ~l.young }
            if dirty { n = l.markClean(n) }
            return n
        }
        if n > 0 { owesFlush() }
    }

    /// `pte_mkclean()` on present entries.
    public func makeClean() throws(PageWalkError) { try clearYoungDirty(young: false, dirty: true) }

    // MARK: Protection

    /// `pte_wrprotect()` on present entries.
    public func writeProtect() throws(PageWalkError) {
        let l = layout
        if try rewrite("writeProtect", { w in isPresent(w) ? l.writeProtect(w) : nil }) > 0 { owesFlush() }
    }

    /// `pte_mkwrite()` on present entries: the caller has checked that the
    /// VMA allows writing. Widening needs no flush.
    public func makeWritable() throws(PageWalkError) {
        let l = layout
        try rewrite("makeWritable") { w in isPresent(w) ? l.makeWritable(w) : nil }
    }

    /// clear_refs' `clear_soft_dirty()` and `clear_soft_dirty_pmd()`:
    /// present entries are write-protected (so that the next write faults
    /// and sets the bit again) and lose soft-dirty; swap and migration
    /// entries lose their swap soft-dirty bit.
    public func clearSoftDirty() throws(PageWalkError) {
        let l = layout
        let n = try rewrite("clearSoftDirty") { w in
            if isPresent(w) { return l.writeProtect(w) & ~l.softDirty }
            if isSwapLike(w) && l.swapSoftDirty != 0 { return w & ~l.swapSoftDirty }
            return nil
        }
        if n > 0 { owesFlush() }
    }

    // MARK: userfaultfd write-protect

    /// uffd-wp on: present entries write-protected with the uffd-wp bit,
    /// swap-like entries with the swap uffd-wp bit, none PTEs get a uffd-wp
    /// marker (`UFFD_FEATURE_WP_UNPOPULATED`), markers gain the bit.
    public func setUffdWP() throws(PageWalkError) {
        let l = layout
        let wpMarker = try encode(.uffdWP)
        let inTable = isInPTETable
        var flush = false
        try rewrite("setUffdWP") { (w) throws(PageWalkError) -> UInt64? in
            if w == 0 { return inTable ? wpMarker : nil }
            if isPresent(w) { flush = true; return l.writeProtect(w) | l.uffdWP }
            if let m = marker(of: w) { return try encode(m.union(.uffdWP)) }
            return w | l.swapUffdWP
        }
        if flush { owesFlush() }
    }

    /// uffd-wp off: the bits cleared, uffd-wp markers removed.
    public func clearUffdWP() throws(PageWalkError) {
        let l = layout
        try rewrite("clearUffdWP") { (w) throws(PageWalkError) -> UInt64? in
            if w == 0 { return nil }
            if isPresent(w) { return w & ~l.uffdWP }
            if let m = marker(of: w) {
                let rest = m.subtracting(.uffdWP)
                return rest.isEmpty ? 0 : try encode(rest)
            }
            return w & ~l.swapUffdWP
        }
    }

    // MARK: Markers

    /// Whether the entry's words are PTEs in a table the walk holds.
    var isInPTETable: Bool { if case .ptes = target { return true } else { return false } }

    /// Writes marker `m` into none PTEs and adds it to existing markers, as
    /// a `pte_entry` handler does with `set_pte_at()` (PAGEMAP_SCAN's
    /// uffd-wp markers). Present, swap and upper-level entries cannot hold
    /// one; none ranges without a table need `install`.
    public func setMarker(_ m: PTEMarker) throws(PageWalkError) {
        guard isInPTETable else {
            throw .misuse("setMarker on the \(entry.level) entry at 0x\(String(entry.start, radix: 16)): markers live in PTE tables")
        }
        try rewrite("setMarker") { (w) throws(PageWalkError) -> UInt64? in
            if w == 0 { return try encode(m) }
            if let old = marker(of: w) { return try encode(old.union(m)) }
            throw .misuse("setMarker over a populated PTE at 0x\(String(entry.start, radix: 16))")
        }
    }

    /// Removes marker bits `m`; a marker left with none becomes a none PTE.
    public func clearMarker(_ m: PTEMarker) throws(PageWalkError) {
        try rewrite("clearMarker") { (w) throws(PageWalkError) -> UInt64? in
            guard let old = marker(of: w), !old.isDisjoint(with: m) else { return nil }
            let rest = old.subtracting(m)
            return rest.isEmpty ? 0 : try encode(rest)
        }
    }

    // MARK: Zap

    /// Clears the entry as zap does (`zap_present_ptes()`,
    /// `zap_nonpresent_ptes()`, `zap_huge_pmd()`): folio mappings, RSS and
    /// swap references dropped, dirty file pages marked dirty. Markers
    /// stay unless `dropMarkers` (munmap's rule); uffd-wp protected file
    /// pages leave a marker. Present entries are owed a flush.
    public func clear(dropMarkers: Bool = false) throws(PageWalkError) {
        try checkHeld()
        switch target {
        case .ptes(let table, let first, let words):
            guard let vma = vmaUnretained else { return }
            var present = false
            for i in first..<(first + entry.count) {
                let w = words[i].load(ordering: .relaxed)
                if isPresent(w) { present = true }
                mm.zapPTE(vma, table, i, dropMarkers: dropMarkers)
            }
            if present { owesFlush() }
        case .leaf(let slot):
            guard slot.level == .pmd else {
                throw .misuse("clear on the \(entry.level) leaf at 0x\(String(entry.start, radix: 16)): only PMD and PTE entries are zapped here")
            }
            if isPresent(mm.entry(at: slot)) { owesFlush() }
            mm.zapPMDLocked(slot)
        case .hugetlb:
            throw .misuse("clear on the hugetlb entry at 0x\(String(entry.start, radix: 16)): hugetlb entries are read-only in an update walk")
        case .noTable, .outside:
            break
        }
    }
}
