import Testing
@testable import MemoryModel
@testable import PageWalk
import TestKit
import ReferenceModel
#if canImport(Glibc)
import Glibc
#endif

/// mm/mempolicy.c's queue_pages on both walkers (the update walk, and
/// `queue_pages_walk_ops` / `queue_pages_lock_vma_walk_ops` as the kernel
/// writes them), through mbind(2) and migrate_pages(2) on a two-node
/// machine: the return code, the folios queued and moved, and the end
/// state (every page's translation, folio and node, every VMA's policy)
/// must be the same from either walker, and equal the values worked out
/// by hand below. The live kernel checks are in ProcFSTests'
/// LiveMempolicyTests.
@Suite struct QueuePagesTests {
    // The shapes, all but `placed` faulted on node 1 (their VMA's policy
    // is MPOL_BIND to node 1 when they fault).
    static let misplaced = mb2              // 8 small anonymous folios, node 1
    static let placed = mb2 + 8 * page      // 8 small anonymous folios, node 0
    static let tail = mb2 + 32 * page       // 8 small folios, node 1, after a 16-page hole
    static let thp = 4 * mb2                // one PMD THP, node 1, then 2 MiB not faulted
    static let mthp = 8 * mb2               // four order-4 folios, node 1
    static let fileStart = 10 * mb2         // 16 page-cache folios, node 1
    static let shared = 12 * mb2            // 8 small folios, node 1, shared with a child
    static let hugetlb = gb1                // one 2 MiB hugetlb folio, node 1, then 2 MiB not faulted

    static let toNode0 = MemoryPolicy.bind([0])

    func build() throws -> (AddressSpace, AddressSpace) {
        let mm = try AddressSpace(geometry: .x86_64, memory: PhysicalMemory(budgetBytes: 512 << 20, nodes: 2))
        let rw: VMFlags = [.read, .write]
        let on1 = MemoryPolicy.bind([1])
        try mm.mmap(start: Self.misplaced, end: Self.misplaced + 8 * page, access: rw, policy: on1)
        try mm.mmap(start: Self.placed, end: Self.placed + 8 * page, access: rw, policy: Self.toNode0)
        try mm.mmap(start: Self.tail, end: Self.tail + 8 * page, access: rw, policy: on1)
        try mm.fault(Self.misplaced, Self.placed + 8 * page, write: true)
        try mm.fault(Self.tail, Self.tail + 8 * page, write: true)
        try mm.mmap(start: Self.thp, end: Self.thp + 2 * mb2, access: rw, extraFlags: [.hugePage], policy: on1)
        try mm.populateTHP(Self.thp, Self.thp + mb2)
        try mm.mmap(start: Self.mthp, end: Self.mthp + 64 * page, access: rw, policy: on1)
        try mm.populateLargeFolios(Self.mthp, Self.mthp + 64 * page, order: 4)
        let file = mm.memory.file(path: "/data/f", device: DeviceNumber(major: 8, minor: 1), inode: 42)
        try mm.mmap(start: Self.fileStart, end: Self.fileStart + 16 * page, access: rw, kind: .file(file, offset: 0), policy: on1)
        try mm.fault(Self.fileStart, Self.fileStart + 16 * page, write: false)
        try mm.mmap(start: Self.shared, end: Self.shared + 8 * page, access: rw, policy: on1)
        try mm.fault(Self.shared, Self.shared + 8 * page, write: true)
        try mm.mmap(start: Self.hugetlb, end: Self.hugetlb + 2 * mb2, access: rw,
                    kind: .hugetlb(pageSize: mb2, file: nil), policy: on1)
        try mm.populateHugetlb(Self.hugetlb, Self.hugetlb + mb2)
        let child = try mm.fork(childPID: 2)
        // Only the shared range stays in the child.
        try child.munmap(Self.misplaced, Self.shared)
        try child.munmap(Self.shared + 8 * page, Self.hugetlb + 2 * mb2)
        return (mm, child)
    }

    /// Each mapped page's node and each VMA's policy, for both processes.
    func nodes(_ spaces: AddressSpace...) -> [String] {
        var out: [String] = []
        for mm in spaces {
            for vma in mm.vmas {
                out.append("pid \(mm.options.pid) vma \(String(vma.start, radix: 16))-\(String(vma.end, radix: 16)) \(vma.policy)")
            }
            for vma in mm.vmas {
                var a = vma.start
                while a < vma.end {
                    if let n = node(mm, a) { out.append("  \(String(a, radix: 16)) node \(n)") }
                    a += page
                }
            }
        }
        return out
    }

    func node(_ mm: AddressSpace, _ a: UInt64) -> Int? {
        guard case .present(_, _, let pfn) = mm.translate(a), let f = mm.memory.folio(containing: pfn), !f.isZero else { return nil }
        return f.node
    }

    /// One call's result on one walker.
    struct Run: Equatable {
        var errno: Int32 = 0
        var outcome = MempolicyOutcome()
        var state: [String] = []
        var nodes: [String] = []
    }

    /// Runs `op` on a fresh build with each walker, checks they agree, and
    /// returns the range walker's run.
    func twin(_ op: (AddressSpace, WalkerKind) throws(MempolicyError) -> MempolicyOutcome,
              prepare: (AddressSpace) throws -> Void = { _ in }) throws -> Run {
        var runs: [Run] = []
        for walker in WalkerKind.allCases {
            let (mm, child) = try build()
            try prepare(mm)
            var r = Run()
            do throws(MempolicyError) { r.outcome = try op(mm, walker) } catch { r.errno = error.errno }
            r.state = endState(mm) + endState(child)
            r.nodes = nodes(mm, child)
            runs.append(r)
        }
        #expect(runs[0].errno == runs[1].errno)
        #expect(runs[0].outcome == runs[1].outcome)
        #expect(runs[0].state == runs[1].state, "\(endStateDifferences(runs[0].state, runs[1].state).joined(separator: "\n"))")
        #expect(runs[0].nodes == runs[1].nodes)
        return runs[0]
    }

    /// The nodes of `count` pages from `start` after a run.
    func pageNodes(_ r: Run, _ start: UInt64, _ count: Int, pid: Int = 1) -> [Int] {
        var out: [Int] = []
        // A process's page lines follow its VMA lines.
        var current = 0
        var map: [UInt64: Int] = [:]
        for line in r.nodes {
            if line.hasPrefix("pid ") { current = Int(line.split(separator: " ")[1])!; continue }
            guard current == pid else { continue }
            let parts = line.split(separator: " ")
            map[UInt64(parts[0], radix: 16)!] = Int(parts[2])!
        }
        for k in 0..<count { out.append(map[start + UInt64(k) * page] ?? -1) }
        return out
    }

    func shape(_ q: [QueuedFolio]) -> [String] { q.map { "\(String($0.address, radix: 16)) n\($0.node) \($0.pages)p" } }
    func shape(_ starts: [UInt64], node: Int, pages: Int) -> [String] {
        starts.map { "\(String($0, radix: 16)) n\(node) \(pages)p" }
    }

    // MARK: Small anonymous folios, STRICT and MOVE

    @Test func moveQueuesAndMovesOnlyMisplacedFolios() throws {
        let r = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.misplaced, 16 * page, policy: Self.toNode0, flags: .move, walker: w)
        }
        let eight = (0..<8).map { Self.misplaced + UInt64($0) * page }
        #expect(r.errno == 0)
        #expect(shape(r.outcome.queued) == shape(eight, node: 1, pages: 1))
        #expect(shape(r.outcome.migrated) == shape(eight, node: 0, pages: 1))
        #expect(r.outcome.failed == 0)
        #expect(pageNodes(r, Self.misplaced, 16) == Array(repeating: 0, count: 16))
        #expect(r.nodes.contains("pid 1 vma 200000-208000 bind([0])"))
    }

    @Test func strictWithoutMoveFailsWithEIOAndChangesNothing() throws {
        let r = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.misplaced, 16 * page, policy: Self.toNode0, flags: .strict, walker: w)
        }
        #expect(r.errno == EIO)
        let (fresh, child) = try build()
        #expect(r.state == endState(fresh) + endState(child))
        #expect(r.nodes == nodes(fresh, child))
    }

    @Test func strictWithNothingMisplacedSucceeds() throws {
        let placed = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.placed, 8 * page, policy: Self.toNode0, flags: .strict, walker: w)
        }
        #expect(placed.errno == 0 && placed.outcome == MempolicyOutcome())
        // Node 1's folios checked against a node-1 policy: none misplaced.
        let onOne = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.misplaced, 8 * page, policy: .bind([1]), flags: .strict, walker: w)
        }
        #expect(onOne.errno == 0 && onOne.outcome.queued.isEmpty)
    }

    @Test func strictWithMoveSucceedsWhenAllMove() throws {
        let r = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.misplaced, 16 * page, policy: Self.toNode0, flags: [.strict, .move], walker: w)
        }
        #expect(r.errno == 0)
        #expect(r.outcome.migrated.count == 8 && r.outcome.failed == 0)
        #expect(pageNodes(r, Self.misplaced, 16) == Array(repeating: 0, count: 16))
    }

    // MARK: Holes

    @Test func holeWithoutDiscontigIsEFAULTAndPutsBack() throws {
        let (fresh, child) = try build()
        let before = endState(fresh) + endState(child)
        // The hole after `placed`: the first VMA's folios were isolated,
        // then given back.
        let middle = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.misplaced, 40 * page, policy: Self.toNode0, flags: .move, walker: w)
        }
        #expect(middle.errno == EFAULT)
        #expect(middle.state == before)
        // A hole at the head of the range.
        let head = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.misplaced - 4 * page, 8 * page, policy: Self.toNode0, flags: .move, walker: w)
        }
        #expect(head.errno == EFAULT && head.state == before)
        // A hole at the tail: the range runs past `tail`'s end.
        let end = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.tail, 16 * page, policy: Self.toNode0, flags: .strict, walker: w)
        }
        #expect(end.errno == EFAULT)
        // STRICT finds the misplaced folio before the hole: -EIO first.
        let strictFirst = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.misplaced, 40 * page, policy: Self.toNode0, flags: .strict, walker: w)
        }
        #expect(strictFirst.errno == EIO)
    }

    @Test func defaultPolicyAllowsHolesButNotARangeInOne() throws {
        // MPOL_DEFAULT is DISCONTIG_OK, drops STRICT, and with MOVE every
        // folio is misplaced against its empty mask: all go to node 0
        // (the task's local node), those on node 0 already included.
        let r = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.misplaced, 40 * page, policy: .default, flags: [.strict, .move], walker: w)
        }
        #expect(r.errno == 0)
        #expect(r.outcome.queued.count == 24 && r.outcome.migrated.count == 24)
        #expect(pageNodes(r, Self.misplaced, 16) == Array(repeating: 0, count: 16))
        #expect(pageNodes(r, Self.tail, 8) == Array(repeating: 0, count: 8))
        let inHole = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.placed + 8 * page, 8 * page, policy: .default, flags: [], walker: w)
        }
        #expect(inHole.errno == EFAULT)
    }

    @Test func migratePagesWalksEverythingWithHoles() throws {
        // From node 1 to node 0: MOVE leaves the shared folios (no
        // failure); the hugetlb folio is queued.
        let r = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.migratePages(mm, from: [1], to: [0], walker: w)
        }
        #expect(r.errno == 0)
        // 8 + 8 small, 1 THP, 4 mTHPs, 16 file, 1 hugetlb: all move.
        #expect(r.outcome.queued.count == 38)
        #expect(r.outcome.queued.map(\.node) == Array(repeating: 1, count: 38))
        #expect(r.outcome.migrated.count == 38 && r.outcome.failed == 0)
        #expect(pageNodes(r, Self.hugetlb, 512) == Array(repeating: 0, count: 512))
        #expect(pageNodes(r, Self.thp, 512) == Array(repeating: 0, count: 512))
        #expect(pageNodes(r, Self.misplaced, 16) == Array(repeating: 0, count: 16))
        #expect(pageNodes(r, Self.shared, 8) == Array(repeating: 1, count: 8))
        #expect(pageNodes(r, Self.shared, 8, pid: 2) == Array(repeating: 1, count: 8))
        let all = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.migratePages(mm, from: [1], to: [0], moveAll: true, walker: w)
        }
        #expect(all.outcome.queued.count == 46 && all.outcome.migrated.count == 46 && all.outcome.failed == 0)
        #expect(pageNodes(all, Self.shared, 8) == Array(repeating: 0, count: 8))
        #expect(pageNodes(all, Self.shared, 8, pid: 2) == Array(repeating: 0, count: 8))
        // A node moving to itself moves nothing.
        let same = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.migratePages(mm, from: [1], to: [1], walker: w)
        }
        #expect(same.errno == 0 && same.outcome == MempolicyOutcome())
    }

    // MARK: THP, mTHP, file, hugetlb, shared

    @Test func thpIsQueuedWhole() throws {
        let r = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.thp, 2 * mb2, policy: Self.toNode0, flags: .move, walker: w)
        }
        #expect(r.errno == 0)
        #expect(shape(r.outcome.queued) == shape([Self.thp], node: 1, pages: 512))
        #expect(shape(r.outcome.migrated) == shape([Self.thp], node: 0, pages: 512))
        #expect(pageNodes(r, Self.thp, 512) == Array(repeating: 0, count: 512))
        // Half the THP in the range: still queued whole; the policy's VMA
        // split maps it by PTEs, and it moves whole.
        let half = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.thp, mb2 / 2, policy: Self.toNode0, flags: .move, walker: w)
        }
        #expect(shape(half.outcome.queued) == shape([Self.thp], node: 1, pages: 512))
        #expect(pageNodes(half, Self.thp, 512) == Array(repeating: 0, count: 512))
        #expect(half.nodes.contains("pid 1 vma 800000-900000 bind([0])"))
    }

    @Test func mTHPsAreQueuedOnceEach() throws {
        let r = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.mthp + 8 * page, 32 * page, policy: Self.toNode0, flags: .move, walker: w)
        }
        let heads = [0, 16, 32].map { Self.mthp + UInt64($0) * page }
        #expect(shape(r.outcome.queued) == shape(heads, node: 1, pages: 16))
        #expect(shape(r.outcome.migrated) == shape(heads, node: 0, pages: 16))
        #expect(pageNodes(r, Self.mthp, 64) == Array(repeating: 0, count: 48) + Array(repeating: 1, count: 16))
        // STRICT alone counts the first and stops.
        let strict = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.mthp, 64 * page, policy: Self.toNode0, flags: .strict, walker: w)
        }
        #expect(strict.errno == EIO)
    }

    @Test func fileFoliosMove() throws {
        let r = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.fileStart, 16 * page, policy: Self.toNode0, flags: .move, walker: w)
        }
        let all = (0..<16).map { Self.fileStart + UInt64($0) * page }
        #expect(shape(r.outcome.queued) == shape(all, node: 1, pages: 1))
        #expect(pageNodes(r, Self.fileStart, 16) == Array(repeating: 0, count: 16))
    }

    @Test func hugetlbFolioIsQueued() throws {
        let r = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.hugetlb, 2 * mb2, policy: Self.toNode0, flags: .move, walker: w)
        }
        #expect(r.errno == 0)
        #expect(shape(r.outcome.queued) == shape([Self.hugetlb], node: 1, pages: 512))
        #expect(shape(r.outcome.migrated) == shape([Self.hugetlb], node: 0, pages: 512))
        #expect(r.outcome.failed == 0)
        #expect(pageNodes(r, Self.hugetlb, 512) == Array(repeating: 0, count: 512))
        let strict = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.hugetlb, 2 * mb2, policy: Self.toNode0, flags: .strict, walker: w)
        }
        #expect(strict.errno == EIO && strict.outcome.queued.isEmpty)
    }

    @Test func sharedFoliosMoveOnlyWithMoveAll() throws {
        // MOVE: left, and no failure, even with STRICT.
        let move = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.shared, 8 * page, policy: Self.toNode0, flags: [.strict, .move], walker: w)
        }
        #expect(move.errno == 0 && move.outcome.queued.isEmpty && move.outcome.failed == 0)
        #expect(pageNodes(move, Self.shared, 8) == Array(repeating: 1, count: 8))
        // MOVE_ALL: both processes' mappings follow the folios to node 0.
        let all = try twin { (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.shared, 8 * page, policy: Self.toNode0, flags: .moveAll, walker: w)
        }
        let eight = (0..<8).map { Self.shared + UInt64($0) * page }
        #expect(shape(all.outcome.queued) == shape(eight, node: 1, pages: 1))
        #expect(shape(all.outcome.migrated) == shape(eight, node: 0, pages: 1))
        #expect(pageNodes(all, Self.shared, 8) == Array(repeating: 0, count: 8))
        #expect(pageNodes(all, Self.shared, 8, pid: 2) == Array(repeating: 0, count: 8))
    }

    @Test func migrationEntriesCountAsNotQueued() throws {
        let prepare: (AddressSpace) throws -> Void = { mm in try mm.startMigration(Self.misplaced, Self.misplaced + 4 * page) }
        let move = try twin({ (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.misplaced, 8 * page, policy: Self.toNode0, flags: .move, walker: w)
        }, prepare: prepare)
        let last4 = (4..<8).map { Self.misplaced + UInt64($0) * page }
        #expect(move.errno == 0)
        #expect(shape(move.outcome.queued) == shape(last4, node: 1, pages: 1))
        #expect(move.outcome.failed == 4)
        // With STRICT the moves happen and the call still fails.
        let strictMove = try twin({ (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.misplaced, 8 * page, policy: Self.toNode0, flags: [.strict, .move], walker: w)
        }, prepare: prepare)
        #expect(strictMove.errno == EIO)
        #expect(pageNodes(strictMove, Self.misplaced + 4 * page, 4) == Array(repeating: 0, count: 4))
    }

    @Test func folioOffTheLRUIsUnmovable() throws {
        // The third folio is off the LRU (isolated by someone else): it
        // cannot be queued and counts as not moved.
        let prepare: (AddressSpace) throws -> Void = { mm in
            let f = try #require(self.folio(mm, Self.misplaced + 2 * page))
            #expect(mm.isolateFromLRU(f))
        }
        let move = try twin({ (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.misplaced, 8 * page, policy: Self.toNode0, flags: .move, walker: w)
        }, prepare: prepare)
        #expect(move.errno == 0)
        #expect(move.outcome.queued.count == 7 && move.outcome.migrated.count == 7 && move.outcome.failed == 1)
        #expect(pageNodes(move, Self.misplaced, 8) == [0, 0, 1, 0, 0, 0, 0, 0])
        // STRICT: the others still move, and the call fails.
        let strict = try twin({ (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, Self.misplaced, 8 * page, policy: Self.toNode0, flags: [.strict, .move], walker: w)
        }, prepare: prepare)
        #expect(strict.errno == EIO)
        #expect(pageNodes(strict, Self.misplaced, 8) == [0, 0, 1, 0, 0, 0, 0, 0])
    }

    @Test func zeroPagesAndPFNMapsAreNeverQueued() throws {
        let prepare: (AddressSpace) throws -> Void = { mm in
            // Read faults map the zero page; a PFN map sits after them.
            try mm.mmap(start: 14 * mb2, end: 14 * mb2 + 8 * page, access: [.read, .write], policy: .bind([1]))
            try mm.fault(14 * mb2, 14 * mb2 + 8 * page, write: false)
            try mm.mmap(start: 14 * mb2 + 8 * page, end: 14 * mb2 + 16 * page, access: [.read], kind: .pfnMap(firstPFN: 0x90000))
        }
        let r = try twin({ (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, 14 * mb2, 16 * page, policy: Self.toNode0, flags: [.strict, .move], walker: w)
        }, prepare: prepare)
        #expect(r.errno == 0 && r.outcome == MempolicyOutcome())
        let strict = try twin({ (mm, w) throws(MempolicyError) in
            try Mempolicy.mbind(mm, 14 * mb2, 16 * page, policy: Self.toNode0, flags: .strict, walker: w)
        }, prepare: prepare)
        #expect(strict.errno == 0)
    }

    func folio(_ mm: AddressSpace, _ a: UInt64) -> Folio? {
        guard case .present(_, _, let pfn) = mm.translate(a), let f = mm.memory.folio(containing: pfn), !f.isZero else { return nil }
        return f
    }

    @Test func invalidArguments() throws {
        let (mm, _) = try build()
        for w in WalkerKind.allCases {
            #expect(throws: MempolicyError.self) { try Mempolicy.mbind(mm, Self.misplaced + 1, page, policy: Self.toNode0, flags: [], walker: w) }
            #expect(throws: MempolicyError.self) { try Mempolicy.mbind(mm, Self.misplaced, page, policy: .bind([5]), flags: [], walker: w) }
            #expect(throws: MempolicyError.self) { try Mempolicy.mbind(mm, Self.misplaced, page, policy: Self.toNode0, flags: MempolicyFlags(rawValue: 8), walker: w) }
            #expect(throws: MempolicyError.self) { try Mempolicy.migratePages(mm, from: [1], to: [7], walker: w) }
        }
        do { try Mempolicy.mbind(mm, Self.misplaced + 1, page, policy: Self.toNode0, flags: []) } catch { #expect(error.errno == EINVAL) }
    }

    // MARK: Other geometries

    /// Both walkers agree on every geometry (x86-64 5-level, arm64 4-, 3-
    /// and 2-level): small folios, a THP, mTHPs, and a hugetlb folio where
    /// the address space reaches 1 GiB, all queued and moved to node 0.
    @Test(arguments: allGeometries) func bothWalkersAgreeOnEveryGeometry(_ g: Geometry) throws {
        var runs: [(Int32, MempolicyOutcome, [String], [String])] = []
        for walker in WalkerKind.allCases {
            let mm = try AddressSpace(geometry: g, memory: PhysicalMemory(budgetBytes: 512 << 20, nodes: 2))
            let rw: VMFlags = [.read, .write], on1 = MemoryPolicy.bind([1])
            try mm.mmap(start: Self.misplaced, end: Self.misplaced + 8 * page, access: rw, policy: on1)
            try mm.fault(Self.misplaced, Self.misplaced + 8 * page, write: true)
            try mm.mmap(start: Self.thp, end: Self.thp + 2 * mb2, access: rw, extraFlags: [.hugePage], policy: on1)
            try mm.populateTHP(Self.thp, Self.thp + mb2)
            try mm.mmap(start: Self.mthp, end: Self.mthp + 64 * page, access: rw, policy: on1)
            try mm.populateLargeFolios(Self.mthp, Self.mthp + 64 * page, order: 4)
            let withHugetlb = Self.hugetlb + 2 * mb2 <= g.userAddressLimit
            if withHugetlb {
                try mm.mmap(start: Self.hugetlb, end: Self.hugetlb + 2 * mb2, access: rw,
                            kind: .hugetlb(pageSize: mb2, file: nil), policy: on1)
                try mm.populateHugetlb(Self.hugetlb, Self.hugetlb + mb2)
            }
            var rc: Int32 = 0
            var outcome = MempolicyOutcome()
            do throws(MempolicyError) {
                outcome = try Mempolicy.mbind(mm, Self.misplaced, Self.hugetlb + 2 * mb2 - Self.misplaced, policy: Self.toNode0,
                                              flags: [.strict, .move], walker: walker)
            } catch { rc = error.errno }
            // The range has holes: EFAULT, nothing moved. Then
            // migrate_pages, which allows them.
            #expect(rc == EFAULT, "\(g) \(walker)")
            outcome = try Mempolicy.migratePages(mm, from: [1], to: [0], walker: walker)
            #expect(outcome.migrated.count == 8 + 1 + 4 + (withHugetlb ? 1 : 0) && outcome.failed == 0, "\(g) \(walker)")
            runs.append((rc, outcome, endState(mm), nodes(mm)))
        }
        #expect(runs[0].0 == runs[1].0 && runs[0].1 == runs[1].1)
        #expect(runs[0].2 == runs[1].2, "\(endStateDifferences(runs[0].2, runs[1].2).joined(separator: "\n"))")
        #expect(runs[0].3 == runs[1].3)
        #expect(!runs[0].3.contains { $0.hasSuffix("node 1") })
    }

    // MARK: The moves against the reference model

    /// migrate_pages(2) from node 1 to node 0 over small, THP, mTHP, file
    /// and hugetlb folios, against the reference model's `migrate` to node
    /// 0 of the same ranges (`migrateHugetlb` for the hugetlb folio) (a new folio on the target node, every mapping
    /// moved to it, the old one freed): the same pages, folios, counts and
    /// nodes.
    @Test func movesMatchTheReferenceModel() throws {
        for walker in WalkerKind.allCases {
            let memory = try PhysicalMemory(budgetBytes: 512 << 20, nodes: 2)
            let mm = try AddressSpace(geometry: .x86_64, memory: memory, options: AddressSpaceOptions(pid: 1))
            let ref = ReferenceModel(geometry: .x86_64, options: AddressSpaceOptions(pid: 1), nodes: 2)
            _ = ref.addProcess(pid: 1)
            let file = memory.file(path: "/data/f", device: DeviceNumber(major: 8, minor: 1), inode: 42)
            let rw: VMFlags = [.read, .write], on1 = MemoryPolicy.bind([1])
            let ranges: [(UInt64, UInt64)] = [(Self.misplaced, Self.misplaced + 8 * page), (Self.thp, Self.thp + 2 * mb2),
                                              (Self.mthp, Self.mthp + 64 * page), (Self.fileStart, Self.fileStart + 16 * page)]
            try mm.mmap(start: ranges[0].0, end: ranges[0].1, access: rw, policy: on1)
            try ref.mmap(pid: 1, start: ranges[0].0, end: ranges[0].1, access: rw, policy: on1)
            try mm.fault(ranges[0].0, ranges[0].1, write: true)
            try ref.fault(pid: 1, ranges[0].0, ranges[0].1, write: true)
            try mm.mmap(start: ranges[1].0, end: ranges[1].1, access: rw, extraFlags: [.hugePage], policy: on1)
            try ref.mmap(pid: 1, start: ranges[1].0, end: ranges[1].1, access: rw, extraFlags: [.hugePage], policy: on1)
            try mm.populateTHP(Self.thp, Self.thp + mb2)
            try ref.populateTHP(pid: 1, Self.thp, Self.thp + mb2)
            try mm.mmap(start: ranges[2].0, end: ranges[2].1, access: rw, policy: on1)
            try ref.mmap(pid: 1, start: ranges[2].0, end: ranges[2].1, access: rw, policy: on1)
            try mm.populateLargeFolios(ranges[2].0, ranges[2].1, order: 4)
            try ref.populateLargeFolios(pid: 1, ranges[2].0, ranges[2].1, order: 4)
            try mm.mmap(start: ranges[3].0, end: ranges[3].1, access: rw, kind: .file(file, offset: 0), policy: on1)
            try ref.mmap(pid: 1, start: ranges[3].0, end: ranges[3].1, access: rw, kind: .file(file, offset: 0), policy: on1)
            try mm.fault(ranges[3].0, ranges[3].1, write: false)
            try ref.fault(pid: 1, ranges[3].0, ranges[3].1, write: false)
            let huge = MappingKind.hugetlb(pageSize: mb2, file: nil)
            try mm.mmap(start: Self.hugetlb, end: Self.hugetlb + 2 * mb2, access: rw, kind: huge, policy: on1)
            try ref.mmap(pid: 1, start: Self.hugetlb, end: Self.hugetlb + 2 * mb2, access: rw, kind: huge, policy: on1)
            try mm.populateHugetlb(Self.hugetlb, Self.hugetlb + mb2)
            try ref.populateHugetlb(pid: 1, Self.hugetlb, Self.hugetlb + mb2)
            #expect(ReferenceChecker.check([mm], against: ref).isEmpty, "before, \(walker)")

            let outcome = try Mempolicy.migratePages(mm, from: [1], to: [0], walker: walker)
            for (s, e) in ranges { try ref.migrate(pid: 1, s, e, toNode: 0) }
            #expect(try ref.migrateHugetlb(pid: 1, at: Self.hugetlb, toNode: 0))
            #expect(outcome.migrated.count == 8 + 1 + 4 + 16 + 1 && outcome.failed == 0, "\(walker)")
            let mismatches = ReferenceChecker.check([mm], against: ref)
            #expect(mismatches.isEmpty, "\(walker): \(mismatches.prefix(5))")
            // The old frames are free.
            for q in outcome.queued { #expect(memory.folio(containing: q.pfn)?.pfn != q.pfn || memory.folio(containing: q.pfn)?.node == 0) }
        }
    }

    // MARK: Locks

    @Test func mbindWalkWriteLocksEachVMAItWalks() throws {
        for w in WalkerKind.allCases {
            let (mm, _) = try build()
            let locked = try mm.withMmapWriteLock { (_) throws(MempolicyError) -> [Bool] in
                _ = try Mempolicy.queuePages(mm, Self.placed, Self.placed + 8 * page, nodes: [0],
                                             flags: [.strict, .invert, .writeLock], walker: w)
                return mm.vmas.prefix(3).map { mm.isVMAWriteLocked($0) }
            }
            // `misplaced` is outside the range; `placed` was walked.
            #expect(locked == [false, true, false], "\(w)")
        }
        #expect(Mempolicy.walkOps(try build().0, writeLock: true).walkLock == .write)
        #expect(Mempolicy.walkOps(try build().0, writeLock: false).walkLock == .read)
    }
}
