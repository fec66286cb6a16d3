import MemoryModel

extension MemoryFailure {
    /// `walk->private` of the search (`struct hwpoison_walk`): the frame
    /// looked for and what was found.
    public struct HWPoisonWalk {
        public let pfn: UInt64
        public var toKill: HWPoisonToKill?
        public init(pfn: UInt64) { self.pfn = pfn }
    }

    /// Models `hwpoison_walk_ops`: `pmd_entry` is `hwpoison_pte_range()`,
    /// `hugetlb_entry` is `hwpoison_hugetlb_range()`, `test_walk`
    /// (`hwpoison_test_walk()`) returns 0 for every VMA so that PFN maps are
    /// searched; the mmap read lock (`PGWALK_RDLOCK`).
    public static func walkOps(_ mm: AddressSpace) -> MMWalkOps<HWPoisonWalk> {
        let access = LevelAccess(mm)
        return MMWalkOps<HWPoisonWalk>(
            pmdEntry: { p, addr, next, walk in ptePMDRange(access, p, addr, next, &walk) },
            hugetlbEntry: { p, _, addr, _, walk in hugetlbRange(mm, p, addr, &walk) },
            testWalk: { _, _, _ in 0 },
            walkLock: .read)
    }

    /// Models `hwpoison_pte_range()`: a PMD leaf or PMD migration entry is
    /// judged under the PMD lock (`pmd_trans_huge_lock()`), only a present
    /// one matching; otherwise each PTE of `[addr, next)` under the PTE
    /// table lock, stopping at the first that maps the frame.
    static func ptePMDRange(_ access: LevelAccess, _ p: EntryPointer<PMD>, _ addr: UInt64, _ next: UInt64,
                            _ walk: inout MMWalk<HWPoisonWalk>) -> Int32 {
        let mm = access.mm
        let layout = mm.geometry.layout
        let target = walk.privateData.pfn
        if !p.hasTrivialEntries, p.rawValue != 0, !layout.isTable(p.rawValue, .pmd) {
            let lock = mm.lock(forEntriesOf: p.slot.table, level: .pmd)
            lock.lock()
            let pmd = p.entry
            if !pmd.isNone && !pmd.isTable {
                defer { lock.unlock() }
                guard pmd.isPresent,
                      let hit = pmdLeafHit(first: pmd.pfn, pages: access.geometry.entrySize(.pmd) >> UInt64(Geometry.pageShift), at: addr, target) else { return 0 }
                walk.privateData.toKill = hit
                return 1
            }
            lock.unlock()
        }
        guard let table = access.lockPTETable(p.slot) else { return 0 }
        defer { access.unlockPTETable(table) }
        let words = access.tables.entries(table)
        var a = addr
        while a < next {
            if entryMaps(words[access.geometry.index(a, at: .pte)].load(ordering: .acquiring), level: .pte, layout, target) {
                walk.privateData.toKill = HWPoisonToKill(address: a, sizeShift: Geometry.pageShift)
                return 1
            }
            a += Geometry.pageSize
        }
        return 0
    }

    /// Models `hwpoison_hugetlb_range()`: the huge entry, read under the
    /// huge PTE lock, maps the frame when its own frame (the head page) or
    /// its hwpoison entry is the one looked for.
    static func hugetlbRange(_ mm: AddressSpace, _ p: EntryPointer<PTE>, _ addr: UInt64,
                             _ walk: inout MMWalk<HWPoisonWalk>) -> Int32 {
        let level = p.slot.level
        let lock = mm.hugePTELock(forEntriesOf: p.slot.table, level: level)
        lock.lock()
        let raw = p.rawValue
        lock.unlock()
        guard let vma = walk.vma, entryMaps(raw, level: level, mm.geometry.layout, walk.privateData.pfn) else { return 0 }
        walk.privateData.toKill = HWPoisonToKill(address: addr, sizeShift: hugeShift(vma))
        return 1
    }

    /// The search on the callback walker: `walk_page_range(mm, 0, TASK_SIZE,
    /// &hwpoison_walk_ops, &priv)`; the hit only when it returned 1.
    static func callbackWalk(_ mm: AddressSpace, pfn: UInt64) throws(PageWalkError) -> HWPoisonToKill? {
        var priv = HWPoisonWalk(pfn: pfn)
        let ret = try walkPageRange(mm, 0, mm.geometry.userAddressLimit, ops: walkOps(mm), private: &priv)
        return ret == 1 ? priv.toKill : nil
    }
}
