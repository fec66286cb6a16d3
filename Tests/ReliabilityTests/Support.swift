import Foundation
import Synchronization
import MemoryModel
import PageWalk
import ProcFS

// Shared helpers of the reliability suites: a seeded generator, real
// threads with a stop flag and a watchdog, bounded-time execution, the
// environment knobs, and the fixture path.

let page: UInt64 = 4096
let mb: UInt64 = 1 << 20
let mb2: UInt64 = 2 << 20

func hx(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

/// SplitMix64: a small seeded generator so that every failure replays.
struct SeededRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Environment knobs (CI runs the defaults).
enum Knobs {
    static func int(_ name: String) -> Int? {
        ProcessInfo.processInfo.environment[name].flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }
    static func uint(_ name: String) -> UInt64? {
        guard let s = ProcessInfo.processInfo.environment[name]?.trimmingCharacters(in: .whitespaces) else { return nil }
        if s.hasPrefix("0x") { return UInt64(s.dropFirst(2), radix: 16) }
        return UInt64(s)
    }
    static func double(_ name: String) -> Double? {
        ProcessInfo.processInfo.environment[name].flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }
    }
    /// Whether the binary was built with ThreadSanitizer (everything is
    /// several times slower there: budgets shrink accordingly).
    static let underTSan: Bool = {
        #if canImport(Glibc)
        return dlsym(nil, "__tsan_init") != nil   // RTLD_DEFAULT
        #else
        return false
        #endif
    }()
}

/// A set of real threads (dispatch's pool does not run enough of them on
/// two cores) that run until `stop` is set.
final class ThreadSet: @unchecked Sendable {
    let stop = Atomic<Bool>(false)
    private let group = DispatchGroup()
    private let running = Atomic<Int>(0)
    private(set) var count = 0

    func spawn(_ name: String, _ body: @escaping @Sendable (ThreadSet) -> Void) {
        group.enter()
        count += 1
        running.add(1, ordering: .relaxed)
        let t = Thread { [self] in
            body(self)
            running.subtract(1, ordering: .relaxed)
            group.leave()
        }
        t.name = name
        t.stackSize = 8 << 20
        t.start()
    }

    var shouldStop: Bool { stop.load(ordering: .relaxed) }

    /// Lets the threads run for `seconds`, then asks them to stop and waits
    /// up to `deadline` seconds (the watchdog). Returns false on a hang.
    func run(for seconds: Double, deadline: Double) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end { usleep(10_000) }
        stop.store(true, ordering: .relaxed)
        return group.wait(timeout: .now() + deadline) == .success
    }

    var stillRunning: Int { running.load(ordering: .relaxed) }
}

/// Runs `body` on its own thread and waits at most `seconds`: nil when it
/// did not finish (a hang), else what it returned. A hung body is left
/// running; the caller records the failure.
func withTimeout<R: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () -> R) -> R? {
    let result = Mutex<R?>(nil)
    let done = DispatchSemaphore(value: 0)
    let t = Thread {
        let r = body()
        result.withLock { $0 = r }
        done.signal()
    }
    t.stackSize = 16 << 20
    t.start()
    guard done.wait(timeout: .now() + seconds) == .success else { return nil }
    return result.withLock { $0 }
}

/// <repo>/../shared/fixtures/snapshots/<name>, found from this file.
func fixtureSnapshot(_ name: String, file: String = #filePath) -> String? {
    let testsDir = (file as NSString).deletingLastPathComponent
    var dirs = [testsDir]
    if let r = realpath(testsDir, nil) { dirs.append(String(cString: r)); free(r) }
    for dir in dirs {
        let repo = ((dir as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
        let candidate = repo + "/../shared/fixtures/snapshots/" + name
        if FileManager.default.fileExists(atPath: candidate + "/FORMAT") { return candidate }
    }
    return nil
}

/// The PTE table mapping `address`, if one is installed.
func pteTable(_ mm: AddressSpace, _ address: UInt64) -> TableID? {
    var table = mm.root
    for level in mm.entryLevels {
        let w = mm.tables.entries(table)[mm.geometry.tableIndex(address, level)].load(ordering: .acquiring)
        if level == .pmd {
            return mm.geometry.layout.isTable(w, .pmd) ? mm.lowerTable(w) : nil
        }
        guard mm.geometry.layout.isTable(w, level) else { return nil }
        table = mm.lowerTable(w)
    }
    return nil
}

/// Every producer's output for one address space, as bytes.
struct ProducerOutput: Equatable {
    var smaps: String
    var rollup: String
    var numa: String
    var pagemap: [UInt64]
    var pagemapUnprivileged: [UInt64]
    var scans: [PagemapScan.Result]

    static func capture(_ mm: AddressSpace, _ options: ProcOptions, windows: [Range<UInt64>],
                        scans: [PagemapScan.Arguments]) throws -> ProducerOutput {
        var pm: [UInt64] = [], pmu: [UInt64] = []
        for w in windows {
            pm += try Pagemap.words(mm, w, privileged: true, options: options)
            pmu += try Pagemap.words(mm, w, privileged: false, options: options)
        }
        return ProducerOutput(
            smaps: try Smaps.text(mm, options: options),
            rollup: try SmapsRollup.text(mm, options: options),
            numa: try NumaMaps.text(mm, options: options),
            pagemap: pm, pagemapUnprivileged: pmu,
            scans: try scans.map { try PagemapScan.scan(mm, $0, options: options) })
    }

    /// The first differing line or word, for a readable failure.
    func firstDifference(_ o: ProducerOutput) -> String? {
        func lines(_ name: String, _ a: String, _ b: String) -> String? {
            let x = a.split(separator: "\n", omittingEmptySubsequences: false)
            let y = b.split(separator: "\n", omittingEmptySubsequences: false)
            for i in 0..<max(x.count, y.count) where (i < x.count ? x[i] : "<end>") != (i < y.count ? y[i] : "<end>") {
                return "\(name) line \(i): '\(i < x.count ? x[i] : "<end>")' vs '\(i < y.count ? y[i] : "<end>")'"
            }
            return nil
        }
        if let d = lines("smaps", smaps, o.smaps) { return d }
        if let d = lines("smaps_rollup", rollup, o.rollup) { return d }
        if let d = lines("numa_maps", numa, o.numa) { return d }
        for (name, a, b) in [("pagemap", pagemap, o.pagemap), ("pagemap(unprivileged)", pagemapUnprivileged, o.pagemapUnprivileged)] {
            if a.count != b.count { return "\(name): \(a.count) words vs \(b.count)" }
            if let i = a.indices.first(where: { a[$0] != b[$0] }) { return "\(name) word \(i): \(hx(a[i])) vs \(hx(b[i]))" }
        }
        for (i, (a, b)) in zip(scans, o.scans).enumerated() where a != b {
            return "PAGEMAP_SCAN \(i): \(a.value) \(hx(a.walkEnd)) \(a.regions.prefix(6)) vs \(b.value) \(hx(b.walkEnd)) \(b.regions.prefix(6))"
        }
        return nil
    }
}

/// The three ways of producing the same bytes: range walker batched and
/// unbatched, callback walker.
let twinConfigurations: [(String, ProcOptions)] = [
    ("range batched", ProcOptions(walker: .range, batching: true)),
    ("range unbatched", ProcOptions(walker: .range, batching: false)),
    ("callback", ProcOptions(walker: .callback)),
]

/// PAGEMAP_SCAN queries over `window`: the masks, max_pages and a short vector.
func scanQueries(_ window: Range<UInt64>) -> [PagemapScan.Arguments] {
    let s = window.lowerBound, e = window.upperBound
    return [
        .init(start: s, end: e),
        .init(start: s, end: e, categoryMask: [.present], returnMask: [.present, .file, .huge, .written, .pfnZero]),
        .init(start: s, end: e, categoryAnyofMask: [.swapped, .guardRegion, .huge], returnMask: .all),
        .init(start: s, end: e, categoryInverted: [.present], categoryMask: [.present], returnMask: [.swapped, .guardRegion, .softDirty]),
        .init(start: s, end: e, vecLen: 3, returnMask: .all),
        .init(start: s, end: e, maxPages: 37, categoryMask: [.present], returnMask: [.present, .file]),
    ]
}
