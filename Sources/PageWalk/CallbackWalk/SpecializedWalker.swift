import MemoryModel

/// The engine of a callback walk over handlers known at compile time
/// (`MMWalkOpsProtocol`): the level functions of the kernel's
/// mm/pagewalk.c, one per level, as `PageTableWalker` has them, but
/// `@inlinable` so that each caller's module specializes them for its `Ops`
/// and inlines the handlers. Same rules as `PageTableWalker` for walks with
/// a VMA: holes, actions, `.again`, THP splits when PTEs are wanted, PTE
/// tables locked for their run of `pte_entry`.
@usableFromInline
struct SpecializedWalker<Ops: MMWalkOpsProtocol> {
    @usableFromInline typealias Walk = MMWalk<Ops.Private>
    @usableFromInline let ops: Ops
    @usableFromInline let access: LevelAccess
    /// `real_depth()` of the P4D, PUD and PMD levels for `pte_hole`.
    @usableFromInline let depthP4D: Int32, depthPUD: Int32, depthPMD: Int32

    /// `has_handler` below each level, constants once specialized.
    @inlinable static var belowPMD: Bool { Ops.hasPTEEntry }
    @inlinable static var belowPUD: Bool { belowPMD || Ops.hasPMDEntry }
    @inlinable static var belowP4D: Bool { belowPUD || Ops.hasPUDEntry }

    @inlinable
    init(ops: Ops, mm: AddressSpace) {
        self.ops = ops
        access = LevelAccess(mm)
        let g = mm.geometry
        depthP4D = Int32(g.realDepth(1))
        depthPUD = Int32(g.realDepth(2))
        depthPMD = Int32(g.realDepth(3))
    }

    @inlinable @inline(__always)
    func hole(_ addr: UInt64, _ next: UInt64, _ depth: Int32, _ walk: inout Walk) -> Int32 {
        Ops.hasPTEHole ? ops.pteHole(addr, next, depth, &walk) : 0
    }

    /// `walk_pgd_range()`.
    @inlinable
    func walkPGDRange(_ start: UInt64, _ end: UInt64, _ walk: inout Walk) -> Int32 {
        var addr = start
        repeat {
            let next = access.geometry.entryEnd(addr, at: .pgd, limit: end)
            let slot = access.pgdSlot(addr, root: walk.root)
            if access.noneOrClearBad(slot, trivial: access.trivialPGD) {
                let err = hole(addr, next, 0, &walk)
                if err != 0 { return err }
            } else if Self.belowP4D {
                let err = walkP4DRange(slot, addr, next, &walk)
                if err != 0 { return err }
            }
            addr = next
        } while addr != end
        return 0
    }

    /// `walk_p4d_range()`.
    @inlinable
    func walkP4DRange(_ pgd: EntrySlot, _ start: UInt64, _ end: UInt64, _ walk: inout Walk) -> Int32 {
        var addr = start
        repeat {
            let next = access.geometry.entryEnd(addr, at: .p4d, limit: end)
            let slot = access.lower(pgd, .p4d, addr)
            if access.noneOrClearBad(slot, trivial: access.trivialP4D) {
                let err = hole(addr, next, depthP4D, &walk)
                if err != 0 { return err }
            } else {
                let err = walkPUDRange(slot, addr, next, &walk)
                if err != 0 { return err }
            }
            addr = next
        } while addr != end
        return 0
    }

    /// `walk_pud_range()`: per entry, hole, `pud_entry` and its action, then
    /// the PMD level (a PUD leaf is never descended, as in `PageTableWalker`).
    @inlinable
    func walkPUDRange(_ p4d: EntrySlot, _ start: UInt64, _ end: UInt64, _ walk: inout Walk) -> Int32 {
        var addr = start
        repeat {
            let next = access.geometry.entryEnd(addr, at: .pud, limit: end)
            let slot = access.lower(p4d, .pud, addr)
            let trivial = access.trivialPUD
            again: while true {
                if !trivial && access.load(slot) == 0 {
                    let err = hole(addr, next, depthPUD, &walk)
                    if err != 0 { return err }
                    break again
                }
                walk.action = .subtree
                if Ops.hasPUDEntry {
                    let err = ops.pudEntry(access.pointer(slot, trivial: trivial), addr, next, &walk)
                    if err != 0 { return err }
                }
                if walk.action == .again { continue again }
                if walk.action == .continue || !Self.belowPUD { break again }
                let pud = PUD(rawValue: access.load(slot), architecture: access.architecture)
                if !trivial && (pud.isLeaf || !pud.isPresent) {
                    if pud.isNone { continue again }
                    break again
                }
                let err = walkPMDRange(slot, addr, next, &walk)
                if err != 0 { return err }
                break again
            }
            addr = next
        } while addr != end
        return 0
    }

    /// `walk_pmd_range()`: per entry, hole, `pmd_entry` and its action, then
    /// the PTE table (a THP split first when PTEs are wanted).
    @inlinable
    func walkPMDRange(_ pud: EntrySlot, _ start: UInt64, _ end: UInt64, _ walk: inout Walk) -> Int32 {
        var addr = start
        repeat {
            let next = access.geometry.entryEnd(addr, at: .pmd, limit: end)
            let slot = access.lower(pud, .pmd, addr)
            again: while true {
                if access.load(slot) == 0 {
                    let err = hole(addr, next, depthPMD, &walk)
                    if err != 0 { return err }
                    break again
                }
                walk.action = .subtree
                if Ops.hasPMDEntry {
                    let err = ops.pmdEntry(access.pointer(slot), addr, next, &walk)
                    if err != 0 { return err }
                }
                if walk.action == .again { continue again }
                if walk.action == .continue || !Self.belowPMD { break again }
                let pmd = PMD(rawValue: access.load(slot), architecture: access.architecture)
                let split = access.splitHugePMD(slot, pmd, failure: &walk.failure)
                if split != 0 { return split }
                let err = walkPTERange(slot, addr, next, &walk)
                if err != 0 { return err }
                if walk.action == .again { continue again }
                break again
            }
            addr = next
        } while addr != end
        return 0
    }

    /// `walk_pte_range()`: the PTE table locked for its run of `pte_entry`;
    /// a table that vanished asks for `.again`.
    @inlinable
    func walkPTERange(_ pmd: EntrySlot, _ start: UInt64, _ end: UInt64, _ walk: inout Walk) -> Int32 {
        guard let table = access.lockPTETable(pmd) else {
            walk.action = .again
            return 0
        }
        defer { access.unlockPTETable(table) }
        var index = access.geometry.index(start, at: .pte)
        var addr = start
        while true {
            let err = ops.pteEntry(access.pointer(EntrySlot(table, index, .pte)), addr, addr &+ Geometry.pageSize, &walk)
            if err != 0 { return err }
            if addr >= end &- Geometry.pageSize { return 0 }
            addr &+= Geometry.pageSize
            index &+= 1
        }
    }

    /// `walk_hugetlb_range()`: one `hugetlb_entry` per huge page under the
    /// hugetlb VMA lock; missing tables are depth -1 holes.
    @inlinable
    func walkHugetlbRange(_ vma: VMA, _ start: UInt64, _ end: UInt64, _ walk: inout Walk) -> Int32 {
        let size = vma.hugePageSize
        let hmask = ~(size &- 1)
        let level = access.hugetlbLevel(size)
        vma.hugetlbLock.lockRead()
        defer { vma.hugetlbLock.unlockRead() }
        var addr = start
        repeat {
            let boundary = (addr & hmask) &+ size
            let next = boundary < end ? boundary : end
            let err: Int32
            if let slot = access.hugetlbSlot(addr & hmask, level, root: walk.root) {
                err = ops.hugetlbEntry(access.pointer(slot), hmask, addr, next, &walk)
            } else {
                err = hole(addr, next, -1, &walk)
            }
            if err != 0 { return err }
            addr = next
        } while addr != end
        return 0
    }

    /// `walk_page_test()`.
    @inlinable
    func walkPageTest(_ vma: VMA, _ start: UInt64, _ end: UInt64, _ walk: inout Walk) -> Int32 {
        if Ops.hasTestWalk { return ops.testWalk(start, end, &walk) }
        if vma.isPFNMap {
            let err = Ops.hasPTEHole ? ops.pteHole(start, end, -1, &walk) : 1
            return err != 0 ? err : 1
        }
        return 0
    }

    /// `__walk_page_range()`: `pre_vma`, the hugetlb or table walk, `post_vma`.
    @inlinable
    func walkVMARange(_ vma: VMA, _ start: UInt64, _ end: UInt64, _ walk: inout Walk) -> Int32 {
        let pre = ops.preVMA(start, end, &walk)
        if pre != 0 { return pre }
        let err: Int32
        if vma.isHugetlb {
            err = Ops.hasHugetlbEntry ? walkHugetlbRange(vma, start, end, &walk) : 0
        } else {
            err = walkPGDRange(start, end, &walk)
        }
        ops.postVMA(&walk)
        return err
    }

    /// The VMA loop of `walk_page_range_mm()`: gaps are depth -1 holes.
    @inlinable
    func walkVMAs(_ start: UInt64, _ end: UInt64, _ walk: inout Walk) -> Int32 {
        let vmas = access.mm.vmas
        var index = vmas.firstIndex(endingAfter: start)
        var start = start
        repeat {
            let next: UInt64
            var err: Int32
            if index == vmas.count || start < vmas[index].start {
                walk.setVMA(nil)
                next = index == vmas.count ? end : min(end, vmas[index].start)
                err = hole(start, next, -1, &walk)
            } else {
                let vma = vmas[index]
                walk.setVMA(vma)
                next = min(end, vma.end)
                index += 1
                do throws(PageWalkError) {
                    try processVMAWalkLock(access.mm, vma, Ops.walkLock)
                } catch {
                    walk.failure = error
                    return -22   // EINVAL
                }
                err = walkPageTest(vma, start, next, &walk)
                if err > 0 {
                    err = 0
                } else if err == 0 {
                    err = walkVMARange(vma, start, next, &walk)
                }
            }
            if err != 0 { return err }
            start = next
        } while start < end
        return 0
    }
}
