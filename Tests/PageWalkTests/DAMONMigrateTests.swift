import Testing
import MemoryModel
@testable import PageWalk
import TestKit
import ReferenceModel

/// DAMOS's migrate walk (`damos_va_migrate()`, mm/damon/vaddr.c) on both
/// walkers, on a machine with two NUMA nodes: the bytes migrated, and the
/// end state (each page's translation, folio, node, idle and young flags)
/// agree, and follow the kernel's rules (filters, a PMD THP moved whole,
/// interleaved destinations, folios put back when they stay).
@Suite struct DAMONMigrateTests {
    let anon = mb2, thp = 4 * mb2, mthp = 8 * mb2

    /// The pages of `DAMONVaddrTests.space()`, all on node 0 of two.
    func space() throws -> AddressSpace { try DAMONVaddrTests().space(nodes: 2) }

    func folio(_ mm: AddressSpace, _ a: UInt64) -> Folio? {
        guard case .present(_, _, let pfn) = mm.translate(a) else { return nil }
        return mm.memory.page(pfn)?.folio
    }

    func level(_ mm: AddressSpace, _ a: UInt64) -> PageTableLevel? {
        guard case .present(let level, _, _) = mm.translate(a) else { return nil }
        return level
    }

    /// The nodes of the pages at `base`, one per page.
    func nodes(_ mm: AddressSpace, _ base: UInt64, _ n: UInt64) -> [Int] {
        (0..<n).map { folio(mm, base + $0 * page)?.node ?? -1 }
    }

    /// The end state, and each mapped page's node and folio flags.
    func state(_ mm: AddressSpace) -> [String] {
        let pages = mm.vmas.flatMap { vma in stride(from: vma.start, to: vma.end, by: Int(page)) }
        return endState(mm) + pages.compactMap { a in
            folio(mm, a).map { "\(a): node \($0.node) idle \($0.test(.idle)) young \($0.test(.young)) lru \($0.test(.lru))" }
        }
    }

    /// Runs `op` on each walker, each on its own space; records an issue
    /// when results or end states differ; returns the range walker's.
    func twin<R: Equatable>(sourceLocation: SourceLocation = #_sourceLocation, _ prepare: (AddressSpace) throws -> Void = { _ in },
                            _ op: (AddressSpace, WalkerKind) throws -> R) throws -> (AddressSpace, R) {
        try walkerTwins(space, state: state, sourceLocation: sourceLocation, prepare, op)
    }

    func migrate(_ mm: AddressSpace, _ range: Range<UInt64>, _ filters: [DAMOSFilter] = [],
                 to dests: DAMOSMigrateDests = .targetNode(1), walker w: WalkerKind) throws -> UInt64 {
        var scheme = DAMOSScheme(filters: filters)
        return try DAMONVaddr.migrate(mm, range, scheme: &scheme, dests: dests, walker: w)
    }

    @Test func everyPageMovesToTheTargetNode() throws {
        var oldPFNs: [UInt64] = []
        let (mm, applied) = try twin({ mm in oldPFNs = (0..<16).compactMap { self.folio(mm, self.anon + $0 * page)?.pfn } }) { mm, w in
            try migrate(mm, anon..<anon + 16 * page, walker: w)
        }
        #expect(applied == 16 * page)
        #expect(nodes(mm, anon, 16) == Array(repeating: 1, count: 16))
        for i in 0..<UInt64(16) {
            let f = try #require(folio(mm, anon + i * page))
            // The new folio: mapped once, one reference (the mapping), on the LRU.
            #expect(f.mapcount == 1 && f.refcount == 1 && f.isAnon)
            #expect(f.test(.lru))
            #expect(!oldPFNs.contains(f.pfn))
        }
        // The old frames were freed.
        #expect(oldPFNs.allSatisfy { mm.memory.folio(containing: $0) == nil || mm.memory.folio(containing: $0)?.refcount == 0 })
        #expect(mm.counterSnapshot == (try space()).counterSnapshot)
    }

    @Test func aPMDTHPMovesWholeAndStaysAPMDLeaf() throws {
        let (mm, applied) = try twin { mm, w in try migrate(mm, thp + 5 * page..<thp + 6 * page, walker: w) }
        // The walk met the THP through one page of it; the whole 2M moved.
        #expect(applied == mb2)
        #expect(level(mm, thp) == .pmd)
        let f = try #require(folio(mm, thp))
        #expect(f.node == 1 && f.order == 9 && f.entireMapcount == 1 && f.test(.lru))
        // mTHP and small pages: the 64K folio once, through its first PTE in the range.
        let (mm2, applied2) = try twin { mm, w in try migrate(mm, mthp + 3 * page..<mthp + 20 * page, walker: w) }
        #expect(applied2 == 16 * page + 4 * page)
        #expect(nodes(mm2, mthp, 21) == Array(repeating: 1, count: 20) + [0])
        #expect(folio(mm2, mthp)?.order == 4)
    }

    @Test func theYoungFilterPassesAccessedFoliosAndMakesThemOld() throws {
        let prepare = { (mm: AddressSpace) throws in
            for i in 0..<UInt64(8) { try DAMONVaddr.mkold(mm, self.anon + i * page) }
        }
        let (mm, applied) = try twin(prepare) { mm, w in
            try migrate(mm, anon..<anon + 16 * page, [DAMOSFilter(.young, matching: true, allow: true)], walker: w)
        }
        // Pages 0-7 were made old and not accessed since: rejected by default
        // (the last filter allows). Pages 8-15, written, pass and move.
        #expect(applied == 8 * page)
        #expect(nodes(mm, anon, 16) == Array(repeating: 0, count: 8) + Array(repeating: 1, count: 8))
        for i in 8..<UInt64(16) {
            let f = try #require(folio(mm, anon + i * page))
            guard case .present(_, let raw, _) = mm.translate(anon + i * page) else { continue }
            #expect(!PTE(rawValue: raw, architecture: .x86_64).isYoung && f.test(.idle) && f.test(.young))
        }
        // A rejecting anon filter moves nothing, and puts nothing on a list.
        let (mm2, none) = try twin { mm, w in
            try migrate(mm, anon..<anon + 16 * page, [DAMOSFilter(.anon, matching: true, allow: false)], walker: w)
        }
        #expect(none == 0 && nodes(mm2, anon, 16) == Array(repeating: 0, count: 16))
        #expect((0..<UInt64(16)).allSatisfy { folio(mm2, anon + $0 * page)?.test(.lru) == true })
    }

    @Test func weightedDestinationsInterleaveByPageIndex() throws {
        // ilx = vm_pgoff + page index = 512 + i; weights 1:1 send even
        // indices to node 0 (already there: not isolated), odd ones to node 1.
        let dests = DAMOSMigrateDests(nodes: [0, 1], weights: [1, 1])
        let (mm, applied) = try twin { mm, w in try migrate(mm, anon..<anon + 16 * page, to: dests, walker: w) }
        #expect(applied == 8 * page)
        #expect(nodes(mm, anon, 16) == (0..<16).map { $0 % 2 })
        // Weights 1:3: ilx % 4 == 0 stays on node 0, the rest move.
        let (mm2, applied2) = try twin { mm, w in
            try migrate(mm, anon..<anon + 16 * page, to: DAMOSMigrateDests(nodes: [0, 1], weights: [1, 3]), walker: w)
        }
        #expect(applied2 == 12 * page)
        #expect(nodes(mm2, anon, 16) == (0..<16).map { $0 % 4 == 0 ? 0 : 1 })
        // All weights zero: nothing migrates.
        let (_, zero) = try twin { mm, w in
            try migrate(mm, anon..<anon + 16 * page, to: DAMOSMigrateDests(nodes: [0, 1], weights: [0, 0]), walker: w)
        }
        #expect(zero == 0)
    }

    @Test func foliosThatStayAreBackOnTheLRU() throws {
        // NUMA_NO_NODE: isolated, then put back.
        let (mm, applied) = try twin { mm, w in try migrate(mm, anon..<anon + 16 * page, to: .targetNode(nil), walker: w) }
        #expect(applied == 0 && nodes(mm, anon, 16) == Array(repeating: 0, count: 16))
        let f = try #require(folio(mm, anon))
        #expect(f.test(.lru) && f.refcount == 1)
        // Already on the target node.
        let (_, same) = try twin { mm, w in try migrate(mm, anon..<mthp + 32 * page, to: .targetNode(0), walker: w) }
        #expect(same == 0)
    }

    @Test func badDestinationsAreRefused() throws {
        let mm = try space()
        #expect(throws: DAMONMigrateError.noSuchNode(2)) { try migrate(mm, anon..<anon + page, to: .targetNode(2), walker: .range) }
        #expect(throws: DAMONMigrateError.weightsMismatch(nodes: 2, weights: 1)) {
            try migrate(mm, anon..<anon + page, to: DAMOSMigrateDests(nodes: [0, 1], weights: [1]), walker: .callback)
        }
    }

    /// With no filters, every folio of a region moves: what the
    /// ReferenceModel's `migrate` of the same range gives (nodes, mapcounts,
    /// references, flags of every page).
    @Test func theReferenceModelAgreesOnTheNodes() throws {
        for w in WalkerKind.allCases {
            let o = AddressSpaceOptions(softDirty: true, pid: 1)
            let mm = try AddressSpace(geometry: .x86_64, memory: PhysicalMemory(budgetBytes: 256 << 20, nodes: 2), options: o)
            let model = ReferenceModel(geometry: .x86_64, options: o, nodes: 2)
            model.addProcess(pid: 1)
            try mm.mmap(start: anon, end: anon + 16 * page, access: [.read, .write])
            try model.mmap(pid: 1, start: anon, end: anon + 16 * page, access: [.read, .write])
            try mm.fault(anon, anon + 16 * page, write: true)
            try model.fault(pid: 1, anon, anon + 16 * page, write: true)
            try mm.mmap(start: thp, end: thp + mb2, access: [.read, .write])
            try model.mmap(pid: 1, start: thp, end: thp + mb2, access: [.read, .write])
            try mm.populateTHP(thp, thp + mb2)
            try model.populateTHP(pid: 1, thp, thp + mb2)
            #expect(try migrate(mm, anon..<anon + 8 * page, walker: w) == 8 * page)
            try model.migrate(pid: 1, anon, anon + 8 * page, toNode: 1)
            #expect(try migrate(mm, thp..<thp + mb2, walker: w) == mb2)
            try model.migrate(pid: 1, thp, thp + mb2, toNode: 1)
            let mismatches = ReferenceChecker.check([mm], against: model)
            #expect(mismatches.isEmpty, "\(mismatches)")
        }
    }
}
