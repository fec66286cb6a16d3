import MemoryModel
import PageWalk
@testable import ProcFS

let page: UInt64 = 4096
let mb2: UInt64 = 2 << 20

/// SplitMix64: a small seeded generator for reproducible scenarios.
struct SeededRandom: RandomNumberGenerator {
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

/// Everything a producer prints for one address space, as bytes.
struct ProducerOutput: Equatable {
    var smaps: String
    var rollup: String
    var numa: String
    var pagemap: [UInt64]
    var pagemapUnprivileged: [UInt64]
    var scans: [PagemapScan.Result]

    static func capture(_ mm: AddressSpace, _ options: ProcOptions, window: Range<UInt64>,
                        scans: [PagemapScan.Arguments]) throws -> ProducerOutput {
        ProducerOutput(
            smaps: try Smaps.text(mm, options: options),
            rollup: try SmapsRollup.text(mm, options: options),
            numa: try NumaMaps.text(mm, options: options),
            pagemap: try Pagemap.words(mm, window, privileged: true, options: options),
            pagemapUnprivileged: try Pagemap.words(mm, window, privileged: false, options: options),
            scans: try scans.map { try PagemapScan.scan(mm, $0, options: options) })
    }

    /// The first differing line or word, for a readable failure.
    func firstDifference(_ o: ProducerOutput) -> String? {
        func lines(_ name: String, _ a: String, _ b: String) -> String? {
            let x = a.split(separator: "\n", omittingEmptySubsequences: false)
            let y = b.split(separator: "\n", omittingEmptySubsequences: false)
            for i in 0..<max(x.count, y.count) where (i < x.count ? x[i] : "<end>") != (i < y.count ? y[i] : "<end>") {
                let ctx = x[..<min(i, x.count)].last { $0.contains("-") && $0.contains(" ") && !$0.contains(":  ") } ?? ""
                return "\(name) line \(i) (after \(ctx)): '\(i < x.count ? x[i] : "<end>")' vs '\(i < y.count ? y[i] : "<end>")'"
            }
            return nil
        }
        if let d = lines("smaps", smaps, o.smaps) { return d }
        if let d = lines("rollup", rollup, o.rollup) { return d }
        if let d = lines("numa_maps", numa, o.numa) { return d }
        for (name, a, b) in [("pagemap", pagemap, o.pagemap), ("pagemap(unpriv)", pagemapUnprivileged, o.pagemapUnprivileged)] {
            if a.count != b.count { return "\(name): \(a.count) words vs \(b.count)" }
            if let i = a.indices.first(where: { a[$0] != b[$0] }) {
                return "\(name) word \(i): 0x\(String(a[i], radix: 16)) vs 0x\(String(b[i], radix: 16))"
            }
        }
        for (i, (a, b)) in zip(scans, o.scans).enumerated() where a != b {
            return "scan \(i): \(a.value) \(a.walkEnd) \(a.regions.prefix(8)) vs \(b.value) \(b.walkEnd) \(b.regions.prefix(8))"
        }
        return nil
    }
}

/// The three ways of producing the same bytes.
let twinConfigurations: [(String, ProcOptions)] = [
    ("range batched", ProcOptions(walker: .range, batching: true)),
    ("range unbatched", ProcOptions(walker: .range, batching: false)),
    ("callback", ProcOptions(walker: .callback)),
]

/// A set of PAGEMAP_SCAN queries over `window`, exercising the masks,
/// the written-only fast path, max_pages and a small output vector.
func scanQueries(_ window: Range<UInt64>) -> [PagemapScan.Arguments] {
    typealias C = PagemapScan.Category
    let s = window.lowerBound, e = window.upperBound
    return [
        .init(start: s, end: e),
        .init(start: s, end: e, categoryMask: [.present], returnMask: [.present, .file, .huge, .written, .pfnZero]),
        .init(start: s, end: e, categoryMask: [.written], returnMask: [.written]),
        .init(start: s, end: e, categoryAnyofMask: [.swapped, .guardRegion, .huge], returnMask: .all),
        .init(start: s, end: e, categoryInverted: [.present], categoryMask: [.present], returnMask: [.swapped, .guardRegion, .softDirty]),
        .init(start: s, end: e, vecLen: 3, returnMask: .all),
        .init(start: s, end: e, maxPages: 37, categoryMask: [.present], returnMask: [.present, .file]),
        .init(start: s, end: e, maxPages: 700, categoryMask: [.written], returnMask: [.written]),
        .init(start: s, end: e, categoryMask: [.wpAllowed], returnMask: .all),
        .init(start: s, end: e, vecLen: 0, categoryMask: [.present]),
    ]
}
