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
/// Generic over the handlers (`MMWalkOpsProtocol`): the closures of
/// `MMWalkOps` (`ClosureWalkHandlers`) or a handler type of the caller's.
/// The methods are `@inlinable`, so the caller's module specializes them:
/// a type's constant `has…` flags fold away and its handlers inline.
///
/// Methods return the kernel's `int`: 0 to go on, a handler's positive
/// value to stop, a negative errno on failure (the walker's own failures are
/// also recorded in `MMWalk.failure` so the entry point can throw them).
@usableFromInline
struct PageTableWalker<Ops: MMWalkOpsProtocol> {
    @usableFromInline typealias Walk = MMWalk<Ops.Private>
    @usableFromInline let ops: Ops
    @usableFromInline let access: LevelAccess
    /// `real_depth()` of the P4D, PUD and PMD levels for `pte_hole`.
    @usableFromInline let depthP4D: Int32, depthPUD: Int32, depthPMD: Int32

    @inlinable
    init(_ ops: Ops, mm: AddressSpace) {
        self.ops = ops
        access = LevelAccess(mm)
        let g = mm.geometry
        depthP4D = Int32(g.realDepth(1))
        depthPUD = Int32(g.realDepth(2))
        depthPMD = Int32(g.realDepth(3))
    }

    /// `-EINVAL`, out of line: a C macro cannot be referenced from the
    /// inlinable levels (the caller's module would lose their bodies).
    @usableFromInline static var einval: Int32 { -EINVAL }

    @inlinable @inline(__always)
    func hole(_ addr: UInt64, _ next: UInt64, _ depth: Int32, _ walk: inout Walk) -> Int32 {
        ops.hasPTEHole ? ops.pteHole(addr, next, depth, &walk) : 0
    }

    /// A none entry met by a walk that installs gets a table
    /// (`__p4d_alloc()` … `__pte_alloc()`); otherwise it is a hole.
    @inlinable @inline(__always)
    func noneEntry(_ slot: EntrySlot, _ addr: UInt64, _ next: UInt64, _ depth: Int32, _ walk: inout Walk) -> Int32 {
        ops.hasInstallPTE ? allocate(slot, &walk) : hole(addr, next, depth, &walk)
    }

    /// `__p4d_alloc()` … `__pte_alloc()`: a table under a none entry.
    @usableFromInline
    func allocate(_ slot: EntrySlot, _ walk: inout Walk) -> Int32 {
        do {
            _ = try access.mm.installTable(at: slot)
            return 0
        } catch {
            walk.failure = .allocationFailed(error.description)
            return -ENOMEM
        }
    }

    // MARK: The levels

    /// Models `walk_pgd_range()`: PGD entries of `[start, end)`; holes are
    /// depth 0. Actions are not consulted at this level.
    @inlinable
    func walkPGDRange(_ start: UInt64, _ end: UInt64, _ walk: inout Walk) -> Int32 {
        var addr = start
        repeat {
            let next = access.geometry.entryEnd(addr, at: .pgd, limit: end)
            let slot = access.pgdSlot(addr, root: walk.root)
            let err = visitPGD(slot, addr, next, &walk)
            if err != 0 { return err }
            addr = next
        } while addr != end
        return 0
    }

    /// One PGD entry: hole or allocation, `pgd_entry`, then the P4D level.
    @inlinable
    func visitPGD(_ slot: EntrySlot, _ addr: UInt64, _ next: UInt64, _ walk: inout Walk) -> Int32 {
        if access.noneOrClearBad(slot, trivial: access.trivialPGD) {
            let err = noneEntry(slot, addr, next, 0, &walk)
            if err != 0 || !ops.hasInstallPTE { return err }
        }
        if ops.hasPGDEntry {
            let err = ops.pgdEntry(access.pointer(slot, trivial: access.trivialPGD), addr, next, &walk)
            if err != 0 { return err }
        }
        guard ops.belowPGD || ops.hasInstallPTE else { return 0 }
        return walkP4DRange(slot, addr, next, &walk)
    }

    /// Models `walk_p4d_range()`: like the PGD level one step down.
    @inlinable
    func walkP4DRange(_ pgd: EntrySlot, _ start: UInt64, _ end: UInt64, _ walk: inout Walk) -> Int32 {
        var addr = start
        repeat {
            let next = access.geometry.entryEnd(addr, at: .p4d, limit: end)
            let err = visitP4D(access.lower(pgd, .p4d, addr), addr, next, &walk)
            if err != 0 { return err }
            addr = next
        } while addr != end
        return 0
    }

    /// One P4D entry: hole or allocation, `p4d_entry`, then the PUD level.
    @inlinable
    func visitP4D(_ slot: EntrySlot, _ addr: UInt64, _ next: UInt64, _ walk: inout Walk) -> Int32 {
        if access.noneOrClearBad(slot, trivial: access.trivialP4D) {
            let err = noneEntry(slot, addr, next, depthP4D, &walk)
            if err != 0 || !ops.hasInstallPTE { return err }
        }
        if ops.hasP4DEntry {
            let err = ops.p4dEntry(access.pointer(slot, trivial: access.trivialP4D), addr, next, &walk)
            if err != 0 { return err }
        }
        guard ops.belowP4D || ops.hasInstallPTE else { return 0 }
        return walkPUDRange(slot, addr, next, &walk)
    }

    /// Models `walk_pud_range()`: the loop over PUD entries.
    @inlinable
    func walkPUDRange(_ p4d: EntrySlot, _ start: UInt64, _ end: UInt64, _ walk: inout Walk) -> Int32 {
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
    @inlinable
    func visitPUD(_ slot: EntrySlot, _ addr: UInt64, _ next: UInt64, _ walk: inout Walk) -> Int32 {
        let trivial = access.trivialPUD
        while true {
            if !trivial && access.load(slot) == 0 {
                let err = noneEntry(slot, addr, next, depthPUD, &walk)
                if err != 0 || !ops.hasInstallPTE { return err }
            }
            walk.action = .subtree
            if ops.hasPUDEntry {
                let err = ops.pudEntry(access.pointer(slot, trivial: trivial), addr, next, &walk)
                if err != 0 { return err }
            }
            if walk.action == .again { continue }
            if walk.action == .continue { return 0 }
            if !ops.belowPUD && !ops.hasInstallPTE { return 0 }
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
    @inlinable
    func walkPMDRange(_ pud: EntrySlot, _ start: UInt64, _ end: UInt64, _ walk: inout Walk) -> Int32 {
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
    @inlinable
    func visitPMD(_ slot: EntrySlot, _ addr: UInt64, _ next: UInt64, _ walk: inout Walk) -> Int32 {
        while true {
            if access.load(slot) == 0 {
                let err = noneEntry(slot, addr, next, depthPMD, &walk)
                if err != 0 || !ops.hasInstallPTE { return err }
            }
            walk.action = .subtree
            if ops.hasPMDEntry {
                let err = ops.pmdEntry(access.pointer(slot), addr, next, &walk)
                if err != 0 { return err }
            }
            if walk.action == .again { continue }
            if walk.action == .continue { return 0 }
            let pmd = PMD(rawValue: access.load(slot), architecture: access.architecture)
            if !ops.belowPMD {
                if !ops.hasInstallPTE { return 0 }
                if pmd.isLeaf { return 0 }   // only installing: keep the THP whole
            }
            if walk.vma != nil {
                let err = access.splitHugePMD(slot, pmd, failure: &walk.failure)
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

    /// Models `walk_pte_range()`: with a VMA the PTE table is locked for the
    /// whole run of handlers (`pte_offset_map_lock()`); kernel and debug
    /// walks read it unlocked. A table that vanished asks for `.again`.
    @inlinable
    func walkPTERange(_ pmd: EntrySlot, _ start: UInt64, _ end: UInt64, _ walk: inout Walk) -> Int32 {
        if walk.noVMA { return walkUnlockedPTERange(pmd, start, end, &walk) }
        guard let table = access.lockPTETable(pmd) else {
            walk.action = .again
            return 0
        }
        defer { access.unlockPTETable(table) }
        return walkPTEs(table, start, end, &walk)
    }

    /// `walk_pte_range()` of a kernel or debug walk: the table read without
    /// its lock (`pte_offset_kernel()`).
    @usableFromInline
    func walkUnlockedPTERange(_ pmd: EntrySlot, _ start: UInt64, _ end: UInt64, _ walk: inout Walk) -> Int32 {
        let raw = access.load(pmd)
        guard PMD(rawValue: raw, architecture: access.architecture).isTable else {
            walk.action = .again
            return 0
        }
        return walkPTEs(access.mm.lowerTable(raw), start, end, &walk)
    }

    /// Models `walk_pte_range_inner()`: `install_pte` fills none PTEs when
    /// set; every other PTE goes to `pte_entry`.
    @inlinable
    func walkPTEs(_ table: TableID, _ start: UInt64, _ end: UInt64, _ walk: inout Walk) -> Int32 {
        var index = access.geometry.index(start, at: .pte)
        var addr = start
        while true {
            let slot = EntrySlot(table, index, .pte)
            let err: Int32
            if ops.hasInstallPTE && access.load(slot) == 0 {
                err = install(slot, addr, &walk)
            } else if ops.hasPTEEntry {
                // The kernel calls pte_entry unconditionally here; with only
                // install_pte set it would oops on a populated PTE.
                err = ops.pteEntry(access.pointer(slot), addr, addr &+ Geometry.pageSize, &walk)
            } else {
                err = 0
            }
            if err != 0 { return err }
            if addr >= end &- Geometry.pageSize { return 0 }
            addr &+= Geometry.pageSize
            index &+= 1
        }
    }

    /// `install_pte` for one none PTE, and the store of what it built.
    @usableFromInline
    func install(_ slot: EntrySlot, _ addr: UInt64, _ walk: inout Walk) -> Int32 {
        var pte = PTE(rawValue: 0, architecture: access.architecture)
        let err = ops.installPTE(addr, addr &+ Geometry.pageSize, &pte, &walk)
        if err == 0 { access.mm.storePTE(slot.table, slot.index, pte.rawValue) }
        return err
    }

    // MARK: Hugetlb

    /// Models `walk_hugetlb_range()`: one `hugetlb_entry` call per huge page
    /// (clipped to the range) under the hugetlb VMA lock; a huge page whose
    /// tables do not exist is a hole of depth -1.
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

    // MARK: Per VMA

    /// Models `walk_page_test()`: `test_walk` decides when set; otherwise a
    /// VM_PFNMAP VMA is skipped, after reporting it whole as a depth -1 hole
    /// to a `pte_hole` handler that wants it.
    @inlinable
    func walkPageTest(_ start: UInt64, _ end: UInt64, _ walk: inout Walk) -> Int32 {
        if ops.hasTestWalk { return ops.testWalk(start, end, &walk) }
        if walk.vma?.isPFNMap == true {
            let err = ops.hasPTEHole ? ops.pteHole(start, end, -1, &walk) : 1
            return err != 0 ? err : 1
        }
        return 0
    }

    /// Models `__walk_page_range()`: `pre_vma`, then the hugetlb walk or the
    /// table walk, then `post_vma`; hugetlb VMAs see only `hugetlb_entry`.
    @inlinable
    func walkVMARange(_ start: UInt64, _ end: UInt64, _ walk: inout Walk) -> Int32 {
        guard let vma = walk.vma else { return walkPGDRange(start, end, &walk) }
        if ops.hasInstallPTE && vma.isHugetlb {
            walk.failure = .hugetlbInstall(vmaStart: vma.start)
            return Self.einval
        }
        let pre = ops.preVMA(start, end, &walk)
        if pre != 0 { return pre }
        let err: Int32
        if vma.isHugetlb {
            err = ops.hasHugetlbEntry ? walkHugetlbRange(vma, start, end, &walk) : 0
        } else {
            err = walkPGDRange(start, end, &walk)
        }
        ops.postVMA(&walk)
        return err
    }

    /// The VMA loop of `walk_page_range_mm()`: gaps before, between and
    /// after VMAs are depth -1 holes; each VMA passes `walk_page_test()`
    /// (>0 skips it silently, <0 aborts) before it is walked.
    @inlinable
    func walkVMAs(_ start: UInt64, _ end: UInt64, _ walk: inout Walk) -> Int32 {
        let vmas = access.mm.vmas
        var index = vmas.firstIndex(endingAfter: start)   // find_vma()
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
}
