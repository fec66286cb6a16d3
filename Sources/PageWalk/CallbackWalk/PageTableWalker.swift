import MemoryModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The engine of one callback walk: models the static functions of the
/// kernel's mm/pagewalk.c — one method per level (`walk_pgd_range()` …
/// `walk_pte_range()`), the hugetlb walk, `walk_page_test()` and
/// `__walk_page_range()`.
///
/// Methods return the kernel's `int`: 0 to go on, a handler's positive
/// value to stop, a negative errno on failure (the walker's own failures are
/// also recorded in `MMWalk.failure` so the entry point can throw them).
struct PageTableWalker<Private> {
    let ops: MMWalkOps<Private>
    let access: LevelAccess
    /// `has_handler` below each level: some handler under it needs the
    /// descent, so the walker does not skip the lower tables.
    let belowPGD: Bool, belowP4D: Bool, belowPUD: Bool, belowPMD: Bool
    let hasInstall: Bool
    /// `real_depth()` of the P4D, PUD and PMD levels for `pte_hole`.
    let depthP4D: Int32, depthPUD: Int32, depthPMD: Int32

    static var pageSize: UInt64 { Geometry.pageSize }
    static var einval: Int32 { -EINVAL }
    static var enomem: Int32 { -ENOMEM }

    init(ops: MMWalkOps<Private>, mm: AddressSpace) {
        self.ops = ops
        access = LevelAccess(mm)
        belowPMD = ops.pteEntry != nil
        belowPUD = belowPMD || ops.pmdEntry != nil
        belowP4D = belowPUD || ops.pudEntry != nil
        belowPGD = belowP4D || ops.p4dEntry != nil
        hasInstall = ops.installPTE != nil
        let g = mm.geometry
        depthP4D = Int32(g.realDepth(1))
        depthPUD = Int32(g.realDepth(2))
        depthPMD = Int32(g.realDepth(3))
    }

    @inline(__always)
    func hole(_ addr: UInt64, _ next: UInt64, _ depth: Int32, _ walk: inout MMWalk<Private>) -> Int32 {
        guard let handler = ops.pteHole else { return 0 }
        return handler(addr, next, depth, &walk)
    }

    /// `__p4d_alloc()` … `__pte_alloc()`: a table under a none entry.
    func allocate(_ slot: EntrySlot, _ walk: inout MMWalk<Private>) -> Int32 {
        do {
            try access.mm.installTable(at: slot)
            return 0
        } catch {
            walk.failure = .allocationFailed(error.description)
            return Self.enomem
        }
    }

    // MARK: The levels

    /// Models `walk_pgd_range()`: PGD entries of `[start, end)`; holes are
    /// depth 0. Actions are not consulted at this level.
    func walkPGDRange(_ start: UInt64, _ end: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
        var addr = start
        repeat {
            let next = access.geometry.entryEnd(addr, at: .pgd, limit: end)
            let slot = access.pgdSlot(addr, root: walk.root)
            if access.noneOrClearBad(slot, trivial: access.trivialPGD) {
                let err = hasInstall ? allocate(slot, &walk) : hole(addr, next, 0, &walk)
                if err != 0 { return err }
                if !hasInstall { addr = next; continue }
            }
            if let handler = ops.pgdEntry {
                let err = handler(access.pointer(slot, trivial: access.trivialPGD), addr, next, &walk)
                if err != 0 { return err }
            }
            if belowPGD || hasInstall {
                let err = walkP4DRange(slot, addr, next, &walk)
                if err != 0 { return err }
            }
            addr = next
        } while addr != end
        return 0
    }

    /// Models `walk_p4d_range()`: like the PGD level one step down.
    func walkP4DRange(_ pgd: EntrySlot, _ start: UInt64, _ end: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
        var addr = start
        repeat {
            let next = access.geometry.entryEnd(addr, at: .p4d, limit: end)
            let slot = access.lower(pgd, .p4d, addr)
            if access.noneOrClearBad(slot, trivial: access.trivialP4D) {
                let err = hasInstall ? allocate(slot, &walk) : hole(addr, next, depthP4D, &walk)
                if err != 0 { return err }
                if !hasInstall { addr = next; continue }
            }
            if let handler = ops.p4dEntry {
                let err = handler(access.pointer(slot, trivial: access.trivialP4D), addr, next, &walk)
                if err != 0 { return err }
            }
            if belowP4D || hasInstall {
                let err = walkPUDRange(slot, addr, next, &walk)
                if err != 0 { return err }
            }
            addr = next
        } while addr != end
        return 0
    }

    /// Models `walk_pud_range()`: the loop over PUD entries.
    func walkPUDRange(_ p4d: EntrySlot, _ start: UInt64, _ end: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
        var addr = start
        repeat {
            let next = access.geometry.entryEnd(addr, at: .pud, limit: end)
            let err = visitPUD(access.lower(p4d, .pud, addr), addr, next, &walk)
            if err != 0 { return err }
            addr = next
        } while addr != end
        return 0
    }

    /// One PUD entry of `walk_pud_range()` (the body under its `again:`
    /// label): hole or allocation, `pud_entry` and its action, then the PMD
    /// level unless nothing below needs it.
    func visitPUD(_ slot: EntrySlot, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
        let trivial = access.trivialPUD
        while true {
            if !trivial && access.load(slot) == 0 {
                if !hasInstall { return hole(addr, next, depthPUD, &walk) }
                let err = allocate(slot, &walk)
                if err != 0 { return err }
            }
            walk.action = .subtree
            if let handler = ops.pudEntry {
                let err = handler(access.pointer(slot, trivial: trivial), addr, next, &walk)
                if err != 0 { return err }
            }
            if walk.action == .again { continue }
            if walk.action == .continue { return 0 }
            if !belowPUD && !hasInstall { return 0 }
            // A PUD leaf is never descended: with a VMA the kernel would split
            // (zap) a PUD THP, which the model only has in hugetlb VMAs (walked
            // by hugetlb_entry); without a VMA leaves are skipped. The same
            // holds when only installing, so no THP is ever split for that.
            let pud = PUD(rawValue: access.load(slot), architecture: access.architecture)
            if !trivial && (pud.isLeaf || !pud.isPresent) {
                if pud.isNone { continue }   // raced to none: report it as a hole
                return 0
            }
            return walkPMDRange(slot, addr, next, &walk)
        }
    }

    /// Models `walk_pmd_range()`: the loop over PMD entries.
    func walkPMDRange(_ pud: EntrySlot, _ start: UInt64, _ end: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
        var addr = start
        repeat {
            let next = access.geometry.entryEnd(addr, at: .pmd, limit: end)
            let err = visitPMD(access.lower(pud, .pmd, addr), addr, next, &walk)
            if err != 0 { return err }
            addr = next
        } while addr != end
        return 0
    }

    /// One PMD entry of `walk_pmd_range()` (the body under its `again:`
    /// label): hole or allocation, `pmd_entry` and its action, then the PTE
    /// table — splitting a THP first when a walk with a VMA must see PTEs,
    /// never when it only installs.
    func visitPMD(_ slot: EntrySlot, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
        while true {
            if access.load(slot) == 0 {
                if !hasInstall { return hole(addr, next, depthPMD, &walk) }
                let err = allocate(slot, &walk)
                if err != 0 { return err }
            }
            walk.action = .subtree
            if let handler = ops.pmdEntry {
                let err = handler(access.pointer(slot), addr, next, &walk)
                if err != 0 { return err }
            }
            if walk.action == .again { continue }
            if walk.action == .continue { return 0 }
            let pmd = PMD(rawValue: access.load(slot), architecture: access.architecture)
            if !belowPMD {
                if !hasInstall { return 0 }
                if pmd.isLeaf { return 0 }   // only installing: keep the THP whole
            }
            if walk.vma != nil {
                let err = splitHugePMD(slot, pmd, &walk)
                if err != 0 { return err }
            } else if pmd.isLeaf || !pmd.isPresent {
                return 0
            }
            let err = walkPTERange(slot, addr, next, &walk)
            if err != 0 { return err }
            if walk.action == .again { continue }
            return 0
        }
    }

    /// `split_huge_pmd()`: only a leaf or a PMD migration entry is split.
    func splitHugePMD(_ slot: EntrySlot, _ pmd: PMD, _ walk: inout MMWalk<Private>) -> Int32 {
        access.splitHugePMD(slot, pmd, failure: &walk.failure)
    }

    /// Models `walk_pte_range()`: with a VMA the PTE table is locked for the
    /// whole run of handlers (`pte_offset_map_lock()`); kernel and debug
    /// walks read it unlocked. A table that vanished asks for `.again`.
    func walkPTERange(_ pmd: EntrySlot, _ addr: UInt64, _ end: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
        if walk.noVMA {
            let raw = access.load(pmd)
            guard PMD(rawValue: raw, architecture: access.architecture).isTable else {
                walk.action = .again
                return 0
            }
            return walkPTEs(access.mm.lowerTable(raw), addr, end, &walk)
        }
        guard let table = access.lockPTETable(pmd) else {
            walk.action = .again
            return 0
        }
        let err = walkPTEs(table, addr, end, &walk)
        access.tables.lock(table).unlock()
        return err
    }

    /// Models `walk_pte_range_inner()`: `install_pte` fills none PTEs when
    /// set; every other PTE goes to `pte_entry`.
    func walkPTEs(_ table: TableID, _ start: UInt64, _ end: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
        let words = access.tables.entries(table)
        var index = access.geometry.index(start, at: .pte)
        var addr = start
        while true {
            let raw = words[index].load(ordering: .acquiring)
            if raw == 0, let install = ops.installPTE {
                var pte = PTE(rawValue: 0, architecture: access.architecture)
                let err = install(addr, addr &+ Self.pageSize, &pte, &walk)
                if err != 0 { return err }
                access.mm.storePTE(table, index, pte.rawValue)
            } else if let handler = ops.pteEntry {
                // The kernel calls pte_entry unconditionally here; with only
                // install_pte set it would oops on a populated PTE.
                let err = handler(access.pointer(EntrySlot(table, index, .pte)), addr, addr &+ Self.pageSize, &walk)
                if err != 0 { return err }
            }
            if addr >= end &- Self.pageSize { return 0 }
            addr &+= Self.pageSize
            index += 1
        }
    }

    // MARK: Hugetlb

    /// Models `walk_hugetlb_range()`: one `hugetlb_entry` call per huge page
    /// (clipped to the range) under the hugetlb VMA lock; a huge page whose
    /// tables do not exist is a hole of depth -1.
    func walkHugetlbRange(_ start: UInt64, _ end: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
        guard let vma = walk.vma, let handler = ops.hugetlbEntry else { return 0 }
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
            if let slot = hugetlbWalk(addr & hmask, level, root: walk.root) {
                err = handler(access.pointer(slot), hmask, addr, next, &walk)
            } else {
                err = hole(addr, next, -1, &walk)
            }
            if err != 0 { return err }
            addr = next
        } while addr != end
        return 0
    }

    /// `hugetlb_walk()` / `huge_pte_offset()`.
    func hugetlbWalk(_ addr: UInt64, _ level: PageTableLevel, root: TableID?) -> EntrySlot? {
        access.hugetlbSlot(addr, level, root: root)
    }

    // MARK: Per VMA

    /// Models `walk_page_test()`: `test_walk` decides when set; otherwise a
    /// VM_PFNMAP VMA is skipped, after reporting it whole as a depth -1 hole
    /// to a `pte_hole` handler that wants it.
    func walkPageTest(_ start: UInt64, _ end: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
        if let test = ops.testWalk { return test(start, end, &walk) }
        if walk.vma?.isPFNMap == true {
            var err: Int32 = 1
            if let handler = ops.pteHole { err = handler(start, end, -1, &walk) }
            return err != 0 ? err : 1
        }
        return 0
    }

    /// Models `__walk_page_range()`: `pre_vma`, then the hugetlb walk or the
    /// table walk, then `post_vma`; hugetlb VMAs see only `hugetlb_entry`.
    func walkVMARange(_ start: UInt64, _ end: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
        guard let vma = walk.vma else { return walkPGDRange(start, end, &walk) }
        if hasInstall && vma.isHugetlb {
            walk.failure = .hugetlbInstall(vmaStart: vma.start)
            return Self.einval
        }
        if let pre = ops.preVMA {
            let err = pre(start, end, &walk)
            if err != 0 { return err }
        }
        let err: Int32
        if vma.isHugetlb {
            err = ops.hugetlbEntry != nil ? walkHugetlbRange(start, end, &walk) : 0
        } else {
            err = walkPGDRange(start, end, &walk)
        }
        ops.postVMA?(&walk)
        return err
    }

    /// The VMA loop of `walk_page_range_mm()`: gaps before, between and
    /// after VMAs are depth -1 holes; each VMA passes `walk_page_test()`
    /// (>0 skips it silently, <0 aborts) before it is walked.
    func walkVMAs(_ start: UInt64, _ end: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
        let vmas = access.mm.vmas
        var index = Self.findVMA(vmas, start)
        var start = start
        repeat {
            let next: UInt64
            var err: Int32
            if index == vmas.count || start < vmas[index].start {
                walk.vma = nil
                next = index == vmas.count ? end : min(end, vmas[index].start)
                err = hole(start, next, -1, &walk)
            } else {
                let vma = vmas[index]
                walk.vma = vma
                next = min(end, vma.end)
                index += 1
                do throws(PageWalkError) {
                    try processVMAWalkLock(access.mm, vma, ops.walkLock)
                } catch {
                    walk.failure = error
                    return Self.einval
                }
                err = walkPageTest(start, next, &walk)
                if err > 0 {
                    err = 0   // a positive test result only steers the walk
                } else if err == 0 {
                    err = walkVMARange(start, next, &walk)
                }
            }
            if err != 0 { return err }
            start = next
        } while start < end
        return 0
    }

    /// `find_vma()`: the first VMA ending after `addr`.
    static func findVMA(_ vmas: [VMA], _ addr: UInt64) -> Int { vmas.firstIndex(endingAfter: addr) }
}
