import MemoryModel

extension Mincore {
    /// `walk->private` of a mincore walk: the vector and the entry the next
    /// handler writes (the kernel advances a `unsigned char *`).
    public struct Vector {
        public var bytes: [UInt8]
        public var at: Int

        public init(count: Int) {
            bytes = [UInt8](repeating: Mincore.unwritten, count: count)
            at = 0
        }
    }

    /// Models `mincore_walk_ops`: `pmd_entry` is `mincore_pte_range()`,
    /// `pte_hole` is `mincore_unmapped_range()`, `hugetlb_entry` is
    /// `mincore_hugetlb()`; the mmap read lock (`PGWALK_RDLOCK`).
    public static func walkOps(_ mm: AddressSpace) -> MMWalkOps<Vector> {
        let access = LevelAccess(mm)
        let layout = mm.geometry.layout
        return MMWalkOps<Vector>(
            pmdEntry: { p, addr, next, walk in
                ptePMDRange(access, layout, p, addr, next, &walk)
            },
            pteHole: { addr, next, _, walk in
                // Holes come only inside the walked VMA (walk_page_range_vma).
                guard let vma = walk.vma else { return 0 }
                unmappedRange(walk.mm, vma, addr, next, &walk.privateData.bytes, at: walk.privateData.at)
                walk.privateData.at += Int((next - addr) >> pageShift)
                return 0
            },
            hugetlbEntry: { p, _, addr, next, walk in
                hugetlb(mm, layout, p, addr, next, &walk)
            },
            walkLock: .read)
    }

    /// Models `mincore_pte_range()`, the `pmd_entry` handler: a PMD leaf or
    /// PMD migration entry is resident whole (`pmd_trans_huge_lock()`);
    /// otherwise the PTE table is locked (`pte_offset_map_lock()`, `.again`
    /// when it vanished) and each PTE is judged.
    static func ptePMDRange(_ access: LevelAccess, _ layout: EntryLayout, _ p: EntryPointer<PMD>,
                            _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Vector>) -> Int32 {
        let mm = access.mm
        let n = Int((next - addr) >> pageShift)
        let at = walk.privateData.at
        if isHugePMD(p.rawValue, layout) {
            let lock = mm.lock(forEntriesOf: p.slot.table, level: .pmd)
            lock.lock()
            if isHugePMD(p.rawValue, layout) {
                for k in 0..<n { walk.privateData.bytes[at + k] = 1 }
                lock.unlock()
                walk.privateData.at += n
                return 0
            }
            lock.unlock()
        }
        guard let vma = walk.vma, let table = access.lockPTETable(p.slot) else {
            walk.action = .again
            return 0
        }
        defer { access.tables.lock(table).unlock() }
        let words = access.tables.entries(table)
        let first = access.geometry.index(addr, at: .pte)
        for k in 0..<n {
            let raw = words[first + k].load(ordering: .acquiring)
            let a = addr + UInt64(k) << pageShift
            if raw == 0 {
                unmappedRange(mm, vma, a, a + Geometry.pageSize, &walk.privateData.bytes, at: at + k)
            } else if layout.isPresent(raw, .pte) {
                walk.privateData.bytes[at + k] = 1
            } else {
                let leaf = SoftLeafEntry(decoding: raw, layout: layout).leaf
                if case .marker = leaf {
                    // pte_none_mostly(): a marker is looked up as a none PTE.
                    unmappedRange(mm, vma, a, a + Geometry.pageSize, &walk.privateData.bytes, at: at + k)
                } else {
                    walk.privateData.bytes[at + k] = nonPresentPTE(mm, leaf)
                }
            }
        }
        walk.privateData.at += n
        return 0
    }

    /// `pmd_trans_huge() || is_swap_pmd()`: a populated PMD that is not a
    /// table pointer.
    static func isHugePMD(_ raw: UInt64, _ layout: EntryLayout) -> Bool {
        raw != 0 && !layout.isTable(raw, .pmd)
    }

    /// Models `mincore_hugetlb()`: under the huge PTE lock, every page of
    /// `[addr, next)` is 0 for a none entry or a marker
    /// (`huge_pte_none_mostly()`), 1 for any other entry.
    static func hugetlb(_ mm: AddressSpace, _ layout: EntryLayout, _ p: EntryPointer<PTE>, _ addr: UInt64,
                        _ next: UInt64, _ walk: inout MMWalk<Vector>) -> Int32 {
        let level = p.slot.level
        let lock = mm.hugePTELock(forEntriesOf: p.slot.table, level: level)
        lock.lock()
        let raw = p.rawValue
        lock.unlock()
        var present: UInt8 = 1
        if raw == 0 {
            present = 0
        } else if !layout.isPresent(raw, level), case .marker = SoftLeafEntry(decoding: raw, layout: layout).leaf {
            present = 0
        }
        let n = Int((next - addr) >> pageShift)
        let at = walk.privateData.at
        for k in 0..<n { walk.privateData.bytes[at + k] = present }
        walk.privateData.at += n
        return 0
    }

    /// `do_mincore()`'s walk on the callback walker:
    /// `walk_page_range_vma(vma, addr, end, &mincore_walk_ops, vec)`.
    static func callbackWalk(_ mm: AddressSpace, _ vma: VMA, _ addr: UInt64, _ end: UInt64,
                             into vec: inout [UInt8]) throws(PageWalkError) {
        var data = Vector(count: vec.count)
        _ = try walkPageRangeVMA(mm, vma, addr, end, ops: walkOps(mm), private: &data)
        vec = data.bytes
    }
}
