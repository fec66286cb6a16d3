import Testing
import Foundation
import MemoryModel
import TestKit
import PageWalk
import ProcFS
import ReferenceModel

/// Differential fuzzing: seeded random operation sequences on every
/// architecture and geometry, applied to the model and to the reference
/// (ReferenceModel, independent of page tables). After every step the
/// ReferenceChecker compares them, and the range walker (unbatched and
/// batched), the callback walker and the reference must agree entry by
/// entry; at the end every producer's twins (range batched, range
/// unbatched, callback) must print the same bytes, and tearing everything
/// down must leave only page-cache folios and no swap slots.
///
/// CI runs a bounded number of sequences; `PAGEWALK_FUZZ_ITERATIONS=N`
/// (sequences per geometry), `PAGEWALK_FUZZ_SEED=S` (first seed) and
/// `PAGEWALK_FUZZ_STEPS=K` run more. A failure prints the seed and a
/// minimal reproducing operation sequence (ops are dropped while the
/// failure persists).
@Suite struct DifferentialFuzzTests {
    static let geometries: [Geometry] = [
        .x86_64, .x86_64FiveLevel, try! Geometry(.x86_64, levels: 3), try! Geometry(.x86_64, levels: 2),
        .arm64, try! Geometry(.arm64, levels: 3), try! Geometry(.arm64, levels: 2),
    ]
    static var iterations: Int { Knobs.int("PAGEWALK_FUZZ_ITERATIONS") ?? 10 }
    static var steps: Int { Knobs.int("PAGEWALK_FUZZ_STEPS") ?? 60 }
    static var firstSeed: UInt64 { Knobs.uint("PAGEWALK_FUZZ_SEED") ?? 0x5EED_0000 }

    @Test(arguments: 0..<7)
    func randomSequencesAgreeEverywhere(geometryIndex: Int) throws {
        let g = Self.geometries[geometryIndex]
        for k in 0..<Self.iterations {
            let seed = Self.firstSeed &+ UInt64(k)
            let ops = FuzzRun.generate(seed: seed, geometry: g, steps: Self.steps)
            guard let failure = FuzzRun.execute(ops, geometry: g) else { continue }
            let minimal = FuzzRun.shrink(ops, geometry: g)
            let final = FuzzRun.execute(minimal, geometry: g) ?? failure
            Issue.record(Comment(rawValue: """
                fuzz failure on \(g), seed \(seed) (reproduce: PAGEWALK_FUZZ_SEED=\(seed) PAGEWALK_FUZZ_ITERATIONS=1 \
                PAGEWALK_FUZZ_STEPS=\(Self.steps) swift test --filter DifferentialFuzzTests)
                \(final)
                minimal sequence (\(minimal.count) of \(ops.count) ops):
                  \(minimal.map(\.description).joined(separator: "\n  "))
                """))
            return
        }
        FuzzRun.casesRun.add(Self.iterations, ordering: .relaxed)
    }

    /// The shrinker keeps a failure and drops what does not matter.
    @Test func shrinkingKeepsTheFailureAndDropsTheRest() {
        let ops: [FuzzOp] = (0..<40).map { FuzzOp(kind: .fault, pid: 1, start: UInt64($0) * 4096, end: UInt64($0 + 1) * 4096, arg: $0) }
        // A synthetic failure: ops 7 and 23 both present.
        let minimal = FuzzRun.shrink(ops, geometry: .x86_64) { o in
            o.contains { $0.arg == 7 } && o.contains { $0.arg == 23 } ? "fails" : nil
        }
        #expect(minimal.map(\.arg) == [7, 23])
    }
}

/// One operation of a fuzz sequence, concrete enough to replay.
struct FuzzOp: CustomStringConvertible, Sendable {
    enum Kind: String, CaseIterable, Sendable {
        case fault, readFault, thp, mthp, hugetlb, zap, swapOut, swapIn, migrate, startMigration, finishMigration
        case devicePrivate, deviceExclusive, poison, uffdWP, guardInstall, guardRemove
        case remapPFN, fork, tearDown, mprotect, mlock, munlock, madvFree, ksm, clearRefs, munmap, mmap
    }
    var kind: Kind
    var pid: Int
    var start: UInt64
    var end: UInt64
    var arg: Int
    var description: String { "\(kind)(pid \(pid), \(hx(start))-\(hx(end)), arg \(arg))" }
}

import Synchronization

enum FuzzRun {
    static let casesRun = Atomic<Int>(0)
    static let base: UInt64 = 0x1000_0000
    static let accesses: [VMFlags] = [[.read], [.read, .write], [], [.read, .exec], [.read, .write]]
    static let clearKinds: [AddressSpace.ClearRefs] = [.all, .anonymous, .file, .softDirty]

    /// The real side and the reference, driven together.
    final class Harness {
        let geometry: Geometry
        let memory: PhysicalMemory
        let model: ReferenceModel
        var spaces: [Int: AddressSpace] = [:]
        var rejected = 0
        let file: FileObject, shm: FileObject

        init(_ g: Geometry, softDirty: Bool) throws {
            geometry = g
            memory = try PhysicalMemory(budgetBytes: 2 << 30, nodes: 2, swapSlots: 1 << 18)
            let o = AddressSpaceOptions(softDirty: softDirty, pid: 1)
            model = ReferenceModel(geometry: g, options: o, nodes: 2)
            spaces[1] = try AddressSpace(geometry: g, memory: memory, options: o)
            _ = model.addProcess(pid: 1)
            file = memory.file(path: "/usr/lib/libfuzz.so", device: DeviceNumber(major: 8, minor: 1), inode: 77)
            shm = memory.file(path: "/dev/shm/fuzz", device: DeviceNumber(major: 0, minor: 0x1a), inode: 9, isShmem: true)
        }

        var all: [AddressSpace] { spaces.keys.sorted().map { spaces[$0]! } }

        /// Runs both sides; they must both succeed or fail the same way.
        func both(_ what: String, real: () throws -> Void, ref: () throws -> Void) -> String? {
            compareOutcomes(real: real, ref: ref, rejected: &rejected).map { "\(what): \($0)" }
        }

        func setup() -> String? {
            let g = geometry
            var out: [String?] = [
                both("mmap", real: { try spaces[1]!.mmap(start: base, end: base + 4 * mb, access: [.read, .write], extraFlags: [.mergeable, .uffdWP]) },
                     ref: { try model.mmap(pid: 1, start: base, end: base + 4 * mb, access: [.read, .write], extraFlags: [.mergeable, .uffdWP]) }),
                both("mmap", real: { try spaces[1]!.mmap(start: base + 4 * mb, end: base + 6 * mb, access: [.read, .write], policy: .interleave([0, 1])) },
                     ref: { try model.mmap(pid: 1, start: base + 4 * mb, end: base + 6 * mb, access: [.read, .write], policy: .interleave([0, 1])) }),
                both("mmap", real: { try spaces[1]!.mmap(start: base + 8 * mb, end: base + 8 * mb + 256 << 10, access: [.read, .write], kind: .file(file, offset: 0)) },
                     ref: { try model.mmap(pid: 1, start: base + 8 * mb, end: base + 8 * mb + 256 << 10, access: [.read, .write], kind: .file(file, offset: 0)) }),
                both("mmap", real: { try spaces[1]!.mmap(start: base + 9 * mb, end: base + 9 * mb + 128 << 10, access: [.read, .write], shared: true, kind: .file(shm, offset: 0)) },
                     ref: { try model.mmap(pid: 1, start: base + 9 * mb, end: base + 9 * mb + 128 << 10, access: [.read, .write], shared: true, kind: .file(shm, offset: 0)) }),
                both("mmap", real: { try spaces[1]!.mmap(start: base + 10 * mb, end: base + 10 * mb + 128 << 10, access: [.read, .write], shared: true) },
                     ref: { try model.mmap(pid: 1, start: base + 10 * mb, end: base + 10 * mb + 128 << 10, access: [.read, .write], shared: true) }),
                both("mmap", real: { try spaces[1]!.mmap(start: base + 11 * mb, end: base + 11 * mb + 64 << 10, access: [.read, .write], shared: true, kind: .mixedMap(firstPFN: 0x80000)) },
                     ref: { try model.mmap(pid: 1, start: base + 11 * mb, end: base + 11 * mb + 64 << 10, access: [.read, .write], shared: true, kind: .mixedMap(firstPFN: 0x80000)) }),
                both("mmap", real: { try spaces[1]!.mmap(start: base + 11 * mb + 128 << 10, end: base + 11 * mb + 192 << 10, access: [.read], kind: .pfnMap(firstPFN: 0x90000)) },
                     ref: { try model.mmap(pid: 1, start: base + 11 * mb + 128 << 10, end: base + 11 * mb + 192 << 10, access: [.read], kind: .pfnMap(firstPFN: 0x90000)) }),
                both("mmap", real: { try spaces[1]!.mmap(start: base + 12 * mb, end: base + 14 * mb, access: [.read, .write], extraFlags: [.hugePage]) },
                     ref: { try model.mmap(pid: 1, start: base + 12 * mb, end: base + 14 * mb, access: [.read, .write], extraFlags: [.hugePage]) }),
            ]
            if g.hugetlbSizes.contains(2 << 20) {
                out.append(both("mmap", real: { try spaces[1]!.mmap(start: base + 16 * mb, end: base + 20 * mb, access: [.read, .write], kind: .hugetlb(pageSize: 2 << 20, file: nil)) },
                                ref: { try model.mmap(pid: 1, start: base + 16 * mb, end: base + 20 * mb, access: [.read, .write], kind: .hugetlb(pageSize: 2 << 20, file: nil)) }))
            }
            if g.hugetlbSizes.contains(64 << 10) {
                out.append(both("mmap", real: { try spaces[1]!.mmap(start: base + 22 * mb, end: base + 22 * mb + 256 << 10, access: [.read, .write], kind: .hugetlb(pageSize: 64 << 10, file: nil)) },
                                ref: { try model.mmap(pid: 1, start: base + 22 * mb, end: base + 22 * mb + 256 << 10, access: [.read, .write], kind: .hugetlb(pageSize: 64 << 10, file: nil)) }))
            }
            return out.compactMap { $0 }.first
        }

        /// Applies one op to both sides (ops naming a process that does not
        /// exist, as after shrinking, are skipped).
        func apply(_ op: FuzzOp) -> String? {
            let pid = op.pid, s = op.start, e = op.end, a = op.arg
            guard let mm = spaces[pid] else { return nil }
            let m = model
            switch op.kind {
            case .fault: return both("\(op)", real: { try mm.fault(s, e, write: true) }, ref: { try m.fault(pid: pid, s, e, write: true) })
            case .readFault: return both("\(op)", real: { try mm.fault(s, e, write: false) }, ref: { try m.fault(pid: pid, s, e, write: false) })
            case .thp: return both("\(op)", real: { try mm.populateTHP(s, e, write: a != 0) }, ref: { try m.populateTHP(pid: pid, s, e, write: a != 0) })
            case .mthp: return both("\(op)", real: { try mm.populateLargeFolios(s, e, order: a) }, ref: { try m.populateLargeFolios(pid: pid, s, e, order: a) })
            case .hugetlb: return both("\(op)", real: { try mm.populateHugetlb(s, e, write: a != 0) }, ref: { try m.populateHugetlb(pid: pid, s, e, write: a != 0) })
            case .zap: return both("\(op)", real: { try mm.zap(s, e) }, ref: { try m.zap(pid: pid, s, e) })
            case .swapOut: return both("\(op)", real: { try mm.swapOut(s, e) }, ref: { try m.swapOut(pid: pid, s, e) })
            case .swapIn: return both("\(op)", real: { try mm.swapIn(s, e) }, ref: { try m.swapIn(pid: pid, s, e) })
            case .migrate: return both("\(op)", real: { try mm.migrate(s, e, toNode: a) }, ref: { try m.migrate(pid: pid, s, e, toNode: a) })
            case .startMigration: return both("\(op)", real: { try mm.startMigration(s, e) }, ref: { try m.startMigration(pid: pid, s, e) })
            case .finishMigration: return both("\(op)", real: { try mm.finishMigration(s, e) }, ref: { try m.finishMigration(pid: pid, s, e) })
            case .devicePrivate: return both("\(op)", real: { try mm.makeDevicePrivate(s, e, writable: a != 0) }, ref: { try m.makeDevicePrivate(pid: pid, s, e, writable: a != 0) })
            case .deviceExclusive: return both("\(op)", real: { try mm.makeDeviceExclusive(s, e) }, ref: { try m.makeDeviceExclusive(pid: pid, s, e) })
            case .poison: return both("\(op)", real: { try mm.poison(s) }, ref: { try m.poison(pid: pid, s) })
            case .uffdWP: return both("\(op)", real: { try mm.userfaultWriteProtect(s, e) }, ref: { try m.userfaultWriteProtect(pid: pid, s, e) })
            case .guardInstall:
                // madvise(MADV_GUARD_INSTALL) through install_pte, as the kernel
                // builds it; compared by errno, partial installs included.
                return compareMadviseOutcomes(real: { try madviseGuardInstall(mm, s, e) },
                                              ref: { try m.installGuardMarkers(pid: pid, s, e) }, rejected: &rejected).map { "\(op): \($0)" }
            case .guardRemove:
                return compareMadviseOutcomes(real: { try madviseGuardRemove(mm, s, e) },
                                              ref: { try m.removeGuardMarkers(pid: pid, s, e) }, rejected: &rejected).map { "\(op): \($0)" }
            case .remapPFN: return both("\(op)", real: { try mm.remapPFN(s, e) }, ref: { try m.remapPFN(pid: pid, s, e) })
            case .fork:
                guard spaces[a] == nil else { return nil }
                return both("\(op)", real: { spaces[a] = try mm.fork(childPID: a) }, ref: { try m.fork(pid: pid, childPID: a) })
            case .tearDown:
                return both("\(op)", real: { try mm.tearDown(); spaces[pid] = nil }, ref: { try m.tearDown(pid: pid) })
            case .mprotect:
                let acc = FuzzRun.accesses[a]
                return both("\(op)", real: { try mm.mprotect(s, e, access: acc) }, ref: { try m.mprotect(pid: pid, s, e, access: acc) })
            case .mlock: return both("\(op)", real: { try mm.mlock(s, e) }, ref: { try m.mlock(pid: pid, s, e) })
            case .munlock: return both("\(op)", real: { try mm.munlock(s, e) }, ref: { try m.munlock(pid: pid, s, e) })
            case .madvFree: return both("\(op)", real: { try mm.madviseFree(s, e) }, ref: { try m.madviseFree(pid: pid, s, e) })
            case .ksm: return both("\(op)", real: { try mm.ksmMerge(s, e, distinct: a) }, ref: { try m.ksmMerge(pid: pid, s, e, distinct: a) })
            case .clearRefs:
                let k = FuzzRun.clearKinds[a]
                return both("\(op)", real: { try mm.clearRefs(k) }, ref: { try m.clearRefs(pid: pid, k) })
            case .munmap: return both("\(op)", real: { try mm.munmap(s, e) }, ref: { try m.munmap(pid: pid, s, e) })
            case .mmap:
                return both("\(op)", real: { try mm.mmap(start: s, end: e, access: [.read, .write]) },
                            ref: { try m.mmap(pid: pid, start: s, end: e, access: [.read, .write]) })
            }
        }
    }

    // MARK: Generation

    /// A random sequence, generated against the evolving real state so
    /// that most operations hit populated VMAs.
    static func generate(seed: UInt64, geometry g: Geometry, steps: Int) -> [FuzzOp] {
        var rng = SeededRandom(seed: seed &* 0x9E37_79B9 &+ UInt64(g.levels) &* 31 &+ (g.architecture == .arm64 ? 7 : 0))
        guard let h = try? Harness(g, softDirty: true), h.setup() == nil else { return [] }
        var ops: [FuzzOp] = []
        var nextPID = 2
        for _ in 0..<steps {
            let pid = h.spaces.keys.sorted().randomElement(using: &rng)!
            let mm = h.spaces[pid]!
            guard let vma = mm.vmas.randomElement(using: &rng) else { continue }
            // A range in the VMA (sometimes spilling into the next one).
            let (s, e) = randomRange(in: vma, of: mm, using: &rng)
            let kinds = FuzzOp.Kind.allCases
            var op = FuzzOp(kind: kinds.randomElement(using: &rng)!, pid: pid, start: s, end: e, arg: 0)
            switch op.kind {
            case .thp, .hugetlb, .devicePrivate: op.arg = Int.random(in: 0...1, using: &rng)
            case .mthp: op.arg = [2, 4, 9].randomElement(using: &rng)!
            case .migrate: op.arg = Int.random(in: 0..<3, using: &rng)
            case .poison: op.end = s + 4096
            case .fork:
                if h.spaces.count >= 3 { op.kind = .fault } else { op.arg = nextPID; nextPID += 1 }
            case .tearDown: if pid == 1 { op.kind = .zap }
            case .mprotect: op.arg = Int.random(in: 0..<accesses.count, using: &rng)
            case .ksm: op.arg = Int.random(in: 1...3, using: &rng)
            case .clearRefs: op.arg = Int.random(in: 0..<clearKinds.count, using: &rng)
            case .munmap: if Int.random(in: 0..<3, using: &rng) != 0 { op.kind = .fault }
            case .mmap:
                op.start = base + 24 * mb + UInt64(Int.random(in: 0..<8, using: &rng)) * mb
                op.end = op.start + UInt64(Int.random(in: 1...512, using: &rng)) * 4096
            default: break
            }
            ops.append(op)
            _ = h.apply(op)   // generation follows the real state; checking is execute's job
        }
        return ops
    }

    // MARK: Execution

    /// Runs `ops` from scratch with every check; the first failure, or nil.
    static func execute(_ ops: [FuzzOp], geometry g: Geometry, softDirty: Bool = true) -> String? {
        let h: Harness
        do { h = try Harness(g, softDirty: softDirty) } catch { return "setup: \(error)" }
        if let bad = h.setup() { return "setup: \(bad)" }
        for (i, op) in ops.enumerated() {
            if let err = h.apply(op) { return "step \(i): \(err)" }
            let mismatches = ReferenceChecker.check(h.all, against: h.model)
            if !mismatches.isEmpty {
                return "step \(i) (\(op)): reference mismatch:\n  " + mismatches.prefix(6).map(\.description).joined(separator: "\n  ")
            }
            for mm in h.all {
                if let w = compareWalkers(mm, h.model) { return "step \(i) (\(op)): pid \(mm.options.pid): \(w)" }
            }
        }
        for mm in h.all {
            if let t = compareTwins(mm) { return "twins, pid \(mm.options.pid): \(t)" }
        }
        for pid in h.spaces.keys.sorted().reversed() {
            if let e = h.apply(FuzzOp(kind: .tearDown, pid: pid, start: 0, end: 0, arg: 0)) { return "teardown: \(e)" }
        }
        if h.memory.swap.usedSlots != 0 { return "after teardown: \(h.memory.swap.usedSlots) swap slots still in use" }
        if h.memory.folioCount != h.model.liveFolioCount {
            return "after teardown: \(h.memory.folioCount) folios left, reference \(h.model.liveFolioCount)"
        }
        let cached = h.model.allFiles.reduce(0) { $0 + $1.cache.count }
        if h.model.liveFolioCount != cached { return "after teardown: \(h.model.liveFolioCount) folios live, only \(cached) in page caches" }
        return nil
    }

    /// Drops ops (halves, then quarters … then single ops) while
    /// `failure` still reports a failure.
    static func shrink(_ ops: [FuzzOp], geometry g: Geometry,
                       failure: (([FuzzOp]) -> String?)? = nil) -> [FuzzOp] {
        let fails = failure ?? { execute($0, geometry: g) }
        var current = ops
        var chunk = max(1, current.count / 2)
        var budget = 400   // executions
        while chunk >= 1 && budget > 0 {
            var i = 0
            var removedAny = false
            while i < current.count && budget > 0 {
                var candidate = current
                candidate.removeSubrange(i..<min(current.count, i + chunk))
                budget -= 1
                if fails(candidate) != nil { current = candidate; removedAny = true } else { i += chunk }
            }
            if !removedAny || chunk > 1 { chunk = chunk == 1 ? 0 : max(1, chunk / 2) }
        }
        return current
    }

    // MARK: Walkers

    /// One entry as both walkers can state it.
    struct Leaf: Hashable, CustomStringConvertible {
        let start: UInt64, end: UInt64, level: PageTableLevel, raw: UInt64
        var description: String { "\(level)@\(hx(start))-\(hx(end)) \(hx(raw))" }
    }

    /// What one page holds, as a walker entry says it.
    enum PageKey: Hashable {
        case page(UInt64, EntryAttributes), pfn(UInt64, EntryAttributes), swap(UInt64, EntryAttributes)
        case migration(UInt64), device(UInt64, Bool), hwpoison(UInt64), marker(UInt16)

        var coarse: String {
            switch self {
            case .page, .pfn: return "present"
            case .swap: return "swap"
            case .migration: return "migration"
            case .device: return "device"
            case .hwpoison: return "hwpoison"
            case .marker(let m): return "marker\(m)"
            }
        }
    }

    static func pages(of entry: WalkEntry, into map: inout [UInt64: PageKey]) {
        for k in 0..<entry.pageCount {
            let a = entry.start + UInt64(k) * 4096
            let key: PageKey
            switch entry.content {
            case .none, .hole: continue
            case .folio(let f, let first, _): key = .page(f.pfn + UInt64(first + k), entry.attributes)
            case .pfn(let p): key = .pfn(p + UInt64(k), entry.attributes)
            case .present: continue   // not produced: these walks look folios up
            case .swap(let s): key = .swap(s.offset + UInt64(k), entry.attributes)
            case .migration(_, let p, _): key = .migration(p + UInt64(k))
            case .device(let ex, _, let p, _): key = .device(p, ex)
            case .hwpoison(let p): key = .hwpoison(p)
            case .marker(let m): key = .marker(UInt16(truncatingIfNeeded: m.rawValue))
            }
            map[a] = key
        }
    }

    static func referenceKind(_ e: ExpectedPage) -> String {
        switch e {
        case .present: return "present"
        case .swap: return "swap"
        case .migration: return "migration"
        case .devicePrivate, .deviceExclusive: return "device"
        case .hwpoison: return "hwpoison"
        case .marker(let m): return "marker\(UInt16(truncatingIfNeeded: m.rawValue))"
        }
    }

    /// Range walker (unbatched) = callback walker, entry by entry; range
    /// walker batched = unbatched, page by page; and both = the reference.
    static func compareWalkers(_ mm: AddressSpace, _ model: ReferenceModel) -> String? {
        do {
            return try mm.withMmapReadLock { lock -> String? in
                guard let first = mm.vmas.first?.start, let last = mm.vmas.last?.end else { return nil }
                var rangeLeaves: [Leaf] = []
                var unbatched: [UInt64: PageKey] = [:], batched: [UInt64: PageKey] = [:]
                for e in try mm.walk(first..<last, lock: lock, options: RangeWalkOptions(batching: false)) {
                    switch e.content {
                    case .none, .hole: break
                    default: rangeLeaves.append(Leaf(start: e.start, end: e.end, level: e.level.tableLevel, raw: e.raw))
                    }
                    pages(of: e, into: &unbatched)
                }
                for e in try mm.walk(first..<last, lock: lock) { pages(of: e, into: &batched) }
                if unbatched != batched {
                    let a = Set(unbatched.keys).union(batched.keys).sorted().first { unbatched[$0] != batched[$0] }!
                    return "range walk batched vs unbatched at \(hx(a)): \(String(describing: batched[a])) vs \(String(describing: unbatched[a]))"
                }
                var ops = MMWalkOps<[Leaf]>()
                ops.pteEntry = { p, a, n, walk in
                    let w = p.rawValue
                    if w != 0 { walk.privateData.append(Leaf(start: a, end: n, level: .pte, raw: w)) }
                    return 0
                }
                ops.pmdEntry = { p, a, n, walk in
                    guard !p.hasTrivialEntries else { return 0 }
                    let w = p.rawValue
                    let l = walk.mm.geometry.layout
                    if w != 0 && !l.isTable(w, .pmd) {
                        walk.privateData.append(Leaf(start: a, end: n, level: .pmd, raw: w))
                        walk.action = .continue
                    }
                    return 0
                }
                ops.pudEntry = { p, a, n, walk in
                    guard !p.hasTrivialEntries else { return 0 }
                    let w = p.rawValue
                    let l = walk.mm.geometry.layout
                    if w != 0 && !l.isTable(w, .pud) {
                        walk.privateData.append(Leaf(start: a, end: n, level: .pud, raw: w))
                        walk.action = .continue
                    }
                    return 0
                }
                ops.hugetlbEntry = { p, _, a, n, walk in
                    let w = p.rawValue
                    if w != 0 { walk.privateData.append(Leaf(start: a, end: n, level: p.slot.level, raw: w)) }
                    return 0
                }
                var callbackLeaves: [Leaf] = []
                _ = try walkPageRange(mm, first, last, ops: ops, private: &callbackLeaves)
                if rangeLeaves != callbackLeaves {
                    let i = (0..<min(rangeLeaves.count, callbackLeaves.count)).first { rangeLeaves[$0] != callbackLeaves[$0] } ?? min(rangeLeaves.count, callbackLeaves.count)
                    return "range walker vs callback walker, entry \(i): \(i < rangeLeaves.count ? "\(rangeLeaves[i])" : "<end>") vs \(i < callbackLeaves.count ? "\(callbackLeaves[i])" : "<end>") (\(rangeLeaves.count) vs \(callbackLeaves.count) entries)"
                }
                guard let p = model.process(mm.options.pid) else { return "no reference process" }
                for vma in mm.vmas where !vma.isPFNMap {
                    for a in stride(from: vma.start, to: vma.end, by: 4096) {
                        let walked = unbatched[a]?.coarse ?? "none"
                        let expected = p.pages[a].map(referenceKind) ?? "none"
                        if walked != expected { return "\(hx(a)): walkers say \(walked), reference \(expected)" }
                    }
                }
                return nil
            }
        } catch {
            return "walk failed: \(error)"
        }
    }

    /// Every producer's twins print the same bytes.
    static func compareTwins(_ mm: AddressSpace) -> String? {
        guard let first = mm.vmas.first?.start, let last = mm.vmas.last?.end else { return nil }
        let windows = mm.vmas.map { ($0.start - 4096)..<($0.end + 4096) }
        do {
            var outs: [(String, ProducerOutput)] = []
            for (name, o) in twinConfigurations {
                outs.append((name, try ProducerOutput.capture(mm, o, windows: windows, scans: scanQueries(first..<last))))
            }
            for (name, o) in outs.dropFirst() {
                if let d = outs[0].1.firstDifference(o) { return "\(outs[0].0) vs \(name): \(d)" }
            }
        } catch {
            return "producer failed: \(error)"
        }
        return nil
    }
}
