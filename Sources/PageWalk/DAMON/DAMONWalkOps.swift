import MemoryModel

extension DAMONVaddr {
    /// `walk->private` of the stat walk (`struct damos_va_stat_private`).
    public struct StatPrivate {
        var scheme: DAMOSScheme
        public internal(set) var passed: UInt64 = 0
    }

    /// The PMD-level entry handlers share this: a PMD leaf (or a PMD
    /// migration entry) under the PMD lock, `pmd_trans_huge_lock()`'s
    /// case, given the present leaf word; true when it was one, and the PTE
    /// table was not to be walked.
    static func withHugePMD(_ mm: AddressSpace, _ p: EntryPointer<PMD>, _ body: (UInt64) -> Void) -> Bool {
        guard !p.hasTrivialEntries else { return false }
        let pmd = p.entry
        guard pmd.isLeaf || pmd.isSwapFormat else { return false }
        let lock = mm.lock(forEntriesOf: p.slot.table, level: .pmd)
        lock.lock()
        defer { lock.unlock() }
        let now = p.entry
        if now.isLeaf { body(now.rawValue) }
        return now.isLeaf || now.isSwapFormat
    }

    /// The PTE half of the access-check handlers: the PTE at `addr` under
    /// its table's lock, given the table, index and present word; nothing
    /// when the table is gone or the PTE not present.
    static func withPresentPTE(_ access: LevelAccess, _ p: EntryPointer<PMD>, _ addr: UInt64,
                               _ body: (TableID, Int, UInt64) -> Void) {
        guard let table = access.lockPTETable(p.slot) else { return }
        defer { access.unlockPTETable(table) }
        let i = access.geometry.index(addr, at: .pte)
        let w = access.tables.entries(table)[i].load(ordering: .acquiring)
        guard w != 0, access.mm.geometry.layout.isPresent(w, .pte) else { return }
        body(table, i, w)
    }

    /// The shape of the access-check `pmd_entry` handlers: a PMD leaf to
    /// `huge` under the PMD lock, else the present PTE at `addr` to `pte`
    /// under the PTE lock.
    static func leafAt(_ access: LevelAccess, _ p: EntryPointer<PMD>, _ addr: UInt64, huge: (UInt64) -> Void,
                       pte: (TableID, Int, UInt64) -> Void) {
        if withHugePMD(access.mm, p, huge) { return }
        withPresentPTE(access, p, addr, pte)
    }

    /// `damon_pmdp_mkold()` on the PMD leaf `w` at `slot`, under the PMD
    /// lock: true when its folio was found and marked idle.
    @discardableResult
    static func pmdpMkold(_ mm: AddressSpace, _ slot: EntrySlot, _ w: UInt64) -> Bool {
        let layout = mm.geometry.layout
        guard let f = damonGetFolio(mm.memory, layout.pfn(w)) else { return false }
        let young = w & layout.young != 0
        if young { mm.setEntry(at: slot, w & ~layout.young) }
        markOld(f, wasYoung: young)
        return true
    }

    /// `damon_ptep_mkold()` on the present PTE `w`, index `i` of `table`,
    /// under the PTE lock: true when its folio was found and marked idle.
    @discardableResult
    static func ptepMkold(_ mm: AddressSpace, _ table: TableID, _ i: Int, _ w: UInt64) -> Bool {
        guard let f = damonGetFolio(mm.memory, mm.geometry.layout.pfn(w)) else { return false }
        markOld(f, wasYoung: mm.ptepTestAndClearYoung(table, i))
        return true
    }

    /// Models `damon_mkold_ops` (`damon_mkold_pmd_entry()`,
    /// `damon_mkold_hugetlb_entry()`: a hugetlb folio is found from its
    /// PFN, with no LRU test).
    static func mkoldOps(_ mm: AddressSpace) -> MMWalkOps<Bool> {
        let access = LevelAccess(mm)
        let layout = mm.geometry.layout
        return MMWalkOps<Bool>(
            pmdEntry: { p, addr, _, walk in
                leafAt(access, p, addr, huge: { w in if pmdpMkold(mm, p.slot, w) { walk.privateData = true } },
                       pte: { table, i, w in if ptepMkold(mm, table, i, w) { walk.privateData = true } })
                return 0
            },
            hugetlbEntry: { p, _, _, _, walk in
                guard let vma = walk.vma else { return 0 }
                let lock = mm.hugePTELock(forEntriesOf: p.slot.table, level: p.slot.level)
                lock.lock()
                defer { lock.unlock() }
                let w = p.rawValue
                guard w != 0, layout.isPresent(w, p.slot.level), let page = mm.memory.page(layout.pfn(w)) else { return 0 }
                // pte_mkold() and set_huge_pte_at() on every entry of the page.
                var young = false
                for k in 0..<mm.hugetlbEntryShape(forSize: vma.hugePageSize).entries {
                    let slot = EntrySlot(p.slot.table, p.slot.index + k, p.slot.level)
                    let x = mm.entry(at: slot)
                    guard layout.isPresent(x, p.slot.level), x & layout.young != 0 else { continue }
                    mm.setEntry(at: slot, x & ~layout.young)
                    young = true
                }
                markOld(page.folio, wasYoung: young)
                walk.privateData = true
                return 0
            },
            walkLock: .read)
    }

    /// Models `damon_young_ops` (`damon_young_pmd_entry()`,
    /// `damon_young_hugetlb_entry()`).
    static func youngOps(_ mm: AddressSpace) -> MMWalkOps<YoungCheck> {
        let access = LevelAccess(mm)
        let layout = mm.geometry.layout
        return MMWalkOps<YoungCheck>(
            pmdEntry: { p, addr, _, walk in
                leafAt(access, p, addr, huge: { w in
                    guard let f = damonGetFolio(mm.memory, layout.pfn(w)) else { return }
                    walk.privateData.note(entryYoung: w & layout.young != 0, f, size: mm.geometry.entrySize(.pmd))
                }, pte: { _, _, w in
                    guard let f = damonGetFolio(mm.memory, layout.pfn(w)) else { return }
                    walk.privateData.note(entryYoung: PTE(rawValue: w, architecture: layout.architecture).isYoung, f,
                                          size: f.size)
                })
                return 0
            },
            hugetlbEntry: { p, _, _, _, walk in
                let lock = mm.hugePTELock(forEntriesOf: p.slot.table, level: p.slot.level)
                lock.lock()
                defer { lock.unlock() }
                let w = p.rawValue
                guard w != 0, layout.isPresent(w, p.slot.level), let page = mm.memory.page(layout.pfn(w)) else { return 0 }
                walk.privateData.note(entryYoung: w & layout.young != 0, page.folio, size: page.folio.size)
                return 0
            },
            walkLock: .read)
    }

    /// Models the stat walk ops (`damos_va_stat_pmd_entry()`): a present
    /// PMD leaf's folio, or each present PTE's folio, skipping the one
    /// counted last, added when it passes the filters; the PTEs of a large
    /// folio are stepped over together.
    static func statOps(_ mm: AddressSpace) -> MMWalkOps<StatPrivate> {
        let access = LevelAccess(mm)
        let layout = mm.geometry.layout
        return MMWalkOps<StatPrivate>(
            pmdEntry: { p, addr, next, walk in
                let huge = withHugePMD(mm, p) { w in
                    guard !PMD(rawValue: w, architecture: layout.architecture).isSpecial,
                          let f = mm.memory.folio(containing: layout.pfn(w)), !f.test(.hugeZeroPage),
                          !walk.privateData.scheme.isLastApplied(f) else { return }
                    let v = filterVerdict(walk.privateData.scheme, f, entryYoung: w & layout.young != 0)
                    if v.makeOld { pmdpMkold(mm, p.slot, w) }
                    let out = v.out
                    if !out { walk.privateData.passed += f.size }
                    walk.privateData.scheme.lastApplied = f
                }
                if huge { return 0 }
                guard let table = access.lockPTETable(p.slot) else { return 0 }
                defer { access.unlockPTETable(table) }
                let words = access.tables.entries(table)
                var a = addr
                while a < next {
                    let i = access.geometry.index(a, at: .pte)
                    let w = words[i].load(ordering: .acquiring)
                    var nr: UInt64 = 1
                    defer { a += nr * Geometry.pageSize }
                    guard w != 0, layout.isPresent(w, .pte), !layout.isSpecialPTE(w),
                          let page = mm.memory.page(layout.pfn(w)) else { continue }
                    let f = page.folio
                    guard !walk.privateData.scheme.isLastApplied(f) else { continue }
                    let young = PTE(rawValue: w, architecture: layout.architecture).isYoung
                    let v = filterVerdict(walk.privateData.scheme, f, entryYoung: young)
                    if v.makeOld { ptepMkold(mm, table, i, w) }
                    let out = v.out
                    if !out { walk.privateData.passed += f.size }
                    nr = UInt64(f.pageCount)
                    walk.privateData.scheme.lastApplied = f
                }
                return 0
            },
            walkLock: .read)
    }

    static func callbackMkold(_ mm: AddressSpace, _ page: UInt64) throws(PageWalkError) -> Bool {
        var marked = false
        try mm.withMmapReadLock { (_) throws(PageWalkError) in
            _ = try walkPageRange(mm, page, page + Geometry.pageSize, ops: mkoldOps(mm), private: &marked)
        }
        return marked
    }

    static func callbackYoung(_ mm: AddressSpace, _ page: UInt64) throws(PageWalkError) -> YoungCheck {
        var check = YoungCheck()
        try mm.withMmapReadLock { (_) throws(PageWalkError) in
            _ = try walkPageRange(mm, page, page + Geometry.pageSize, ops: youngOps(mm), private: &check)
        }
        return check
    }

    static func callbackStat(_ mm: AddressSpace, _ range: Range<UInt64>, _ scheme: inout DAMOSScheme) throws(PageWalkError) -> UInt64 {
        var priv = StatPrivate(scheme: scheme)
        try mm.withMmapReadLock { (_) throws(PageWalkError) in
            _ = try walkPageRange(mm, range.lowerBound, range.upperBound, ops: statOps(mm), private: &priv)
        }
        scheme = priv.scheme
        return priv.passed
    }
}
