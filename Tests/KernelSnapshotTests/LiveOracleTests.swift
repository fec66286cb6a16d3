import LiveKernel
import Foundation
import Glibc
import Testing
import MemoryModel
import ProcFS
@testable import KernelSnapshot

/// The live oracle: each case spawns the C helper (LiveOracleHelperSource)
/// with posix_spawn, lets it build one shape of mappings and block on its
/// stdin, captures it (and its forked child, for the fork cases) with
/// SnapshotCapture, rebuilds the snapshot, runs our smaps, smaps_rollup and
/// numa_maps on every rebuilt process, and compares them with the kernel's
/// captured text field by field for every VMA (the helper's libraries and
/// stack included).
///
/// Every field must be equal unless a named exception in `OracleExceptions`
/// explains it under a condition checked on the capture; the per-case
/// table (docs/ORACLE.md) is printed as `ORACLE-ROW` / `ORACLE-DIFF` lines.
/// System settings a case changes (mTHP knobs, the hugetlb pool, a swap
/// file) are restored and checked to be restored; a feature the kernel
/// lacks cancels the case with the reason.
@Suite("Live oracle", .serialized,
       .enabled(if: LiveOracleHelper.available, "needs root, /proc/kpageflags and a C compiler (cc) for the helper"))
struct LiveOracleTests {
    /// What `run` hands a case's checks.
    struct Run {
        let snap: Snapshot
        let rebuilt: RebuiltSnapshot
        let helper: OracleHelperProcess
        let tally: OracleTally

        /// The captured smaps blocks of `pid` inside the helper's region `name`.
        func blocks(_ name: String, pid: Int32? = nil) -> [SmapsBlock] {
            guard let r = helper.regions.first(where: { $0.name == name }),
                  let p = snap.process(pid: pid ?? helper.pid) else { return [] }
            return p.smaps.filter { $0.header.start >= r.start && $0.header.end <= r.end }
        }
        func kB(_ name: String, _ field: String, pid: Int32? = nil) -> UInt64 {
            blocks(name, pid: pid).reduce(0) { $0 + ($1.kilobytes(field) ?? 0) }
        }
        /// kpageflags shows ZERO_PAGE for the frame mapped at `address`.
        func isZeroPage(at address: UInt64) -> Bool {
            guard let pfn = snap.process(pid: helper.pid)?.pagemapWord(at: address)?.pfn else { return false }
            return snap.record(pfn: pfn)?.flags.contains(.zeroPage) == true
        }
        func start(_ name: String) -> UInt64 { helper.regions.first { $0.name == name }?.start ?? 0 }

        /// The captured folio order of the page at `address` (nil if not present).
        func folioOrder(at address: UInt64, pid: Int32? = nil) -> Int? {
            guard let p = snap.process(pid: pid ?? helper.pid), let pfn = p.pagemapWord(at: address)?.pfn,
                  let i = snap.kpageflags.firstIndex(where: { $0.pfn == pfn }) else { return nil }
            var head = i
            while head > 0, snap.kpageflags[head].flags.contains(.compoundTail),
                  !snap.kpageflags[head].flags.contains(.compoundHead) { head -= 1 }
            guard snap.kpageflags[head].flags.contains(.compoundHead) else { return 0 }
            var end = head + 1
            while end < snap.kpageflags.count, snap.kpageflags[end].pfn == snap.kpageflags[end - 1].pfn + 1,
                  snap.kpageflags[end].flags.contains(.compoundTail) { end += 1 }
            return (end - head).trailingZeroBitCount
        }
    }

    /// Sets up (settings via `live`), spawns the helper case, captures,
    /// restores every setting, rebuilds, compares, prints the row and
    /// checks that nothing differs without a named exception.
    @discardableResult
    func run(_ caseName: String, rowName: String? = nil, note: String = "",
             setup: (LiveMappings) throws -> Void = { _ in }) throws -> Run {
        let before = OracleSettings.watched()
        let live = LiveMappings()
        var restored = false
        func restore() {
            guard !restored else { return }
            restored = true
            // The settings this case changed (other suites may run beside this one).
            let changed = OracleSettings.watched().filter { before[$0.key] != $0.value }.map(\.key)
            let failures = live.tearDown()
            #expect(failures.isEmpty, "tear-down: \(failures)")
            let after = OracleSettings.watched()
            for k in changed.sorted() {
                #expect(after[k] == before[k], "\(k) not restored: was '\(before[k] ?? "")', now '\(after[k] ?? "")'")
            }
            if !changed.isEmpty {
                print("ORACLE-SETTINGS \(caseName): changed and restored " + changed.sorted().map {
                    "\(($0 as NSString).lastPathComponent == "enabled" ? $0.replacingOccurrences(of: LiveMappings.thpDirectory + "/", with: "") : $0)=\(after[$0] ?? "")"
                }.joined(separator: ", "))
            }
        }
        defer { restore() }
        // The case's own settings apply over the baseline the oracle's
        // expectations are written for.
        if let why = try HostFacts.pinTHPBaselineIfPossible(live) { restore(); try Test.cancel("\(caseName): \(why)") }
        do { try setup(live) } catch let e as LiveMappingError {
            if case .unavailable = e { restore(); try Test.cancel("\(caseName): \(e)") }
            throw e
        }
        let work = TestSupport.tempDirectory("oracle-\(caseName)")
        defer { TestSupport.remove(work) }
        let helper = try OracleHelperProcess(caseName: caseName, directory: work)
        defer { helper.finish() }
        if let why = helper.skipReason {
            helper.finish()
            restore()
            try Test.cancel("\(caseName): the kernel refused: \(why)")
        }
        let thp = HostFacts.current().thp
        let dir = work + "/snap"
        try SnapshotCapture.capture(pids: helper.pids, to: dir)
        // The kernel's text once more, for the exceptions that need to see it move.
        var reread: [Int32: OracleReread] = [:]
        for pid in helper.pids { reread[pid] = OracleReread.read(pid: pid) }
        helper.finish()
        restore()

        let snap = try SnapshotReader.read(directory: dir)
        let rebuilt = try SnapshotRebuilder.rebuild(snap)
        #expect(rebuilt.report.unplacedPFNs == 0, "\(rebuilt.report)")
        let child = helper.childPid
        var tally = try LiveOracle.compare(snap, rebuilt, thp: thp, reread: reread) { p, m in
            let who = child == nil ? "" : (p.pid == child ? "child " : "parent ")
            if let r = helper.regions.first(where: { $0.start <= m.start && m.start < $0.end }) {
                let part = (m.start, m.end) == (r.start, r.end) ? "" : "@+\(String(m.start - r.start, radix: 16))"
                return who + r.name + part
            }
            let name = m.name.isEmpty ? "[anon \(String(m.start, radix: 16))]" : (m.name as NSString).lastPathComponent
            return who + name + " " + m.perms
        }
        tally.addPagemap(snap, rebuilt)
        #expect(tally.pagemapEqual == tally.pagemapWords, "pagemap words regenerated from the model differ")
        let row = OracleRow(name: rowName ?? caseName, pids: snap.processes.count, tally: tally, note: note)
        row.print()
        // What the kernel showed for the case's own regions (for docs/ORACLE.md).
        for p in snap.processes {
            for b in p.smaps {
                guard let r = helper.regions.first(where: { $0.start <= b.header.start && b.header.start < $0.end }) else { continue }
                let keys = ["Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty", "Anonymous",
                            "LazyFree", "AnonHugePages", "ShmemPmdMapped", "FilePmdMapped", "Shared_Hugetlb", "Private_Hugetlb", "Swap", "SwapPss", "Locked"]
                let nz = keys.compactMap { k in b.kilobytes(k).flatMap { $0 == 0 ? nil : "\(k)=\($0)" } }
                let numa = p.numaMaps.first { $0.start == b.header.start }?.raw ?? "-"
                let who = child == nil ? "" : (p.pid == child ? "child " : "parent ")
                print("ORACLE-REGION \(caseName) \(who)\(r.name)+\(String(b.header.start - r.start, radix: 16)) "
                      + "\(b.header.perms) \(b.header.size >> 10)K: \(nz.joined(separator: " ")) | numa: "
                      + numa.split(separator: " ").dropFirst().joined(separator: " "))
            }
        }
        for m in tally.unexplained { Issue.record("\(caseName): \(m)") }
        return Run(snap: snap, rebuilt: rebuilt, helper: helper, tally: tally)
    }

    // MARK: cases

    @Test func anon4K() throws {
        let r = try run("anon")
        #expect(r.kB("anon-read-zero", "Rss") == 0)          // read faults map the zero page
        #expect(r.isZeroPage(at: r.start("anon-read-zero")))
        #expect(r.kB("anon-written", "Private_Dirty") == 128)
        #expect(r.kB("anon-mixed", "Rss") == 32)
    }

    @Test func pmdTHP() throws {
        let r = try run("thp") { live in
            // THP needs the global mode to allow madvise; set only if it is 'never'.
            if try LiveMappings.readSetting(path: LiveMappings.thpDirectory + "/enabled") == "never" {
                try live.setSetting(path: LiveMappings.thpDirectory + "/enabled", value: "madvise")
            }
        }
        #expect(r.kB("thp-written", "AnonHugePages") == 4096, "no PMD THP was allocated")
        #expect(r.isZeroPage(at: r.start("thp-read-hugezero")), "the huge zero page")
    }

    /// Enables exactly `sizeKB` among the anonymous mTHP sizes (PMD too,
    /// unless `keepPMD`), restored at tear-down.
    static func onlyMTHP(_ live: LiveMappings, sizeKB: Int, keepPMD: Bool = false) throws {
        guard FileManager.default.fileExists(atPath: LiveMappings.mthpEnabledPath(sizeKB: sizeKB)) else {
            throw LiveMappingError.unavailable(feature: "mTHP \(sizeKB)kB",
                                               reason: "\(LiveMappings.mthpEnabledPath(sizeKB: sizeKB)) does not exist")
        }
        for kb in [16, 32, 64, 128, 256, 512, 1024, 2048] where kb != sizeKB && !(keepPMD && kb == 2048) {
            if FileManager.default.fileExists(atPath: LiveMappings.mthpEnabledPath(sizeKB: kb)) {
                try live.setMTHP(sizeKB: kb, "never")
            }
        }
        try live.setMTHP(sizeKB: sizeKB, "always")
    }

    /// One anonymous mTHP size per run: only that size's knob is `always`
    /// (the others, PMD included, `never`), four folios of it written.
    @Test(arguments: [16, 32, 64, 128, 256, 512, 1024])
    func mTHP(sizeKB: Int) throws {
        let r = try run("mthp-\(sizeKB)") { live in try Self.onlyMTHP(live, sizeKB: sizeKB) }
        let region = try #require(r.helper.regions.first { $0.name == "mthp-\(sizeKB)K" })
        let order = (sizeKB / 4).trailingZeroBitCount
        for k in 0..<4 {
            let a = region.start + UInt64(k * sizeKB * 1024)
            #expect(r.folioOrder(at: a) == order, "mthp-\(sizeKB)K folio \(k): order")
        }
    }

    @Test func filePrivate() throws {
        let r = try run("file-private")
        #expect(r.kB("file-private-ro-clean", "Rss") == 128)
        #expect(r.kB("file-private-cow", "Anonymous") == 32)
    }

    @Test func fileShared() throws {
        let r = try run("file-shared")
        #expect(r.kB("file-shared-dirty", "Rss") == 128)
        #expect(r.kB("file-shared-clean", "Rss") == 64)
    }

    @Test func shmemAndSharedAnon() throws {
        let r = try run("shmem")
        #expect(r.kB("memfd", "Rss") == 96)
        #expect(r.kB("shared-anon", "Rss") == 48)
    }

    /// THP everywhere: enabled=always and shmem_enabled=always, so that
    /// memfd and shared anonymous memory get PMD-mapped shmem THPs and
    /// THPeligible is decided by the `always` branches.
    @Test func shmemTHPUnderAlways() throws {
        let r = try run("shmem-thp") { live in
            let dir = LiveMappings.thpDirectory
            try live.setSetting(path: dir + "/enabled", value: "always")
            try live.setSetting(path: dir + "/shmem_enabled", value: "always")
        }
        #expect(r.kB("memfd-thp", "ShmemPmdMapped") == 4096, "no shmem THP was allocated")
        #expect(r.kB("shared-anon-thp", "ShmemPmdMapped") == 2048)
        #expect(r.kB("anon-thp-always", "AnonHugePages") == 2048)
    }

    @Test func mlock() throws {
        let r = try run("mlock")
        #expect(r.kB("mlocked-anon", "Locked") == 128)
        #expect(r.kB("mlock-onfault", "Locked") == 32)
    }

    @Test func madvFree() throws {
        let r = try run("madv-free")
        #expect(r.kB("madv-free", "LazyFree") == 120, "MADV_FREE pages")
    }

    @Test func guardRegions() throws {
        let r = try run("guard")
        let p = try #require(r.snap.process(pid: r.helper.pid))
        let region = try #require(r.helper.regions.first { $0.name == "guarded-anon" })
        #expect(p.pagemapWord(at: region.start + 8 * 4096)?.isGuard == true)
    }

    @Test func swapOut() throws {
        let r = try run("swap") { live in _ = try live.enableSwap(sizeMiB: 16) }
        #expect(r.kB("swapped-anon", "Swap") > 0)
    }

    @Test func hugetlb() throws {
        let r = try run("hugetlb") { live in try live.reserveHugePages(2) }
        #expect(r.kB("hugetlb-private", "Private_Hugetlb") == 2048)
        #expect(r.kB("hugetlb-shared", "Shared_Hugetlb") + r.kB("hugetlb-shared", "Private_Hugetlb") == 2048)
    }

    @Test func forkCOW() throws {
        let r = try run("fork")
        let child = try #require(r.helper.childPid)
        #expect(r.kB("fork-anon", "Shared_Dirty", pid: child) == 128)
        #expect(r.kB("fork-anon", "Private_Dirty", pid: child) == 128)
    }

    @Test func forkCOWWithSwap() throws {
        let r = try run("fork-swap") { live in _ = try live.enableSwap(sizeMiB: 16) }
        let child = try #require(r.helper.childPid)
        #expect(r.kB("fork-swapped", "Swap", pid: child) > 0)
        #expect(r.kB("fork-swapped", "SwapPss", pid: child) < r.kB("fork-swapped", "Swap", pid: child))
    }

    @Test func largeFolioSplitByMprotect() throws {
        let r = try run("split") { live in try Self.onlyMTHP(live, sizeKB: 64, keepPMD: true) }
        let thp = try #require(r.helper.regions.first { $0.name == "split-thp" })
        #expect(r.blocks("split-thp").count == 3)
        #expect(r.folioOrder(at: thp.start) == 9 && r.folioOrder(at: thp.end - 4096) == 9,
                "one order-9 folio across the three VMAs")
        let m = try #require(r.helper.regions.first { $0.name == "split-mthp64K" })
        #expect(r.blocks("split-mthp64K").count == 3)
        #expect(r.folioOrder(at: m.start + 8 * 4096) == 4, "a 64K folio across the VMA boundary")
    }

    // MARK: the fixture, through the same table

    @Test(.enabled(if: TestSupport.haveFixture, "fixture python-idle not found at Tests/Fixtures/snapshots"))
    func fixturePythonIdle() throws {
        let snap = try SnapshotReader.read(directory: try #require(TestSupport.pythonIdle))
        let rebuilt = try SnapshotRebuilder.rebuild(snap)
        // The fixture does not record the THP knobs; the machine defaults apply.
        var tally = try LiveOracle.compare(snap, rebuilt, thp: THPSettings()) { _, m in
            m.name.isEmpty ? "[anon \(String(m.start, radix: 16))] \(m.perms)" : (m.name as NSString).lastPathComponent + " " + m.perms
        }
        tally.addPagemap(snap, rebuilt)
        #expect(tally.pagemapEqual == tally.pagemapWords)
        OracleRow(name: "fixture python-idle", pids: snap.processes.count, tally: tally, note: "").print()
        for m in tally.unexplained { Issue.record("fixture: \(m)") }
    }
}
