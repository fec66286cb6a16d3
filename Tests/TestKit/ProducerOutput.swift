import MemoryModel
import PageWalk
import ProcFS

/// Everything the producers print for one address space, as bytes: what
/// the twin tests and the differential fuzzer compare across walkers.
public struct ProducerOutput: Equatable {
    public var smaps: String
    public var rollup: String
    public var numa: String
    public var pagemap: [UInt64]
    public var pagemapUnprivileged: [UInt64]
    public var scans: [PagemapScan.Result]

    /// The producers' output, pagemap read over `windows` one after the other.
    public static func capture(_ mm: AddressSpace, _ options: ProcOptions, windows: [Range<UInt64>],
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

    public static func capture(_ mm: AddressSpace, _ options: ProcOptions, window: Range<UInt64>,
                               scans: [PagemapScan.Arguments]) throws -> ProducerOutput {
        try capture(mm, options, windows: [window], scans: scans)
    }

    /// The first differing line or word, for a readable failure.
    public func firstDifference(_ o: ProducerOutput) -> String? {
        func lines(_ name: String, _ a: String, _ b: String) -> String? {
            let x = a.split(separator: "\n", omittingEmptySubsequences: false)
            let y = b.split(separator: "\n", omittingEmptySubsequences: false)
            for i in 0..<max(x.count, y.count) where (i < x.count ? x[i] : "<end>") != (i < y.count ? y[i] : "<end>") {
                // The VMA header line above it, for orientation.
                let ctx = x[..<min(i, x.count)].last { $0.contains("-") && $0.contains(" ") && !$0.contains(":  ") } ?? ""
                return "\(name) line \(i) (after \(ctx)): '\(i < x.count ? x[i] : "<end>")' vs '\(i < y.count ? y[i] : "<end>")'"
            }
            return nil
        }
        func hx(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
        if let d = lines("smaps", smaps, o.smaps) { return d }
        if let d = lines("smaps_rollup", rollup, o.rollup) { return d }
        if let d = lines("numa_maps", numa, o.numa) { return d }
        for (name, a, b) in [("pagemap", pagemap, o.pagemap), ("pagemap(unprivileged)", pagemapUnprivileged, o.pagemapUnprivileged)] {
            if a.count != b.count { return "\(name): \(a.count) words vs \(b.count)" }
            if let i = a.indices.first(where: { a[$0] != b[$0] }) { return "\(name) word \(i): \(hx(a[i])) vs \(hx(b[i]))" }
        }
        for (i, (a, b)) in zip(scans, o.scans).enumerated() where a != b {
            return "PAGEMAP_SCAN \(i): \(a.value) \(hx(a.walkEnd)) \(a.regions.prefix(8)) vs \(b.value) \(hx(b.walkEnd)) \(b.regions.prefix(8))"
        }
        return nil
    }
}

/// The ways of producing the same bytes: range walker batched and
/// unbatched, callback walker over closures and (smaps) over a handler type.
public let twinConfigurations: [(String, ProcOptions)] = [
    ("range batched", ProcOptions(walker: .range, batching: true)),
    ("range unbatched", ProcOptions(walker: .range, batching: false)),
    ("callback", ProcOptions(walker: .callback)),
    ("callback specialized", ProcOptions(walker: .callback, specialized: true)),
]

/// PAGEMAP_SCAN queries over `window`, exercising the masks, the
/// written-only fast path, max_pages and small output vectors.
public func scanQueries(_ window: Range<UInt64>) -> [PagemapScan.Arguments] {
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
