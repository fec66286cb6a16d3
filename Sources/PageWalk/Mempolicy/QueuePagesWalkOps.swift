import MemoryModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// queue_pages_range() as mm/mempolicy.c writes it: `queue_pages_walk_ops`
// (migrate_pages(2), PGWALK_RDLOCK) and `queue_pages_lock_vma_walk_ops`
// (mbind(2), PGWALK_WRLOCK), the same three handlers behind each.
extension Mempolicy {
    /// The two ops tables: `test_walk` is `queue_pages_test_walk()`,
    /// `pmd_entry` is `queue_folios_pte_range()` (with `queue_folios_pmd()`
    /// for a PMD leaf), `hugetlb_entry` is `queue_folios_hugetlb()`;
    /// `writeLock` picks the mbind table.
    static func walkOps(_ mm: AddressSpace, writeLock: Bool) -> MMWalkOps<QueuePagesState> {
        let access = LevelAccess(mm)
        return MMWalkOps<QueuePagesState>(
            pmdEntry: { p, addr, next, walk in ptePMDRange(access, p, addr, next, &walk) },
            hugetlbEntry: { p, _, addr, _, walk in hugetlbEntry(mm, p, addr, &walk) },
            testWalk: { _, _, walk in
                guard let vma = walk.vma else { return 1 }
                switch walk.privateData.testWalk(vma) {
                case .walk: return 0
                case .skip: return 1
                case .fault: return -EFAULT
                }
            },
            walkLock: writeLock ? .write : .read)
    }

    /// `queue_folios_pte_range()`: a PMD leaf or PMD migration entry under
    /// the PMD lock; otherwise each PTE of `[addr, next)` under the PTE
    /// table lock, stopping at the first failure of a strict check.
    static func ptePMDRange(_ access: LevelAccess, _ p: EntryPointer<PMD>, _ addr: UInt64, _ next: UInt64,
                            _ walk: inout MMWalk<QueuePagesState>) -> Int32 {
        let mm = access.mm
        let layout = mm.geometry.layout
        guard let vma = walk.vma else { return 0 }
        if !p.hasTrivialEntries, p.rawValue != 0, !layout.isTable(p.rawValue, .pmd) {
            // pmd_trans_huge_lock()
            let lock = mm.lock(forEntriesOf: p.slot.table, level: .pmd)
            lock.lock()
            let pmd = p.entry
            if !pmd.isNone && !pmd.isTable {
                queueFoliosPMD(mm, pmd.rawValue, addr, vma, &walk)
                lock.unlock()
                return walk.privateData.failsWithEIO ? -EIO : 0
            }
            lock.unlock()
        }
        guard let table = access.lockPTETable(p.slot) else {
            // The table went (or became a leaf) meanwhile: ACTION_AGAIN.
            if !p.hasTrivialEntries && p.rawValue != 0 { walk.action = .again }
            return 0
        }
        let words = access.tables.entries(table)
        var a = addr
        while a < next {
            let w = words[access.geometry.index(a, at: .pte)].load(ordering: .relaxed)
            defer { a += Geometry.pageSize }
            if w == 0 { continue }
            if !layout.isPresent(w, .pte) {
                if case .migration = SoftLeafEntry(decoding: w, layout: layout).leaf { walk.privateData.migrationEntries(1) }
                continue
            }
            // vm_normal_folio(): no folio behind a special PTE.
            guard !layout.isSpecialPTE(w), let page = mm.memory.page(layout.pfn(w)) else { continue }
            let head = a - UInt64(page.index) * Geometry.pageSize
            if walk.privateData.queuePTEFolio(page.folio, head: head, in: vma) { break }
        }
        access.unlockPTETable(table)
        return walk.privateData.failsWithEIO ? -EIO : 0
    }

    /// `queue_folios_pmd()`, under the PMD lock: a migration entry is a
    /// failure, the huge zero folio is stepped over, a THP is judged whole.
    static func queueFoliosPMD(_ mm: AddressSpace, _ raw: UInt64, _ addr: UInt64, _ vma: VMA,
                               _ walk: inout MMWalk<QueuePagesState>) {
        let layout = mm.geometry.layout
        guard layout.isPresent(raw, .pmd) else {
            if case .migration = SoftLeafEntry(decoding: raw, layout: layout).leaf { walk.privateData.migrationEntries(1) }
            return
        }
        guard let folio = mm.memory.folio(containing: layout.pfn(raw)) else { return }
        if folio.isZero {
            walk.action = .continue
            return
        }
        let head = addr & ~(mm.geometry.entrySize(.pmd) - 1)
        walk.privateData.queuePMDFolio(folio, head: head, in: vma)
    }

    /// `queue_folios_hugetlb()`: the huge entry read under the huge PTE
    /// lock; a migration entry is a failure, a present one's folio judged.
    static func hugetlbEntry(_ mm: AddressSpace, _ p: EntryPointer<PTE>, _ addr: UInt64,
                             _ walk: inout MMWalk<QueuePagesState>) -> Int32 {
        let layout = mm.geometry.layout
        let level = p.slot.level
        guard let vma = walk.vma else { return 0 }
        let lock = mm.hugePTELock(forEntriesOf: p.slot.table, level: level)
        lock.lock()
        let raw = p.rawValue
        if raw != 0 && !layout.isPresent(raw, level) {
            if case .migration = SoftLeafEntry(decoding: raw, layout: layout).leaf { walk.privateData.migrationEntries(1) }
        } else if raw != 0, let folio = mm.memory.folio(containing: layout.pfn(raw)) {
            let head = addr & ~(vma.hugePageSize - 1)
            walk.privateData.queueHugetlbFolio(folio, head: head, in: vma)
        }
        lock.unlock()
        return walk.privateData.failsWithEIO ? -EIO : 0
    }

    /// `queue_pages_range()` on the callback walker: `walk_page_range()`
    /// with the table `flags` picks; -EFAULT when no VMA was met.
    static func callbackQueue(_ mm: AddressSpace, _ state: inout QueuePagesState) throws(MempolicyError) {
        let ops = walkOps(mm, writeLock: state.flags.contains(.writeLock))
        guard let range = state.walkRange else { throw .fault(address: state.start) }
        var walkError: MempolicyError?
        do {
            _ = try walkPageRange(mm, range.lowerBound, range.upperBound, ops: ops, private: &state)
        } catch .handlerError(-EFAULT) where state.fault != nil {
            walkError = .fault(address: state.fault!)
        } catch .handlerError(-EIO) {
            walkError = .io
        } catch {
            walkError = .walk(error)
        }
        if state.first == nil { throw .fault(address: state.start) }
        if let walkError { throw walkError }
    }
}
