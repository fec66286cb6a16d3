import Testing
import Foundation
import Synchronization
import MemoryModel
import TestKit
import PageWalk
import ProcFS

/// Walkers (range and callback) and every producer against mutator threads
/// (fault, zap, swap-out/in, migration, THP populate/split/collapse, mTHP,
/// guard install/remove, fork + COW + teardown) for a bounded time.
///
/// The invariant: region A is fully faulted at the start and afterwards only
/// swapped out, swapped in and migrated, which never change whether an entry
/// is populated. So every PTE table of A holds exactly 512 non-none entries
/// (present, swap or migration), at every instant its lock is held. Both
/// walkers check that per table while holding that table's lock; the
/// producers check what follows from it (smaps Rss + Swap of A is its size,
/// every pagemap word of A is present or swapped, PAGEMAP_SCAN finds all of
/// A present-or-swapped), and bounds for the rest.
@Suite(.serialized) struct ConcurrencyStressTests {
    struct Layout {
        let a: Range<UInt64>       // conserved: swap-out/in and migration only
        let b: Range<UInt64>       // churn: fault, zap, swap, migrate, mTHP
        let c: Range<UInt64>       // guard markers
        let d: Range<UInt64>       // THP: populate, split, collapse, zap
        let f: Range<UInt64>       // file mapping
        var all: [Range<UInt64>] { [a, b, c, d, f] }
        var totalBytes: UInt64 { all.reduce(0) { $0 + UInt64($1.count) } }

        init(base: UInt64) {
            a = base..<(base + 8 * mb)
            b = (base + 16 * mb)..<(base + 24 * mb)
            c = (base + 32 * mb)..<(base + 34 * mb)
            d = (base + 48 * mb)..<(base + 56 * mb)
            f = (base + 64 * mb)..<(base + 66 * mb)
        }
    }

    /// Counters of one run.
    final class Stats: @unchecked Sendable {
        let ops = Atomic<Int>(0)
        let failedOps = Atomic<Int>(0)
        let walks = Atomic<Int>(0)
        let entries = Atomic<Int>(0)
        let producerRuns = Atomic<Int>(0)
        let tablesChecked = Atomic<Int>(0)
        let forks = Atomic<Int>(0)
        let violations = Mutex<[String]>([])
        func violation(_ s: String) { violations.withLock { if $0.count < 50 { $0.append(s) } } }
    }

    /// The walker of the update-walk users in the stress tests (guard
    /// regions, MADV_FREE, mlock, clear_refs): the range walker, under
    /// ThreadSanitizer too. (`PAGEWALK_STRESS_WALKER=callback` runs the
    /// callback twins instead.)
    static var guardWalker: WalkerKind {
        ProcessInfo.processInfo.environment["PAGEWALK_STRESS_WALKER"] == "callback" ? .callback : .range
    }

    static var seconds: Double {
        Knobs.double("PAGEWALK_STRESS_SECONDS") ?? (Knobs.underTSan ? 4 : 2.5)
    }

    @Test(arguments: [Geometry.x86_64, .arm64])
    func walkersAndProducersAgainstMutators(_ geometry: Geometry) throws {
        let memory = try PhysicalMemory(budgetBytes: 2 << 30, nodes: 2, swapSlots: 1 << 20)
        let mm = try AddressSpace(geometry: geometry, memory: memory, options: AddressSpaceOptions(pid: 500))
        let L = Layout(base: 0x1000_0000)
        try mm.mmap(start: L.a.lowerBound, end: L.a.upperBound, access: [.read, .write], extraFlags: [.noHugePage])
        try mm.mmap(start: L.b.lowerBound, end: L.b.upperBound, access: [.read, .write])
        try mm.mmap(start: L.c.lowerBound, end: L.c.upperBound, access: [.read, .write])
        try mm.mmap(start: L.d.lowerBound, end: L.d.upperBound, access: [.read, .write], extraFlags: [.hugePage])
        let file = memory.file(path: "/usr/lib/libstress.so", device: DeviceNumber(major: 8, minor: 1), inode: 4711)
        try mm.mmap(start: L.f.lowerBound, end: L.f.upperBound, access: [.read], kind: .file(file, offset: 0))
        try mm.fault(L.a.lowerBound, L.a.upperBound, write: true)
        try mm.fault(L.b.lowerBound, L.b.lowerBound + 4 * mb, write: true)
        try mm.populateTHP(L.d.lowerBound, L.d.lowerBound + 4 * mb)
        let tablesOfA = L.a.count / Int(mb2)

        let stats = Stats()
        let threads = ThreadSet()
        // PAGEWALK_STRESS_THREADS=conserve,fork,… runs only those threads (bisecting a failure).
        let only = ProcessInfo.processInfo.environment["PAGEWALK_STRESS_THREADS"].map { Set($0.split(separator: ",").map(String.init)) }
        func spawn(_ name: String, _ body: @escaping @Sendable (ThreadSet) -> Void) {
            if only == nil || only!.contains(name) || only!.contains(String(name.prefix { $0 != "-" })) { threads.spawn(name, body) }
        }

        @Sendable func randomRange(_ r: Range<UInt64>, maxPages: UInt64, _ rng: inout SeededRandom) -> (UInt64, UInt64) {
            let pages = UInt64(r.count) / page
            let s = r.lowerBound + UInt64.random(in: 0..<pages, using: &rng) * page
            return (s, min(r.upperBound, s + UInt64.random(in: 1...maxPages, using: &rng) * page))
        }
        /// Runs a mutation; only typed model errors the operation may
        /// legitimately meet count as refusals, anything else is a violation.
        @Sendable func mutate(_ what: String, _ body: () throws -> Void) {
            do {
                try body()
                stats.ops.add(1, ordering: .relaxed)
            } catch let e as ModelError {
                switch e {
                case .wrongVMAKind, .noVMA, .unsupported: stats.failedOps.add(1, ordering: .relaxed)
                default: stats.violation("\(what): \(e)")
                }
            } catch let e as MadviseError {
                switch e {
                case .restartSyscall, .invalidVMA, .unmapped: stats.failedOps.add(1, ordering: .relaxed)
                default: stats.violation("\(what): \(e)")
                }
            } catch let e as PageWalkError {
                stats.violation("\(what): \(e)")
            } catch {
                stats.violation("\(what): \(error)")
            }
        }

        // Mutator 1: the conserving one (region A).
        spawn("conserve") { t in
            var rng = SeededRandom(seed: 1)
            while !t.shouldStop {
                let (s, e) = randomRange(L.a, maxPages: 300, &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: mutate("swapOut A") { try mm.swapOut(s, e) }
                case 1: mutate("swapIn A") { try mm.swapIn(s, e) }
                default: mutate("migrate A") { try mm.migrate(s, e, toNode: Int.random(in: 0..<2, using: &rng)) }
                }
            }
        }
        // Mutator 2: churn in B (faults, zaps, swap, migration, mTHP).
        spawn("churn") { t in
            var rng = SeededRandom(seed: 2)
            while !t.shouldStop {
                let (s, e) = randomRange(L.b, maxPages: 600, &rng)
                switch Int.random(in: 0..<7, using: &rng) {
                case 0: mutate("fault B") { try mm.fault(s, e, write: true) }
                case 1: mutate("read fault B") { try mm.fault(s, e, write: false) }
                case 2: mutate("zap B") { try mm.zap(s, e) }
                case 3: mutate("swapOut B") { try mm.swapOut(s, e) }
                case 4: mutate("swapIn B") { try mm.swapIn(s, e) }
                case 5: mutate("migrate B") { try mm.migrate(s, e, toNode: Int.random(in: 0..<2, using: &rng)) }
                default:
                    let a = s & ~(64 * 1024 - 1)
                    mutate("mTHP B") { try mm.populateLargeFolios(a, min(L.b.upperBound, a + 256 * 1024), order: 4) }
                }
            }
        }
        // Mutator 3: THPs in D (populate, split, collapse, zap, swap-out).
        spawn("thp") { t in
            var rng = SeededRandom(seed: 3)
            while !t.shouldStop {
                let pmd = L.d.lowerBound + UInt64.random(in: 0..<(UInt64(L.d.count) / mb2), using: &rng) * mb2
                switch Int.random(in: 0..<6, using: &rng) {
                case 0: mutate("populateTHP D") { try mm.populateTHP(pmd, pmd + mb2) }
                case 1: mutate("split D") { do { try mm.splitHugePMD(containing: pmd) } catch ModelError.invalidArgument {} }
                case 2: mutate("collapse D") { try mm.collapse(pmd, pmd + mb2) }
                case 3: let (s, e) = randomRange(pmd..<(pmd + mb2), maxPages: 256, &rng)
                    mutate("zap D") { try mm.zap(s, e) }
                case 4: let (s, e) = randomRange(pmd..<(pmd + mb2), maxPages: 512, &rng)
                    mutate("fault D") { try mm.fault(s, e, write: Bool.random(using: &rng)) }
                default: mutate("swapOut D") { try mm.swapOut(pmd, pmd + mb2) }
                }
            }
        }
        // Mutator 4: guard regions in C (madvise through install_pte and
        // pte_entry), faults and zaps among them, file faults.
        spawn("guard") { t in
            var rng = SeededRandom(seed: 4)
            while !t.shouldStop {
                let (s, e) = randomRange(L.c, maxPages: 64, &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: mutate("madvise guard install C") { try madviseGuardInstall(mm, s, e, walker: Self.guardWalker) }
                case 1: mutate("madvise guard remove C") { try madviseGuardRemove(mm, s, e, walker: Self.guardWalker) }
                case 2: mutate("zap C") { try mm.zap(s, e) }
                default:
                    let (fs, fe) = randomRange(L.f, maxPages: 128, &rng)
                    mutate("file fault F") { try mm.fault(fs, fe, write: false) }
                }
            }
        }
        // Mutator 5: fork (mmap write lock), COW breaks in the child, and
        // the child's teardown.
        spawn("fork") { t in
            var rng = SeededRandom(seed: 5)
            var pid = 600
            while !t.shouldStop {
                pid += 1
                var child: AddressSpace?
                mutate("fork") { child = try mm.fork(childPID: pid) }
                guard let child else { continue }
                stats.forks.add(1, ordering: .relaxed)
                let (s, e) = randomRange(L.a, maxPages: 64, &rng)
                mutate("child COW fault A") { try child.fault(s, e, write: true) }
                let (s2, e2) = randomRange(L.b, maxPages: 64, &rng)
                mutate("child zap B") { try child.zap(s2, e2) }
                usleep(UInt32.random(in: 0...20_000, using: &rng))
                mutate("child teardown") { try child.tearDown() }
            }
        }

        // Walker 1: range walker over A, per-table count under the table lock.
        spawn("range-walk") { t in
            var batching = false
            while !t.shouldStop {
                batching.toggle()
                do {
                    try mm.withMmapReadLock { lock in
                        var table: UInt64 = .max, count = 0, tables = 0
                        func close() {
                            guard table != .max else { return }
                            tables += 1
                            if count != 512 { stats.violation("range walk: table \(hx(table)) of A holds \(count) populated entries, not 512") }
                        }
                        for entry in try mm.walk(L.a, lock: lock, options: RangeWalkOptions(batching: batching)) {
                            stats.entries.add(1, ordering: .relaxed)
                            let base = entry.start & ~(mb2 - 1)
                            if base != table {
                                close()
                                table = base
                                count = 0
                                guard let pt = pteTable(mm, entry.start), mm.memory.tables.lock(pt).isHeldByCurrentThread else {
                                    stats.violation("range walk: the PTE lock of \(hx(base)) is not held by the walker")
                                    continue
                                }
                            }
                            switch entry.content {
                            case .folio, .swap, .migration: count += entry.pageCount
                            default: stats.violation("range walk: unexpected \(entry) in A")
                            }
                        }
                        close()
                        if tables != tablesOfA { stats.violation("range walk saw \(tables) tables of A, not \(tablesOfA)") }
                        stats.tablesChecked.add(tables, ordering: .relaxed)
                    }
                    stats.walks.add(1, ordering: .relaxed)
                } catch {
                    stats.violation("range walk: \(error)")
                }
            }
        }
        // Walker 2: callback walker over A: pte_entry counts per table with
        // the split PTL held for the whole table run.
        spawn("callback-walk") { t in
            struct Count { var table: TableID?; var count = 0; var tables = 0; var problems: [String] = [] }
            var ops = MMWalkOps<Count>()
            ops.pteEntry = { p, addr, _, walk in
                if walk.privateData.table != p.slot.table {
                    if walk.privateData.table != nil && walk.privateData.count != 512 {
                        walk.privateData.problems.append("callback walk: a table of A holds \(walk.privateData.count) populated entries before \(hx(addr))")
                    }
                    walk.privateData.table = p.slot.table
                    walk.privateData.count = 0
                    walk.privateData.tables += 1
                }
                if !walk.mm.memory.tables.lock(p.slot.table).isHeldByCurrentThread {
                    walk.privateData.problems.append("callback walk: pte_entry at \(hx(addr)) without the PTE lock")
                }
                let w = p.rawValue
                if w == 0 {
                    walk.privateData.problems.append("callback walk: none PTE at \(hx(addr)) in A")
                } else {
                    walk.privateData.count += 1
                }
                return 0
            }
            while !t.shouldStop {
                var c = Count()
                do {
                    _ = try mm.withMmapReadLock { (_) throws(PageWalkError) in
                        try walkPageRange(mm, L.a.lowerBound, L.a.upperBound, ops: ops, private: &c)
                    }
                    if c.count != 512 { c.problems.append("callback walk: last table of A holds \(c.count)") }
                    if c.tables != tablesOfA { c.problems.append("callback walk saw \(c.tables) tables of A") }
                    for p in c.problems { stats.violation(p) }
                    stats.tablesChecked.add(c.tables, ordering: .relaxed)
                    stats.walks.add(1, ordering: .relaxed)
                } catch {
                    stats.violation("callback walk: \(error)")
                }
            }
        }
        // Walkers 3 and 4: the producers, on both walkers, checked against
        // what the invariant implies.
        for k in 0..<2 {
            spawn("producers-\(k)") { t in
                var round = k
                while !t.shouldStop {
                    round += 1
                    let options = twinConfigurations[round % twinConfigurations.count].1
                    do {
                        try Self.checkProducers(mm, L, options: options, round: round, stats: stats)
                        stats.producerRuns.add(1, ordering: .relaxed)
                    } catch {
                        stats.violation("producer (\(twinConfigurations[round % twinConfigurations.count].0)): \(error)")
                    }
                }
            }
        }

        let started = Date()
        let seconds = Self.seconds
        let finished = threads.run(for: seconds, deadline: 60)
        let elapsed = Date().timeIntervalSince(started)
        #expect(finished, "deadlock or livelock: \(threads.stillRunning) threads did not stop within 60 s of the stop request")
        let v = stats.violations.withLock { $0 }
        #expect(v.isEmpty, "\(v.count) violations: \(v.prefix(8).joined(separator: "\n"))")
        // No PTE of A may map a freed frame: a folio freed while still
        // mapped (and still named by the swap cache) is what the swap-in /
        // free_swap_and_cache() race once produced.
        let dangling = finished ? Self.danglingFrames(mm, memory, L.a) : []
        #expect(dangling.isEmpty, "PTEs mapping freed frames: \(dangling.prefix(4))")
        let ops = stats.ops.load(ordering: .relaxed), walks = stats.walks.load(ordering: .relaxed)
        let runs = stats.producerRuns.load(ordering: .relaxed)
        print("""
            [stress \(geometry)] \(threads.count) threads for \(String(format: "%.1f", elapsed)) s\(Knobs.underTSan ? " (TSan)" : ""): \
            \(ops) ops (\(stats.failedOps.load(ordering: .relaxed)) refused, \(stats.forks.load(ordering: .relaxed)) forks) = \
            \(Int(Double(ops) / elapsed)) ops/s; \(walks) invariant walks = \(Int(Double(walks) / elapsed)) walks/s \
            (\(stats.tablesChecked.load(ordering: .relaxed)) tables checked, \(stats.entries.load(ordering: .relaxed)) entries); \
            \(runs) producer runs = \(Int(Double(runs) / elapsed))/s
            """)
        if only == nil { #expect(ops > 0 && walks > 0 && runs > 0) }
        guard finished else { return }
        guard dangling.isEmpty else { return }
        // Quiescent: the invariant holds exactly, and the model is whole.
        for base in stride(from: L.a.lowerBound, to: L.a.upperBound, by: Int(mb2)) {
            var n = 0
            for a in stride(from: base, to: base + mb2, by: Int(page)) {
                if case .none = mm.translate(a) {} else { n += 1 }
            }
            #expect(n == 512, "table \(hx(base)) of A at rest")
        }
        try mm.tearDown()
        // What may remain is what the kernel leaves to reclaim: an unmapped
        // folio in the swap cache whose slot no swap entry refers to (its
        // last unmap lost a trylock race, or was a COW copy). Anything else
        // is a leaked reference.
        var orphans = 0
        if memory.swap.usedSlots > 0 {
            for slot in 1...memory.swap.slots where orphans < memory.swap.usedSlots {
                let count = memory.swap.count(slot)
                #expect(count == 0, "swap slot \(slot) still has \(count) references after teardown")
                if count > 0 { break }
                if let pfn = memory.swap.cachedFolioPFN(slot) {
                    orphans += 1
                    let folio = memory.page(pfn)?.folio
                    #expect(folio != nil, "swap cache slot \(slot) names freed frame \(hx(pfn))")
                    #expect(folio?.isMapped != true, "swap-cached page \(hx(pfn)) is still mapped")
                }
            }
        }
        #expect(orphans == memory.swap.usedSlots, "\(memory.swap.usedSlots) slots in use, \(orphans) reclaimable")
        if orphans > 0 { print("[stress \(geometry)] \(orphans) unmapped, unreferenced folios left in the swap cache for reclaim (the model has no reclaim)") }
    }

    /// The swap-in / `free_swap_and_cache()` race on its own: after fork
    /// and swap-out, parent and child hold swap entries for the same slots.
    /// The parent swaps them in (each new folio enters the swap cache, and
    /// stays there while the child's entry refers to the slot) while the
    /// child's teardown drops its entries, each of which tries to delete the
    /// slot's unmapped folio from the cache. The new folio must stay locked
    /// until its PTE is in place, or the teardown frees it under the swap-in
    /// and the PTE maps a freed frame. Every round is checked at rest, then
    /// a write fault takes the folios out of the swap cache (so that the
    /// next round swaps them out again).
    @Test func swapInAgainstForkedTeardown() throws {
        let memory = try PhysicalMemory(budgetBytes: 256 << 20, nodes: 1, swapSlots: 1 << 16)
        let mm = try AddressSpace(geometry: .x86_64, memory: memory, options: AddressSpaceOptions(pid: 700))
        let r = UInt64(0x4000_0000)..<(0x4000_0000 + mb2)
        try mm.mmap(start: r.lowerBound, end: r.upperBound, access: [.read, .write], extraFlags: [.noHugePage])
        try mm.fault(r.lowerBound, r.upperBound, write: true)
        let rounds = Knobs.int("PAGEWALK_SWAPIN_RACE_ROUNDS") ?? (Knobs.underTSan ? 8 : 40)
        /// Pages of `r` that are not mapped once, by a live folio holding one
        /// reference per mapping plus the swap cache's (`cacheAllowed`).
        func problems(cacheAllowed: Bool) -> [String] {
            var out: [String] = []
            var seen = Set<UInt64>()
            for a in stride(from: r.lowerBound, to: r.upperBound, by: Int(page)) {
                guard case .present(_, _, let pfn) = mm.translate(a) else { out.append("\(hx(a)) is not present"); continue }
                guard let f = memory.folio(containing: pfn) else { out.append("\(hx(a)) -> freed frame \(hx(pfn))"); continue }
                if !seen.insert(pfn).inserted { out.append("\(hx(a)) -> \(hx(pfn)), mapped twice") }
                let cached = f.test(.swapCache)
                if f.mapcount != 1 || f.refcount != (cached ? 2 : 1) || (cached && !cacheAllowed) {
                    out.append("\(hx(a)) -> \(f)")
                }
            }
            return out
        }
        for round in 0..<rounds {
            let child = try mm.fork(childPID: 701 + round)
            try mm.swapOut(r.lowerBound, r.upperBound)
            let errors = Mutex<[String]>([])
            let finished = Self.race([
                { do { try mm.swapIn(r.lowerBound, r.upperBound) } catch { errors.withLock { $0.append("swapIn: \(error)") } } },
                { do { try child.tearDown() } catch { errors.withLock { $0.append("child teardown: \(error)") } } },
            ], deadline: 60)
            #expect(finished, "round \(round): the swap-in or the teardown did not finish within 60 s")
            guard finished else { return }
            let e = errors.withLock { $0 }
            #expect(e.isEmpty, "round \(round): \(e)")
            var p = problems(cacheAllowed: true)
            #expect(p.isEmpty, "round \(round), after the race: \(p.count) bad pages: \(p.prefix(4))")
            guard p.isEmpty else { return }
            // do_wp_page(): nothing else refers to the slots, so each folio
            // leaves the swap cache and is reused in place.
            try mm.fault(r.lowerBound, r.upperBound, write: true)
            p = problems(cacheAllowed: false)
            #expect(p.isEmpty, "round \(round), after the write fault: \(p.count) bad pages: \(p.prefix(4))")
            guard p.isEmpty else { return }
        }
        try mm.tearDown()
        #expect(memory.folioCount == 0, "\(memory.folioCount) folios left after teardown")
        #expect(memory.swap.usedSlots == 0, "\(memory.swap.usedSlots) swap slots left after teardown")
    }

    /// Faults and single-VMA madvise under VMA locks against writers that
    /// change the VMAs around them (mprotect splits and merges, mlock,
    /// munmap and mmap again, clear_refs) and a walker. Whatever the
    /// interleaving: nothing hangs, no fault installs an entry where no VMA
    /// is (a fault that ran in a VMA being removed), no PTE maps a freed
    /// frame, and the teardown leaves no folio behind.
    @Test func faultsUnderVMALocksAgainstVMAChanges() throws {
        let memory = try PhysicalMemory(budgetBytes: 256 << 20, nodes: 1, swapSlots: 1 << 12)
        let mm = try AddressSpace(geometry: .x86_64, memory: memory, options: AddressSpaceOptions(pid: 710))
        let x = UInt64(0x4000_0000)..<(0x4000_0000 + 4 * mb)
        let window = (x.lowerBound + 3 * mb)..<x.upperBound
        try mm.mmap(start: x.lowerBound, end: x.upperBound, access: [.read, .write], extraFlags: [.noHugePage])
        let stop = Atomic(false)
        let stats = Stats()
        @Sendable func loop(_ seed: UInt64, _ body: (inout SeededRandom) throws -> Void) {
            var rng = SeededRandom(seed: seed)
            while !stop.load(ordering: .relaxed) {
                do { try body(&rng); stats.ops.add(1, ordering: .relaxed) } catch let e as ModelError {
                    switch e {
                    case .noVMA, .wrongVMAKind: stats.failedOps.add(1, ordering: .relaxed)
                    default: stats.violation("\(e)")
                    }
                } catch { stats.violation("\(error)") }
            }
        }
        @Sendable func range(_ r: Range<UInt64>, _ rng: inout SeededRandom, maxPages: UInt64) -> (UInt64, UInt64) {
            let pages = UInt64(r.count) / page
            let first = UInt64.random(in: 0..<pages, using: &rng)
            let n = UInt64.random(in: 1...min(maxPages, pages - first), using: &rng)
            return (r.lowerBound + first * page, r.lowerBound + (first + n) * page)
        }
        let seconds = Self.seconds
        let finished = Self.race([
            { loop(11) { rng in let (s, e) = range(x, &rng, maxPages: 64)
                try mm.fault(s, e, write: Bool.random(using: &rng)) } },
            { loop(12) { rng in let (s, e) = range(x, &rng, maxPages: 64)
                try mm.access(s, e, write: false) } },
            { loop(13) { rng in let (s, e) = range(x, &rng, maxPages: 16)
                if Bool.random(using: &rng) { try mm.zap(s, e) } else { try mm.madviseFree(s, e, walker: Self.guardWalker) } } },
            { loop(14) { rng in let (s, e) = range(x.lowerBound..<window.lowerBound, &rng, maxPages: 32)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: try mm.mprotect(s, e, access: [.read])
                case 1: try mm.mprotect(s, e, access: [.read, .write])
                case 2: try mm.mlock(s, e, walker: Self.guardWalker)
                default: try mm.munlock(s, e, walker: Self.guardWalker)
                } } },
            { loop(15) { rng in
                try mm.munmap(window.lowerBound, window.upperBound)
                usleep(UInt32.random(in: 0...500, using: &rng))
                try mm.mmap(start: window.lowerBound, end: window.upperBound, access: [.read, .write], extraFlags: [.noHugePage]) } },
            { loop(16) { _ in
                try mm.withMmapReadLock { (lock) throws(PageWalkError) in
                    for e in try mm.walk(x, lock: lock) { if case .folio = e.content { _ = try e.vma } }
                }
                try mm.clearRefs(.all, walker: Self.guardWalker) } },
            { usleep(UInt32(seconds * 1_000_000)); stop.store(true, ordering: .relaxed) },
        ], deadline: seconds + 120)
        #expect(finished, "a thread hung: a VMA lock and the mmap lock waited for each other")
        guard finished else { return }
        let v = stats.violations.withLock { $0 }
        #expect(v.isEmpty, "\(v.prefix(5))")
        var outside: [String] = []
        for a in stride(from: x.lowerBound, to: x.upperBound, by: Int(page)) where mm.vma(containing: a) == nil {
            if case .none = mm.translate(a) {} else { outside.append(hx(a)) }
        }
        #expect(outside.isEmpty, "entries outside every VMA: \(outside.prefix(4))")
        let dangling = Self.danglingFrames(mm, memory, x)
        #expect(dangling.isEmpty, "\(dangling.prefix(4))")
        let s = mm.vmaLockStatistics
        print("[stress vma-locks] \(stats.ops.load(ordering: .relaxed)) ops (\(stats.failedOps.load(ordering: .relaxed)) refused); \(s.vmaLocked) under a VMA lock, \(s.fellBack) fell back to the mmap lock")
        #expect(s.vmaLocked > 0 && s.fellBack > 0)
        try mm.tearDown()
        #expect(memory.folioCount == 0, "\(memory.folioCount) folios left after teardown")
    }

    /// Runs each body once on its own thread, all released together, and
    /// waits for them (up to `deadline` seconds, a watchdog): false on a hang.
    /// Update walks against faults, zap, swap, THP populate and split, and
    /// fork on other threads: walks that write-protect, make old, zap,
    /// split PMDs and folios, drop and retake the lock, break out in the
    /// middle of a table and throw. Nothing hangs, no PTE maps a freed
    /// frame, no entry lies outside a VMA, and the teardown leaves no folio
    /// or swap slot behind.
    @Test
    func updateWalksAgainstMutators() throws {
        let memory = try PhysicalMemory(budgetBytes: 512 << 20, nodes: 1, swapSlots: 1 << 14)
        let mm = try AddressSpace(geometry: .x86_64, memory: memory, options: AddressSpaceOptions(pid: 720))
        let x = UInt64(0x4000_0000)..<(0x4000_0000 + 8 * mb)
        try mm.mmap(start: x.lowerBound, end: x.upperBound, access: [.read, .write], extraFlags: [.hugePage])
        let stop = Atomic(false)
        let stats = Stats()
        struct Bail: Error {}
        @Sendable func loop(_ seed: UInt64, _ body: (inout SeededRandom) throws -> Void) {
            var rng = SeededRandom(seed: seed)
            while !stop.load(ordering: .relaxed) {
                do { try body(&rng); stats.ops.add(1, ordering: .relaxed) } catch let e as ModelError {
                    switch e {
                    case .noVMA, .wrongVMAKind, .outOfMemory, .unsupported, .invalidArgument: stats.failedOps.add(1, ordering: .relaxed)
                    default: stats.violation("\(e)")
                    }
                } catch PageWalkError.handlerError(-4) {
                    stats.failedOps.add(1, ordering: .relaxed)   // the walk's own throw, on purpose
                } catch { stats.violation("\(error)") }
            }
        }
        @Sendable func range(_ rng: inout SeededRandom, maxPages: UInt64) -> (UInt64, UInt64) {
            let pages = UInt64(x.count) / page
            let first = UInt64.random(in: 0..<pages, using: &rng)
            let n = UInt64.random(in: 1...min(maxPages, pages - first), using: &rng)
            return (x.lowerBound + first * page, x.lowerBound + (first + n) * page)
        }
        @Sendable func updateWalk(_ rng: inout SeededRandom) throws {
            let (s, e) = range(&rng, maxPages: 1024)
            let options = UpdateWalkOptions(batching: Bool.random(using: &rng), splitHugePMDs: Int.random(in: 0..<8, using: &rng) == 0)
            let seed = UInt64.random(in: 0..<UInt64.max, using: &rng)
            try mm.withUpdateWalk(s..<e, lock: Bool.random(using: &rng) ? .mmapRead : .vma, options: options) { (walk) throws(PageWalkError) in
                try walk.forEach { (entry) throws(PageWalkError) -> UpdateStep in
                    // The choice from the entry and a count, not a captured
                    // generator: nothing in the body writes a captured variable.
                    let n = stats.entries.add(1, ordering: .relaxed).newValue
                    var local = SeededRandom(seed: seed ^ UInt64(n) ^ entry.start)
                    switch Int.random(in: 0..<64, using: &local) {
                    case 0: return .stop                                   // break in the middle of a table
                    case 1: throw .handlerError(-4)                        // a throwing body
                    case 2: return .unlockAndRetry { () throws(PageWalkError) in usleep(50) }
                    case 3 where entry.level == .pmd && entry.entry.raw != 0: return .splitPMD   // a leaf, not a PMD without a table
                    case 4 where !entry.isRetry && entry.folio?.isLarge == true && entry.level == .pte: return .splitFolio
                    case 5...8: try entry.clear()
                    case 9...20: try entry.writeProtect()
                    case 21...40: try entry.testAndClearYoung(); try entry.clearFolioReferenced()
                    case 41...44: try entry.makeClean()
                    default: break
                    }
                    return .next
                }
            }
            stats.walks.add(1, ordering: .relaxed)
        }
        let seconds = Self.seconds
        let finished = Self.race([
            { loop(21) { rng in let (s, e) = range(&rng, maxPages: 128); try mm.fault(s, e, write: Bool.random(using: &rng)) } },
            { loop(22) { rng in let (s, e) = range(&rng, maxPages: 32)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: try mm.zap(s, e)
                case 1: try mm.swapOut(s, e)
                default: try mm.swapIn(s, e)
                } } },
            { loop(23) { rng in
                let pmd = x.lowerBound + UInt64.random(in: 0..<4, using: &rng) * 2 * mb
                if Bool.random(using: &rng) { try mm.populateTHP(pmd, pmd + 2 * mb) } else { try mm.splitHugePMD(containing: pmd) } } },
            { loop(24) { rng in
                let child = try mm.fork(childPID: 721)
                usleep(UInt32.random(in: 0...300, using: &rng))
                try child.tearDown()
                stats.forks.add(1, ordering: .relaxed) } },
            { loop(25) { rng in try updateWalk(&rng) } },
            { loop(26) { rng in try updateWalk(&rng) } },
            { usleep(UInt32(seconds * 1_000_000)); stop.store(true, ordering: .relaxed) },
        ], deadline: seconds + 120)
        #expect(finished, "a thread hung")
        guard finished else { return }
        let v = stats.violations.withLock { $0 }
        #expect(v.isEmpty, "\(v.prefix(5))")
        let dangling = Self.danglingFrames(mm, memory, x)
        #expect(dangling.isEmpty, "\(dangling.prefix(4))")
        print("[stress update-walk] \(stats.ops.load(ordering: .relaxed)) ops (\(stats.failedOps.load(ordering: .relaxed)) refused or thrown on purpose), \(stats.walks.load(ordering: .relaxed)) update walks, \(stats.entries.load(ordering: .relaxed)) entries, \(stats.forks.load(ordering: .relaxed)) forks")
        #expect(stats.walks.load(ordering: .relaxed) > 0)
        try mm.tearDown()
        // When the last swap entry goes while another thread holds the
        // folio lock (a swap-in or swap-out of the same page), zap can only
        // try the lock, so the folio stays in the swap cache: as in Linux,
        // unmapped and referenced by the cache alone, until reclaim frees
        // it. What is left must be exactly that: reclaim frees everything.
        let leftovers = memory.swap.cachedSlots().map { c -> String in
            guard let f = memory.folio(containing: c.pfn) else { return "slot \(c.slot) -> pfn 0x\(String(c.pfn, radix: 16)) (no folio)" }
            return "slot \(c.slot) count \(memory.swap.count(c.slot)) -> folio pfn 0x\(String(f.pfn, radix: 16)) order \(f.order) ref \(f.refcount) map \(f.mapcount) flags \(f.flags)"
        }
        let reclaimed = memory.reclaimUnusedSwapCache()
        #expect(memory.folioCount == 0, "\(memory.folioCount) folios left after teardown and reclaim of \(reclaimed): \(leftovers)")
        #expect(memory.swap.usedSlots == 0, "\(memory.swap.usedSlots) swap slots left after teardown and reclaim of \(reclaimed)")
    }

    static func race(_ bodies: [@Sendable () -> Void], deadline: Double) -> Bool {
        let ready = Atomic<Int>(0)
        let group = DispatchGroup()
        for body in bodies {
            group.enter()
            let t = Thread {
                ready.add(1, ordering: .acquiringAndReleasing)
                while ready.load(ordering: .acquiring) < bodies.count {}
                body()
                group.leave()
            }
            t.stackSize = 8 << 20
            t.start()
        }
        return group.wait(timeout: .now() + deadline) == .success
    }

    /// Present PTEs of `range` naming a frame that holds no folio: a folio
    /// freed while still mapped (a reference dropped once too often).
    static func danglingFrames(_ mm: AddressSpace, _ memory: PhysicalMemory, _ range: Range<UInt64>) -> [String] {
        var out: [String] = []
        for a in stride(from: range.lowerBound, to: range.upperBound, by: Int(page)) {
            if case .present(_, _, let pfn) = mm.translate(a), memory.folio(containing: pfn) == nil {
                out.append("PTE \(hx(a)) -> freed frame \(hx(pfn))")
            }
        }
        return out
    }

    /// One producer of each kind, with the bounds the invariant implies.
    static func checkProducers(_ mm: AddressSpace, _ L: Layout, options: ProcOptions, round: Int, stats: Stats) throws {
        let aKB = UInt64(L.a.count) >> 10
        switch round % 5 {
        case 0:
            let smaps = try Smaps.text(mm, options: options)
            let blocks = smapsBlocks(smaps)
            guard blocks.count == L.all.count else { stats.violation("smaps: \(blocks.count) VMAs, not \(L.all.count)"); return }
            for (start, fields) in blocks {
                let size = fields["Size"] ?? 0, rss = fields["Rss"] ?? 0, swap = fields["Swap"] ?? 0
                if rss > size || swap > size || (fields["Pss"] ?? 0) > rss {
                    stats.violation("smaps \(hx(start)): Rss \(rss) Pss \(fields["Pss"] ?? 0) Swap \(swap) vs Size \(size)")
                }
                if start == L.a.lowerBound && rss + swap != aKB {
                    stats.violation("smaps (\(options.walker)): region A Rss \(rss) + Swap \(swap) kB != \(aKB) kB")
                }
            }
        case 1:
            let (mss, first, last) = try SmapsRollup.gather(mm, options: options)
            let text = try SmapsRollup.text(mm, options: options)
            let f = smapsBlocks(text)
            if f.first?.0 != first || first != L.a.lowerBound || last != L.f.upperBound {
                stats.violation("smaps_rollup header: \(hx(first))-\(hx(last))")
            }
            let rss = f.first?.1["Rss"] ?? 0, swap = f.first?.1["Swap"] ?? 0
            let total = L.totalBytes >> 10
            if rss > total || swap > total || rss + swap < aKB {
                stats.violation("smaps_rollup (\(options.walker)): Rss \(rss) Swap \(swap) kB; VMAs \(total) kB, A \(aKB) kB")
            }
            if mss.resident >> 10 > total { stats.violation("rollup gather: resident \(mss.resident)") }
        case 2:
            let numa = try NumaMaps.text(mm, options: options)
            let lines = numa.split(separator: "\n")
            if lines.count != L.all.count { stats.violation("numa_maps: \(lines.count) lines") }
            for line in lines {
                let fields = line.split(separator: " ")
                guard let start = UInt64(fields.first ?? "", radix: 16) else { stats.violation("numa_maps: bad line \(line)"); continue }
                let size = UInt64(L.all.first { $0.lowerBound == start }?.count ?? 0) / page
                var nodes: UInt64 = 0
                for f in fields {
                    let kv = f.split(separator: "=")
                    guard kv.count == 2, let v = UInt64(kv[1]) else { continue }
                    if kv[0].hasPrefix("N") { nodes += v }
                    if ["anon", "dirty", "mapped", "swapcache", "active", "writeback"].contains(String(kv[0])) && v > size {
                        stats.violation("numa_maps \(hx(start)): \(kv[0])=\(v) beyond \(size) pages")
                    }
                }
                if nodes > size { stats.violation("numa_maps \(hx(start)): N-counts sum to \(nodes), beyond \(size) pages") }
            }
        case 3:
            let words = try Pagemap.words(mm, L.a, privileged: true, options: options)
            if words.count != L.a.count / Int(page) { stats.violation("pagemap: \(words.count) words for A") }
            for (i, w) in words.enumerated() where w & (PagemapBits.present | PagemapBits.swap) == 0 {
                stats.violation("pagemap (\(options.walker)): page \(hx(L.a.lowerBound + UInt64(i) * page)) of A is \(hx(w))")
                break
            }
            let span = L.a.lowerBound..<L.f.upperBound
            let all = try Pagemap.words(mm, span, privileged: false, options: options)
            if all.count != span.count / Int(page) { stats.violation("pagemap: \(all.count) words over the span") }
        default:
            let r = try PagemapScan.scan(mm, .init(start: L.a.lowerBound, end: L.a.upperBound,
                                                   categoryAnyofMask: [.present, .swapped], returnMask: [.present, .swapped]),
                                         options: options)
            let pages = r.regions.reduce(0) { $0 + ($1.end - $1.start) / page }
            if pages != UInt64(L.a.count) / page || r.value != r.regions.count {
                stats.violation("PAGEMAP_SCAN (\(options.walker)): \(pages) present-or-swapped pages of A in \(r.regions.count) regions, value \(r.value)")
            }
            let wide = try PagemapScan.scan(mm, .init(start: L.a.lowerBound, end: L.f.upperBound), options: options)
            if wide.value < 0 { stats.violation("PAGEMAP_SCAN wide: \(wide.value)") }
        }
    }
}

/// smaps text → (VMA start, field name → kB).
func smapsBlocks(_ text: String) -> [(UInt64, [String: UInt64])] {
    var out: [(UInt64, [String: UInt64])] = []
    for line in text.split(separator: "\n") {
        let first = line.split(separator: " ", maxSplits: 1).first ?? ""
        let ends = first.split(separator: "-")
        if ends.count == 2, let s = UInt64(ends[0], radix: 16), UInt64(ends[1], radix: 16) != nil {
            out.append((s, [:]))
            continue
        }
        guard let colon = line.firstIndex(of: ":"), !out.isEmpty else { continue }
        let name = String(line[..<colon])
        let rest = line[line.index(after: colon)...].split(separator: " ")
        if let v = rest.first.flatMap({ UInt64($0) }) { out[out.count - 1].1[name] = v }
    }
    return out
}
