import Testing
@testable import MemoryModel
@testable import PageWalk
import TestKit

/// MADV_COLD, MADV_PAGEOUT and MADV_WILLNEED on both walkers: one end
/// state over small folios, mTHPs covered whole and in part, THPs covered
/// whole and in part, folios shared after fork, swap entries and a file
/// VMA; and the kernel's rules for each shape, checked in the model. The
/// live kernel checks are in ProcFSTests' LiveMadviseTests.
@Suite struct MadviseColdTwinTests {
    static let anon = mb2                    // 64 small folios
    static let thp = 4 * mb2                 // two PMD THPs
    static let mthp = 6 * mb2                // four order-4 folios
    static let fileStart = 8 * mb2           // 32 file pages
    static let forked = 10 * mb2             // 16 small folios, shared with a child
    static let swapped = 12 * mb2            // 32 pages swapped out

    /// The shapes, every folio made active and referenced first so that
    /// the advice has something to clear.
    func build(swapSlots: Int = 1 << 16) throws -> (AddressSpace, AddressSpace) {
        let mm = try AddressSpace(geometry: .x86_64, memory: PhysicalMemory(budgetBytes: 512 << 20, swapSlots: swapSlots))
        try mm.mmap(start: Self.anon, end: Self.anon + 64 * page, access: [.read, .write])
        try mm.fault(Self.anon, Self.anon + 64 * page, write: true)
        try mm.mmap(start: Self.thp, end: Self.thp + 2 * mb2, access: [.read, .write], extraFlags: [.hugePage])
        try mm.populateTHP(Self.thp, Self.thp + 2 * mb2)
        try mm.mmap(start: Self.mthp, end: Self.mthp + 64 * page, access: [.read, .write])
        try mm.populateLargeFolios(Self.mthp, Self.mthp + 64 * page, order: 4)
        let file = mm.memory.file(path: "/data/f", device: DeviceNumber(major: 8, minor: 1), inode: 42)
        try mm.mmap(start: Self.fileStart, end: Self.fileStart + 32 * page, access: [.read, .write], kind: .file(file, offset: 0))
        try mm.fault(Self.fileStart, Self.fileStart + 32 * page, write: false)
        try mm.mmap(start: Self.forked, end: Self.forked + 16 * page, access: [.read, .write])
        try mm.fault(Self.forked, Self.forked + 16 * page, write: true)
        try mm.mmap(start: Self.swapped, end: Self.swapped + 32 * page, access: [.read, .write])
        try mm.fault(Self.swapped, Self.swapped + 32 * page, write: true)
        if swapSlots > 0 { try mm.swapOut(Self.swapped, Self.swapped + 32 * page) }
        let child = try mm.fork(childPID: 2)
        // Only the forked range stays shared: the rest of the child goes.
        try child.munmap(Self.anon, Self.forked)
        try child.munmap(Self.forked + 16 * page, Self.swapped + 32 * page)
        for vma in mm.vmas {
            var a = vma.start
            while a < vma.end {
                if let f = folio(mm, a) { f.setFlags([.active, .referenced], true) }
                a += page
            }
        }
        return (mm, child)
    }

    func folio(_ mm: AddressSpace, _ a: UInt64) -> Folio? {
        guard case .present(_, _, let pfn) = mm.translate(a), let f = mm.memory.folio(containing: pfn), !f.isZero else { return nil }
        return f
    }

    func young(_ mm: AddressSpace, _ a: UInt64) -> Bool {
        guard case .present(_, let raw, _) = mm.translate(a) else { return false }
        return raw & mm.geometry.layout.young != 0
    }

    func isSwap(_ mm: AddressSpace, _ a: UInt64) -> Bool {
        guard case .softLeaf(_, _, let leaf) = mm.translate(a), case .swap = leaf.leaf else { return false }
        return true
    }

    /// The advice over every shape: the anonymous pages 8..<40, the second
    /// THP's first half and all of the first, mTHP pages 8..<40 (the first
    /// and third folio in part), the file, the forked and swapped ranges.
    func advise(_ mm: AddressSpace, _ f: (UInt64, UInt64) throws -> Void) throws {
        try f(Self.anon + 8 * page, Self.anon + 40 * page)
        try f(Self.thp, Self.thp + mb2 + (1 << 20))
        try f(Self.mthp + 8 * page, Self.mthp + 40 * page)
        try f(Self.fileStart, Self.fileStart + 32 * page)
        try f(Self.forked, Self.forked + 16 * page)
        try f(Self.swapped, Self.swapped + 32 * page)
    }

    @Test func coldLeavesOneEndState() throws {
        var states: [[String]] = [], flushes: [[TLBFlush]] = []
        for walker in WalkerKind.allCases {
            let (mm, child) = try build()
            var all: [TLBFlush] = []
            try advise(mm) { a, b in all += try madviseCold(mm, a, b, walker: walker).flushes }
            states.append(endState(mm) + endState(child))
            flushes.append(all)
            // Exclusive folios in the range: old, inactive, unreferenced.
            for a in [Self.anon + 8 * page, Self.anon + 39 * page, Self.thp, Self.mthp + 16 * page, Self.mthp + 8 * page,
                      Self.fileStart + 5 * page] {
                let f = try #require(folio(mm, a), "no folio at \(hx(a))")
                #expect(!young(mm, a) && !f.test(.active) && !f.test(.referenced), "\(walker) at \(hx(a)): \(f)")
            }
            // Outside the range, or shared with the child: untouched.
            for a in [Self.anon, Self.anon + 40 * page, Self.mthp + 48 * page, Self.forked, Self.thp + mb2 + (1 << 20)] {
                let f = try #require(folio(mm, a))
                #expect(young(mm, a) && f.test(.active), "\(walker) at \(hx(a)) should be left: \(f)")
            }
            // The second THP was covered in part: split to small folios.
            #expect(folio(mm, Self.thp + mb2)?.isLarge == false && folio(mm, Self.thp)?.order == 9)
            // mTHPs covered in part were split, the one covered whole kept.
            #expect(folio(mm, Self.mthp + 8 * page)?.isLarge == false && folio(mm, Self.mthp + 16 * page)?.order == 4)
            #expect(folio(mm, Self.mthp + 48 * page)?.order == 4)
            // The folios a split made are not left locked (only the head was).
            for a in [Self.mthp + 9 * page, Self.mthp + 40 * page, Self.thp + mb2 + 7 * page] {
                #expect(folio(mm, a)?.test(.locked) == false, "\(walker): split folio at \(hx(a)) left locked")
            }
            #expect(!all.isEmpty, "MADV_COLD gathers the young entries it made old")
        }
        #expect(states[0] == states[1], "\(endStateDifferences(states[0], states[1]).joined(separator: "\n"))")
        // Every page whose young bit went is in a flushed range, on both walkers.
        for f in flushes {
            for a in [Self.anon + 8 * page, Self.thp, Self.mthp + 16 * page, Self.fileStart] {
                #expect(f.contains { $0.range.contains(a) }, "no flush covers \(hx(a)): \(f)")
            }
        }
    }

    @Test func pageoutLeavesOneEndState() throws {
        var states: [[String]] = [], results: [LRUAdviceResult] = []
        for walker in WalkerKind.allCases {
            let (mm, child) = try build()
            var total = LRUAdviceResult()
            try advise(mm) { a, b in
                let r = try madvisePageout(mm, a, b, walker: walker)
                total.reclaimedPages += r.reclaimedPages
                total.activatedPages += r.activatedPages
                total.keptPages += r.keptPages
            }
            states.append(endState(mm) + endState(child))
            results.append(total)
            // Anonymous folios covered whole go to swap: small, THP, mTHP.
            for a in [Self.anon + 8 * page, Self.anon + 39 * page, Self.thp, Self.thp + mb2 - page, Self.mthp + 16 * page,
                      Self.mthp + 8 * page, Self.thp + mb2] {
                #expect(isSwap(mm, a), "\(walker): \(hx(a)) not swapped: \(mm.translate(a))")
            }
            // The parts outside the range stay, split off.
            #expect(folio(mm, Self.thp + mb2 + (1 << 20)).map { !$0.isLarge } == true)
            #expect(folio(mm, Self.mthp + 4 * page).map { !$0.isLarge } == true)
            #expect(folio(mm, Self.anon + 40 * page) != nil && folio(mm, Self.mthp + 48 * page)?.order == 4)
            // Shared with the child: kept in both.
            #expect(folio(mm, Self.forked) != nil && folio(child, Self.forked) != nil)
            // The clean file pages left the page cache and the tables.
            #expect(mm.translate(Self.fileStart + 3 * page) == .none(level: .pte))
            #expect(mm.vma(containing: Self.fileStart)?.file?.cachedPages == 0)
        }
        #expect(states[0] == states[1], "\(endStateDifferences(states[0], states[1]).joined(separator: "\n"))")
        #expect(results[0] == results[1])
        // 32 small + 512 + 256 (half the second THP) + 32 mTHP pages + 32 file pages.
        #expect(results[0].reclaimedPages == 32 + 512 + 256 + 32 + 32, "\(results[0])")
    }

    /// No swap device: anonymous folios stay mapped and go back active
    /// (add_to_swap() fails: activate_locked), file pages are still dropped.
    @Test(arguments: WalkerKind.allCases)
    func pageoutWithoutSwapActivates(_ walker: WalkerKind) throws {
        let (mm, _) = try build(swapSlots: 0)
        #expect(!mm.memory.swap.isActive)
        for vma in mm.vmas { if let f = folio(mm, vma.start) { f.setFlags(.active, false) } }
        let r = try madvisePageout(mm, Self.anon, Self.anon + 64 * page, walker: walker)
        #expect(r.activatedPages == 64 && r.reclaimedPages == 0)
        let f = try #require(folio(mm, Self.anon))
        #expect(f.test(.active) && f.test(.lru) && !f.test(.referenced))
        let file = try madvisePageout(mm, Self.fileStart, Self.fileStart + 32 * page, walker: walker)
        #expect(file.reclaimedPages == 32)
    }

    /// A dirty page of a shared file mapping is unmapped, marked for reclaim
    /// and activated, and stays in the page cache: only kswapd writes it.
    @Test(arguments: WalkerKind.allCases)
    func pageoutOfDirtyFilePagesKeepsThemCached(_ walker: WalkerKind) throws {
        let mm = try makeSpace()
        let file = mm.memory.file(path: "/data/g", device: DeviceNumber(major: 8, minor: 1), inode: 43)
        try mm.mmap(start: mb2, end: mb2 + 8 * page, access: [.read, .write], shared: true, kind: .file(file, offset: 0))
        try mm.fault(mb2, mb2 + 8 * page, write: true)
        let r = try madvisePageout(mm, mb2, mb2 + 8 * page, walker: walker)
        #expect(r.activatedPages == 8 && r.reclaimedPages == 0, "\(r)")
        #expect(mm.translate(mb2) == .none(level: .pte) && file.cachedPages == 8)
        let f = try #require(file.cachedPFN(0).flatMap { mm.memory.folio(containing: $0) })
        #expect(f.test(.dirty) && f.test(.reclaim) && f.test(.active))
    }

    /// MADV_WILLNEED reads every swap entry into the swap cache and maps
    /// nothing; a read fault then maps the cached folio; a second pageout of
    /// it (clean, cached) gives the PTE its old slot back.
    @Test func willNeedLeavesOneEndState() throws {
        var states: [[String]] = []
        for walker in WalkerKind.allCases {
            let (mm, _) = try build()
            let folios = mm.memory.folioCount
            let r = try madviseWillNeed(mm, Self.swapped, Self.swapped + 32 * page, walker: walker)
            #expect(r.swapCacheReads == 32 && mm.memory.folioCount == folios + 32)
            for k in 0..<32 {
                let a = Self.swapped + UInt64(k) * page
                guard case .softLeaf(_, _, let leaf) = mm.translate(a), case .swap(let e) = leaf.leaf else {
                    Issue.record("\(hx(a)) is no longer a swap entry"); continue
                }
                #expect(mm.memory.swap.cachedFolioPFN(Int(e.offset)) != nil)
            }
            // Again: all are cached already.
            #expect(try madviseWillNeed(mm, Self.swapped, Self.swapped + 32 * page, walker: walker).swapCacheReads == 0)
            // File readahead caches the range.
            try mm.zap(Self.fileStart, Self.fileStart + 32 * page)
            #expect(try madviseWillNeed(mm, Self.fileStart, Self.fileStart + 32 * page, walker: walker).pageCachePages == 32)
            try mm.fault(Self.swapped, Self.swapped + 32 * page, write: false)
            let cached = try #require(folio(mm, Self.swapped))
            #expect(cached.test(.swapCache) && cached.isAnon)
            let again = try madvisePageout(mm, Self.swapped, Self.swapped + 32 * page, walker: walker)
            #expect(again.reclaimedPages == 32 && isSwap(mm, Self.swapped))
            states.append(endState(mm))
        }
        #expect(states[0] == states[1], "\(endStateDifferences(states[0], states[1]).joined(separator: "\n"))")
    }

    /// can_madv_lru_vma(): locked, PFN-mapped and hugetlb VMAs are refused
    /// with -EINVAL, after the VMAs before them were advised; gaps give
    /// -ENOMEM after the rest is done.
    @Test(arguments: WalkerKind.allCases)
    func refusedVMAsAndGaps(_ walker: WalkerKind) throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + 8 * page, access: [.read, .write])
        try mm.fault(mb2, mb2 + 8 * page, write: true)
        try mm.mmap(start: mb2 + 8 * page, end: mb2 + 16 * page, access: [.read, .write], extraFlags: [.locked])
        #expect(throws: MadviseError.invalidVMA(address: mb2 + 8 * page, reason: "MADV_COLD and MADV_PAGEOUT need a VMA that is not locked, PFN-mapped or hugetlb")) {
            try madviseCold(mm, mb2, mb2 + 16 * page, walker: walker)
        }
        #expect(!young(mm, mb2), "the VMA before the locked one was advised")
        do {
            try madvisePageout(mm, mb2, mb2 + 16 * page, walker: walker)
            Issue.record("MADV_PAGEOUT over a VM_LOCKED VMA succeeded")
        } catch { #expect(error.errno == -22) }
        try mm.mmap(start: 3 * mb2, end: 3 * mb2 + 4 * page, access: [.read, .write], kind: .pfnMap(firstPFN: 0x1000))
        #expect(throws: MadviseError.self) { try madviseCold(mm, 3 * mb2, 3 * mb2 + 4 * page, walker: walker) }
        try mm.mmap(start: 5 * mb2, end: 5 * mb2 + 4 * page, access: [.read, .write])
        try mm.fault(5 * mb2, 5 * mb2 + 4 * page, write: true)
        do {
            try madviseCold(mm, 5 * mb2 - 4 * page, 5 * mb2 + 4 * page, walker: walker)
            Issue.record("a gap gave no error")
        } catch { #expect(error == .unmapped(address: 5 * mb2 - 4 * page)) }
        #expect(!young(mm, 5 * mb2), "the mapped part after the gap was advised")
        #expect(throws: MadviseError.unmapped(address: 7 * mb2)) { try madviseWillNeed(mm, 7 * mb2, 7 * mb2 + page, walker: walker) }
    }
}

func hx(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
