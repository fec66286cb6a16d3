import Testing
import Foundation
import Glibc
@testable import MemoryModel
import PageWalk
import LiveKernel
import TestKit
@testable import ProcFS

/// Seeded random sequences of what user space can do to its memory, run
/// twice: for real, on mappings of this process, and on the model's mirror
/// of them. After every step the kernel's smaps and numa_maps blocks,
/// pagemap words and mincore(2) vectors of the fuzzed mappings must equal
/// the model's (mincore on both walkers), and so must the step's outcome
/// (0, or the errno the model's typed error stands for).
///
/// Knobs: `PAGEWALK_LIVE_FUZZ_SEED` (first seed), `PAGEWALK_LIVE_FUZZ_ITERATIONS`
/// (sequences), `PAGEWALK_LIVE_FUZZ_STEPS` (operations per sequence). A
/// mismatch prints the seed and a shrunk sequence that still fails.
///
/// The fuzzed memory: a private anonymous mapping, a private file mapping, a
/// shared /dev/shm (shmem) mapping and a shared anonymous mapping (shmem
/// too, with an unlinked file), each fenced by PROT_NONE reservations.
/// Operations: read and write touches, MADV_DONTNEED, MADV_FREE, mprotect
/// (none, read, read-write), mlock, munlock, MADV_GUARD_INSTALL,
/// MADV_GUARD_REMOVE, a fresh anonymous mmap over part of the anonymous
/// mapping (MAP_FIXED: munmap and mmap), fork with the child writing
/// pages, and mremap (MREMAP_MAYMOVE | MREMAP_FIXED, length kept) of pages
/// into a PROT_NONE reservation and back, which may cross VMA boundaries.
/// Ranges stay inside one fuzzed mapping, so no call meets a gap.
///
/// What the host does on its own is followed, not judged: an unmapped
/// page of the disk file that the host's reclaim evicted (mincore 0 when
/// read again) leaves the mirror's page cache too; a mismatch while another
/// process moved the THP knobs gives the sequence up, printing why.
@Suite(.serialized) struct LiveDifferentialFuzzTests {
    static func knob(_ name: String) -> UInt64? {
        guard let s = ProcessInfo.processInfo.environment[name]?.trimmingCharacters(in: .whitespaces) else { return nil }
        return s.hasPrefix("0x") ? UInt64(s.dropFirst(2), radix: 16) : UInt64(s)
    }
    static var firstSeed: UInt64 { knob("PAGEWALK_LIVE_FUZZ_SEED") ?? 0x11FE_0000 }
    static var iterations: Int { Int(knob("PAGEWALK_LIVE_FUZZ_ITERATIONS") ?? 20) }
    static var steps: Int { Int(knob("PAGEWALK_LIVE_FUZZ_STEPS") ?? 24) }

    @Test func randomSequencesAgreeWithTheKernel() throws {
        guard getuid() == 0 else { try Test.cancel("needs root: /proc/kpageflags gives the pages' LRU state") }
        guard HostFacts.current().guardRegions else { try Test.cancel("this kernel has no guard regions") }
        // Faults must get order-0 folios on every host: THP and mTHP knobs
        // pinned to the baseline for the run, and restored after it.
        let knobs = LiveMappings()
        defer { _ = knobs.tearDown() }
        do { try HostFacts.pinTHPBaseline(knobs) } catch let e as LiveMappingError {
            guard case .unavailable = e else { throw e }
            try Test.cancel("THP knobs cannot be pinned on this host: \(e)")
        }
        let began = Date()
        var totalSteps = 0, skipped = 0
        for k in 0..<Self.iterations {
            let seed = Self.firstSeed &+ UInt64(k)
            var rng = SeededRandom(seed: seed)
            let ops = (0..<Self.steps).map { _ in LiveFuzzOp.random(&rng) }
            let outcome = try LiveFuzzRun.run(ops)
            totalSteps += outcome.steps
            if let why = outcome.skipped {
                skipped += 1
                print("[live fuzz] seed \(hx(seed)) given up at step \(outcome.steps - 1): \(why)")
                continue
            }
            guard let failure = outcome.failure else { continue }
            let minimal = try LiveFuzzRun.shrink(Array(ops[...max(failure.step, 0)]))
            Issue.record("""
                live fuzz mismatch, seed \(hx(seed)) (reproduce: PAGEWALK_LIVE_FUZZ_SEED=\(hx(seed)) \
                PAGEWALK_LIVE_FUZZ_ITERATIONS=1 PAGEWALK_LIVE_FUZZ_STEPS=\(Self.steps) \
                swift test --filter LiveDifferentialFuzzTests), at step \(failure.step) (\(ops[failure.step])):
                \(failure.problems.prefix(3).joined(separator: "\n"))
                minimal sequence (\(minimal.count) ops):
                \(minimal.map { "  \($0)" }.joined(separator: "\n"))
                """)
            return
        }
        let elapsed = Date().timeIntervalSince(began)
        print("[live fuzz] \(Self.iterations) sequences, \(totalSteps) steps from seed \(hx(Self.firstSeed)) in "
              + "\(String(format: "%.1f", elapsed)) s: \(String(format: "%.1f", Double(totalSteps) / elapsed)) steps/s, "
              + "\(skipped) given up (host changed), no mismatch")
    }

    /// The shrinker keeps what the failure needs: a sequence whose mismatch
    /// needs two operations shrinks to those two.
    @Test func shrinkingKeepsTheFailingPair() {
        let ops: [LiveFuzzOp] = [.touch(.anonymous, 0..<4, write: true), .mprotect(.file, 1..<2, .none),
                                 .dontNeed(.anonymous, 0..<1), .mlock(.shmem, 0..<2), .touch(.file, 3..<4, write: false)]
        let minimal = LiveFuzzRun.shrink(ops) { seq in
            seq.contains { if case .mprotect = $0 { return true }; return false }
                && seq.contains { if case .mlock = $0 { return true }; return false }
        }
        #expect(minimal.count == 2)
    }
}

/// The fuzzed mappings.
enum LiveFuzzSlot: CaseIterable, CustomStringConvertible {
    /// `sharedAnonymous`: MAP_SHARED | MAP_ANONYMOUS, which the kernel backs
    /// with an unlinked shmem file (`/dev/zero (deleted)`).
    case anonymous, file, shmem, sharedAnonymous
    var pages: Int {
        switch self {
        case .anonymous: return 96
        case .file, .shmem, .sharedAnonymous: return 32
        }
    }
    var description: String {
        switch self {
        case .anonymous: return "anon"
        case .file: return "file"
        case .shmem: return "shmem"
        case .sharedAnonymous: return "shared-anon"
        }
    }
}

/// One step a user-space program could take.
enum LiveFuzzOp: CustomStringConvertible {
    enum Protection: CustomStringConvertible {
        case none, read, readWrite
        var prot: Int32 {
            switch self {
            case .none: return PROT_NONE
            case .read: return PROT_READ
            case .readWrite: return PROT_READ | PROT_WRITE
            }
        }
        var access: VMFlags {
            switch self {
            case .none: return []
            case .read: return [.read]
            case .readWrite: return [.read, .write]
            }
        }
        var description: String {
            switch self {
            case .none: return "PROT_NONE"
            case .read: return "PROT_READ"
            case .readWrite: return "PROT_READ|PROT_WRITE"
            }
        }
    }

    case touch(LiveFuzzSlot, Range<Int>, write: Bool)
    case dontNeed(LiveFuzzSlot, Range<Int>)
    case free(LiveFuzzSlot, Range<Int>)
    case mprotect(LiveFuzzSlot, Range<Int>, Protection)
    case mlock(LiveFuzzSlot, Range<Int>)
    case munlock(LiveFuzzSlot, Range<Int>)
    case guardInstall(LiveFuzzSlot, Range<Int>)
    case guardRemove(LiveFuzzSlot, Range<Int>)
    /// mlock2(MLOCK_ONFAULT).
    case mlockOnFault(LiveFuzzSlot, Range<Int>)
    /// `echo 1|2|3 > /proc/self/clear_refs` (the whole process).
    case clearRefs(Int)
    /// mmap(MAP_FIXED) of fresh anonymous read-write memory over pages of the
    /// anonymous mapping.
    case remap(Range<Int>)
    /// fork; the child writes the pages (of a mapping the child can write)
    /// and exits.
    case fork(LiveFuzzSlot, Range<Int>)
    /// mremap(MREMAP_MAYMOVE | MREMAP_FIXED) of the pages into a PROT_NONE
    /// reservation elsewhere, then back to where they were.
    case moveAndBack(LiveFuzzSlot, Range<Int>)

    static func random(_ rng: inout SeededRandom) -> LiveFuzzOp {
        let slot = LiveFuzzSlot.allCases[Int.random(in: 0..<LiveFuzzSlot.allCases.count, using: &rng)]
        let first = Int.random(in: 0..<slot.pages, using: &rng)
        let count = Int.random(in: 1...min(slot.pages - first, Bool.random(using: &rng) ? 4 : 40), using: &rng)
        let r = first..<(first + count)
        switch Int.random(in: 0..<24, using: &rng) {
        case 22, 23: return .moveAndBack(slot, r)
        case 20: return .mlockOnFault(slot, r)
        case 21: return .clearRefs(Int.random(in: 1...3, using: &rng))
        case 0..<6: return .touch(slot, r, write: Int.random(in: 0..<3, using: &rng) > 0)
        case 6, 7: return .dontNeed(slot, r)
        case 8: return .free(slot, r)
        case 9, 10: return .mprotect(slot, r, [.none, .read, .readWrite, .readWrite][Int.random(in: 0..<4, using: &rng)])
        case 11: return .mlock(slot, r)
        case 12: return .munlock(slot, r)
        case 13, 14: return .guardInstall(slot, r)
        case 15, 16: return .guardRemove(slot, r)
        case 17, 18:
            let a = Int.random(in: 0..<LiveFuzzSlot.anonymous.pages, using: &rng)
            return .remap(a..<min(LiveFuzzSlot.anonymous.pages, a + Int.random(in: 1...16, using: &rng)))
        default: return .fork(slot, r)
        }
    }

    var description: String {
        func p(_ r: Range<Int>) -> String { "pages \(r.lowerBound)..<\(r.upperBound)" }
        switch self {
        case .touch(let s, let r, let w): return "\(w ? "write" : "read") \(s) \(p(r))"
        case .dontNeed(let s, let r): return "MADV_DONTNEED \(s) \(p(r))"
        case .free(let s, let r): return "MADV_FREE \(s) \(p(r))"
        case .mprotect(let s, let r, let prot): return "mprotect \(s) \(p(r)) \(prot)"
        case .mlock(let s, let r): return "mlock \(s) \(p(r))"
        case .munlock(let s, let r): return "munlock \(s) \(p(r))"
        case .guardInstall(let s, let r): return "MADV_GUARD_INSTALL \(s) \(p(r))"
        case .guardRemove(let s, let r): return "MADV_GUARD_REMOVE \(s) \(p(r))"
        case .mlockOnFault(let s, let r): return "mlock2(MLOCK_ONFAULT) \(s) \(p(r))"
        case .clearRefs(let k): return "echo \(k) > clear_refs"
        case .remap(let r): return "mmap MAP_FIXED anon \(p(r))"
        case .fork(let s, let r): return "fork, child writes \(s) \(p(r))"
        case .moveAndBack(let s, let r): return "mremap \(s) \(p(r)) away and back"
        }
    }
}

/// One run of a sequence against fresh mappings and a fresh mirror.
enum LiveFuzzRun {
    struct Failure { let step: Int; let problems: [String] }
    /// `skipped`: why the sequence was given up without a verdict (the
    /// host changed under it), nil when it ran to a verdict.
    struct Outcome { let steps: Int; let failure: Failure?; var skipped: String? = nil }

    /// The live mappings and their mirror.
    final class World {
        let fence: FencedMappings
        let mirror: Mirror
        var mappings: [LiveFuzzSlot: LiveMapping] = [:]
        /// Where mremap moves pages to: a PROT_NONE reservation one page
        /// inside a larger one, so what lands there has a PROT_NONE
        /// neighbour on each side and merges with nothing the model mirrors.
        let park: UnsafeMutableRawPointer
        /// The private file slot's file (on a disk file system).
        let fileObject: FileObject
        static let parkPages = LiveFuzzSlot.allCases.map(\.pages).max()! + 2

        init() throws {
            guard let p = Glibc.mmap(nil, Self.parkPages * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
                  p != MAP_FAILED else { throw LiveMappingError.last("mmap(park)") }
            park = p
            fence = try FencedMappings()
            mirror = try Mirror()
            let anon = try fence.anonymous(LiveFuzzSlot.anonymous.pages * 4096)
            try mirror.map(anon)
            let file = try fence.file(LiveFuzzSlot.file.pages * 4096, shared: false)
            let shm = try fence.file(LiveFuzzSlot.shmem.pages * 4096, shared: true, directory: "/dev/shm", shmem: true)
            let sharedAnon = try fence.anonymous(LiveFuzzSlot.sharedAnonymous.pages * 4096, shared: true)
            let kernel = try KernelView.smaps()
            // Both files were written with write(2): every page is in the
            // page cache before the first fault, which fault-around sees.
            fileObject = try mirror.file(of: file, kernel: kernel, shmem: false)
            let shmObject = try mirror.file(of: shm, kernel: kernel, shmem: true)
            try mirror.mm.cachePages(of: fileObject, 0..<UInt64(LiveFuzzSlot.file.pages))
            try mirror.mm.cachePages(of: shmObject, 0..<UInt64(LiveFuzzSlot.shmem.pages))
            try mirror.map(file, kind: .file(fileObject, offset: 0))
            try mirror.map(shm, shared: true, kind: .shmem(shmObject, offset: 0))
            // Its shmem file starts empty: nothing cached, every page a hole.
            try mirror.map(sharedAnon, shared: true,
                           kind: .shmem(try mirror.file(of: sharedAnon, kernel: kernel, shmem: true), offset: 0))
            mappings = [.anonymous: anon, .file: file, .shmem: shm, .sharedAnonymous: sharedAnon]
        }

        deinit { Glibc.munmap(park, Self.parkPages * 4096) }

        /// The address mremap moves pages to (the model does not mirror the
        /// reservation: the move unmaps what is there first).
        var parkTarget: UnsafeMutableRawPointer { park + 4096 }

        func range(_ s: LiveFuzzSlot, _ r: Range<Int>) -> (UInt64, UInt64) { mirror.pages(mappings[s]!, r) }
        func pointer(_ s: LiveFuzzSlot, _ page: Int) -> UnsafeMutableRawPointer { mappings[s]!.pointer + page * 4096 }

        /// The pages of `r` an access may reach without a signal, by the
        /// mirror (equal to the kernel up to this step): a VMA allowing it,
        /// no guard marker.
        func reachable(_ s: LiveFuzzSlot, _ r: Range<Int>, write: Bool) -> [Int] {
            r.filter { page in
                let (a, _) = range(s, page..<page + 1)
                guard let vma = mirror.mm.vma(containing: a),
                      vma.flags.contains(write ? .write : .read) else { return false }
                if case .softLeaf(_, _, let leaf) = mirror.mm.translate(a), case .marker(let m) = leaf.leaf, m.contains(.guardRegion) {
                    return false
                }
                return true
            }
        }

        var opsApplied = 0
        /// Applies `op` to the kernel: 0 or the errno.
        func kernel(_ op: LiveFuzzOp) -> Int32 {
            func rc(_ r: Int32) -> Int32 { r == 0 ? 0 : errno }
            func call(_ s: LiveFuzzSlot, _ r: Range<Int>, _ f: (UnsafeMutableRawPointer, Int) -> Int32) -> Int32 {
                rc(f(pointer(s, r.lowerBound), r.count * 4096))
            }
            switch op {
            case .touch(let s, let r, let w):
                for page in reachable(s, r, write: w) {
                    let p = pointer(s, page)
                    if w { p.storeBytes(of: 0x5a, as: UInt8.self) } else { touchSink &+= UInt64(p.load(as: UInt8.self)) }
                }
                return 0
            case .dontNeed(let s, let r): return call(s, r) { Glibc.madvise($0, $1, MADV_DONTNEED) }
            case .free(let s, let r): return call(s, r) { Glibc.madvise($0, $1, MADV_FREE) }
            case .mprotect(let s, let r, let prot): return call(s, r) { Glibc.mprotect($0, $1, prot.prot) }
            case .mlock(let s, let r): return call(s, r) { Glibc.mlock($0, $1) }
            case .munlock(let s, let r): return call(s, r) { Glibc.munlock($0, $1) }
            case .guardInstall(let s, let r): return call(s, r) { Glibc.madvise($0, $1, LiveMappings.Advice.guardInstall.rawValue) }
            case .guardRemove(let s, let r): return call(s, r) { Glibc.madvise($0, $1, LiveMappings.Advice.guardRemove.rawValue) }
            case .mlockOnFault(let s, let r): return call(s, r) { LiveMappings.mlock2($0, $1, flags: LiveMappings.mlockOnFault) }
            case .clearRefs(let k):
                let fd = open("/proc/self/clear_refs", O_WRONLY)
                guard fd >= 0 else { return errno }
                defer { close(fd) }
                return write(fd, "\(k)\n", 2) == 2 ? 0 : errno
            case .remap(let r):
                let p = pointer(.anonymous, r.lowerBound)
                let q = Glibc.mmap(p, r.count * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
                return q == p ? 0 : errno
            case .fork(let s, let r):
                let pages = reachable(s, r, write: true).map { pointer(s, $0) }
                let child = Glibc.fork()
                if child == 0 {
                    for p in pages { p.storeBytes(of: 0xc5, as: UInt8.self) }
                    _exit(0)
                }
                guard child > 0 else { return errno }
                var status: Int32 = 0
                while waitpid(child, &status, 0) < 0 && errno == EINTR {}
                return 0
            case .moveAndBack(let s, let r):
                let p = pointer(s, r.lowerBound), length = r.count * 4096
                let away = LiveMappings.mremapMove(p, length, to: parkTarget)
                let back = away == 0 ? LiveMappings.mremapMove(parkTarget, length, to: p) : 0
                // The pages left a hole in the reservation; another thread's
                // mmap could land there, so it is reserved again.
                _ = Glibc.mmap(parkTarget, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0)
                return away != 0 ? away : back
            }
        }

        /// Applies `op` to the mirror: 0 or the errno its typed error means.
        /// The walker users alternate between the range walker and their
        /// callback twins, op by op.
        func model(_ op: LiveFuzzOp) -> Int32 {
            let mm = mirror.mm
            opsApplied += 1
            let walker: WalkerKind = opsApplied % 2 == 0 ? .range : .callback
            do {
                switch op {
                case .touch(let s, let r, let w):
                    for page in reachable(s, r, write: w) {
                        let (a, b) = range(s, page..<page + 1)
                        try mm.fault(a, b, write: w)
                    }
                case .dontNeed(let s, let r): let (a, b) = range(s, r); try mm.zap(a, b)
                case .free(let s, let r): let (a, b) = range(s, r); try mm.madviseFree(a, b, walker: walker)
                case .mprotect(let s, let r, let prot): let (a, b) = range(s, r); try mm.mprotect(a, b, access: prot.access)
                case .mlock(let s, let r): let (a, b) = range(s, r); try mm.mlock(a, b, walker: walker)
                case .munlock(let s, let r): let (a, b) = range(s, r); try mm.munlock(a, b, walker: walker)
                case .guardInstall(let s, let r): let (a, b) = range(s, r); try madviseGuardInstall(mm, a, b, walker: walker)
                case .guardRemove(let s, let r): let (a, b) = range(s, r); try madviseGuardRemove(mm, a, b, walker: walker)
                case .mlockOnFault(let s, let r): let (a, b) = range(s, r); try mm.mlock2(a, b, onFault: true, walker: walker)
                case .clearRefs(let k):
                    try mm.clearRefs([1: .all, 2: .anonymous, 3: .file][k]!, walker: walker)
                case .remap(let r):
                    let (a, b) = range(.anonymous, r)
                    try mm.munmap(a, b)
                    try mm.mmap(start: a, end: b, access: [.read, .write])
                case .fork(let s, let r):
                    let pages = reachable(s, r, write: true)
                    let child = try mm.fork(childPID: Int(getpid()) + 1)
                    for page in pages {
                        let (a, b) = range(s, page..<page + 1)
                        try child.fault(a, b, write: true)
                    }
                    try child.tearDown()
                case .moveAndBack(let s, let r):
                    let (a, b) = range(s, r)
                    let target = UInt64(UInt(bitPattern: parkTarget))
                    try mm.mremapMove(a, b, to: target)
                    try mm.mremapMove(target, target + (b - a), to: a)
                }
                return 0
            } catch let e as ModelError {
                switch e {
                case .noVMA, .outOfMemory, .faultFailed: return ENOMEM
                case .wrongVMAKind, .invalidArgument, .unaligned, .invalidRange: return EINVAL
                default: return -1000
                }
            } catch let e as MadviseError {
                return -e.errno
            } catch let e as PageWalkError {
                return -e.errno
            } catch {
                return -1001
            }
        }

        var ranges: [Range<UInt64>] { LiveFuzzSlot.allCases.map { mappings[$0]!.start..<mappings[$0]!.end } }

        /// mincore(2) of each fuzzed mapping against both of the model's
        /// walkers. The files' page cache was filled before the first step
        /// and nothing here reclaims it, but compaction anywhere on the host
        /// (`compact_memory`, which other tests write) migrates cached
        /// folios, and mincore meets the new folio in the page cache before
        /// it is marked uptodate: a page reads 0 for that moment. So a
        /// difference is looked at again, as `LiveComparison` does; the
        /// model is deterministic, so a difference of its own stays.
        func mincoreMismatches() -> [String] {
            var problems = mincoreMismatchesOnce()
            for _ in 0..<2 where !problems.isEmpty {
                usleep(Self.rereadDelayMicroseconds)
                problems = mincoreMismatchesOnce()
            }
            return problems
        }
        static let rereadDelayMicroseconds: UInt32 = 50_000

        /// The host's reclaim (memory pressure anywhere, another test's
        /// drop of caches) may evict clean page-cache pages of the disk
        /// file that nothing maps; the model reclaims nothing on its own.
        /// A page mincore shows gone from the cache, still gone when read
        /// again (a migration shows 0 only for a moment), while the mirror
        /// caches it unmapped, is dropped from the mirror's cache too, and
        /// said so: the kernel is followed, not judged, here.
        func followHostEviction() throws {
            let m = mappings[.file]!
            func candidates() -> [Int] {
                guard case .vector(let k) = LiveMincoreTests.kernel(m.start, m.size),
                      case .vector(let o) = LiveMincoreTests.model(mirror.mm, m.start, m.size, .range) else { return [] }
                return k.indices.filter { page in
                    guard k[page] == 0, o[page] == 1 else { return false }
                    switch mirror.mm.translate(m.start + UInt64(page) * 4096) {
                    case .none: return true
                    case .softLeaf(_, _, let leaf): if case .marker = leaf.leaf { return true } else { return false }
                    case .present: return false
                    }
                }
            }
            var pages = candidates()
            for _ in 0..<2 where !pages.isEmpty {
                usleep(Self.rereadDelayMicroseconds)
                pages = Array(Set(pages).intersection(candidates())).sorted()
            }
            for page in pages {
                let a = m.start + UInt64(page) * 4096
                guard let vma = mirror.mm.vma(containing: a) else { continue }
                if try mirror.mm.evictCachedPage(of: fileObject, vma.pageIndex(a)) {
                    print("[live fuzz] the host evicted unmapped page \(page) of the file slot from the page cache; the mirror follows")
                }
            }
        }

        private func mincoreMismatchesOnce() -> [String] {
            var out: [String] = []
            for s in LiveFuzzSlot.allCases {
                let m = mappings[s]!
                let k = LiveMincoreTests.kernel(m.start, m.size)
                for w in WalkerKind.allCases {
                    let o = LiveMincoreTests.model(mirror.mm, m.start, m.size, w)
                    if o != k {
                        out.append("mincore of \(s), \(w) walker:\n kernel \(LiveMincoreTests.digits(k))\n model  \(LiveMincoreTests.digits(o))")
                    }
                }
            }
            return out
        }
    }

    static func run(_ ops: [LiveFuzzOp]) throws -> Outcome {
        let world = try World()
        if let p = try? LiveComparison.mismatches(world.mirror, world.ranges), !p.isEmpty {
            return Outcome(steps: 0, failure: Failure(step: -1, problems: ["before any step: "] + p))
        }
        for (i, op) in ops.enumerated() {
            let k = world.kernel(op), m = world.model(op)
            try world.followHostEviction()
            var problems: [String] = []
            if k != m { problems.append("outcome: kernel \(k == 0 ? "0" : "errno \(k)"), model \(m == 0 ? "0" : "errno \(m)")") }
            problems += try LiveComparison.mismatches(world.mirror, world.ranges)
            problems += world.mincoreMismatches()
            if !problems.isEmpty, let changed = hostChangedUnderTheRun() {
                return Outcome(steps: i + 1, failure: nil, skipped: changed)
            }
            if !problems.isEmpty { return Outcome(steps: i + 1, failure: Failure(step: i, problems: problems)) }
        }
        return Outcome(steps: ops.count, failure: nil)
    }

    /// The THP knobs are global: another test process on the host may set
    /// them while a sequence runs (and restore them later), which changes
    /// what faults allocate and what smaps prints as THPeligible. A mismatch
    /// seen while they differ from the pinned baseline says nothing about
    /// the model, so the sequence is given up, saying why.
    static func hostChangedUnderTheRun() -> String? {
        let facts = HostFacts.current()
        return facts.hasTHPBaseline ? nil : "THP knobs left the pinned baseline during the sequence: \(facts.summary)"
    }

    /// Drops every operation the mismatch does not need, one at a time, from
    /// the end (each try a fresh run).
    static func shrink(_ ops: [LiveFuzzOp]) throws -> [LiveFuzzOp] {
        shrink(ops) { seq in (try? run(seq).failure) != nil }
    }

    static func shrink(_ ops: [LiveFuzzOp], fails: ([LiveFuzzOp]) -> Bool) -> [LiveFuzzOp] {
        var current = ops
        var i = current.count - 1
        while i >= 0 {
            var candidate = current
            candidate.remove(at: i)
            if fails(candidate) { current = candidate }
            i -= 1
        }
        return current
    }
}

/// Where read touches leave their bytes, so the loads are not optimised away.
nonisolated(unsafe) var touchSink: UInt64 = 0
