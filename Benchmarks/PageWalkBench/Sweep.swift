#if canImport(Glibc)
import Glibc
#endif
import MemoryModel

// Cost as the work grows (issue 21): the same walks over workloads from
// 64 MiB to 64 GiB (×4 a step) and over 1,000 to 100,000 sparse VMAs in the
// 57-bit space, ns per page at every point, model memory per mapped page,
// and whether the per-page cost stays flat. Memory comes first: a point is
// built only when its predicted model memory fits under half of
// MemAvailable, and the kernel row only when the real memory does too.

enum SweepKind: String, CaseIterable, Codable {
    case sizes
    case sparse
}

/// Largest (max ns/page) / (min ns/page) over a sweep that counts as flat.
let sweepFlatLimit = 1.5
/// The sweeps' works and walkers.
let sweepWorks: [Work] = [.raw, .smaps]
let sweepWalkers: [Walker] = [.callback, .rangeBatched]
/// Real memory kept free besides the kernel row's workload.
let kernelSafetyBytes = 2 << 30

/// One point of a sweep: one workload at one size.
struct SweepPoint: Codable {
    var workload: String
    /// MiB (sizes) or VMAs (sparse): the x axis.
    var x: Int
    var label: String
    /// The model workload as built (geometry for the sparse sweep).
    var detail: String
    var pages: Int
    var buildSeconds: Double
    /// RSS growth while the model workload was built (its arenas, memmap
    /// sections and tables are mappings of their own), as the populate row.
    var modelBytes: Int
    var bytesPerMappedPage: Double
    /// What the limit check predicted before building.
    var predictedModelBytes: Int
    /// work → walker → per-run times, and median ns per page.
    var model: [String: [String: Summary]] = [:]
    var nsPerPage: [String: [String: Double]] = [:]
    var kernel: KernelResult?
    /// The kernel's smaps per walk (SeqFileReads.swift), ns per page.
    var kernelSmapsNSPerPage: Double?
    var kernelSkipped: String?
}

/// A point not built (model) or not measured (kernel), and why.
struct SweepSkip: Codable {
    var workload: String
    var x: Int
    var label: String
    var what: String
    var reason: String
}

struct SweepResult: Codable {
    var sweep: String
    var xUnit: String
    var memAvailableAtStartBytes: Int
    var flatLimit: Double
    var points: [SweepPoint] = []
    var skipped: [SweepSkip] = []
    /// Per workload, work and walker (and the kernel's smaps, for reference):
    /// max / min ns per page over the points measured.
    var flatness: [TargetResult] = []
    var seconds = 0.0
}

/// MemAvailable from /proc/meminfo, bytes (0 if unreadable).
func memAvailableBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
        let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
        return kb << 10
    }
    return 0
}

func mib(_ bytes: Int) -> String { "\(bytes >> 20) MiB" }

func sizeLabel(_ mib: Int) -> String { mib >= 1024 ? "\(mib >> 10) GiB" : "\(mib) MiB" }

func countLabel(_ n: Int) -> String {
    var s = String(n), out = ""
    while s.count > 3 { out = "," + s.suffix(3) + out; s = String(s.dropLast(3)) }
    return s + out + " VMAs"
}

/// The points of a sweep: (workload, x, config for that point).
func sweepPlan(_ sweep: SweepKind, _ c: Config) -> [(WorkloadKind, Int, Config)] {
    var out: [(WorkloadKind, Int, Config)] = []
    switch sweep {
    case .sizes:
        for kind in [WorkloadKind.dense, .thp, .mthp64] {
            var size = 64
            while size <= c.sweepMaxMiB {
                var pc = c
                pc.sizes[kind] = size
                out.append((kind, size, pc))
                size *= 4
            }
        }
    case .sparse:
        var n = 1000
        while n <= c.sweepMaxVMAs {
            var pc = c
            pc.sparseVMAs = n
            pc.sparseFiveLevel = true
            out.append((.sparse, n, pc))
            n *= 10
        }
    }
    return out
}

/// Model bytes a point is assumed to need per mapped page before any point
/// of its workload was measured (generous: dense 4K measures about 24).
func priorBytesPerPage(_ kind: WorkloadKind) -> Double { kind == .sparse ? 4096 : 64 }

func runSweep(_ sweep: SweepKind, _ c: Config) -> (SweepResult, [String]) {
    let t0 = nanoseconds()
    var failures: [String] = []
    var result = SweepResult(sweep: sweep.rawValue, xUnit: sweep == .sizes ? "MiB" : "VMAs",
                             memAvailableAtStartBytes: memAvailableBytes(), flatLimit: sweepFlatLimit)
    let plan = sweepPlan(sweep, c)
    print("\n== sweep \(sweep.rawValue): \(plan.count) points; MemAvailable \(mib(result.memAvailableAtStartBytes)); " +
          "model limit half of MemAvailable (read before each point)" +
          (c.sweepMemLimitMiB.map { " and at most \($0) MiB" } ?? "") + ", kernel limit (MemAvailable - \(mib(kernelSafetyBytes))) / 2")
    printSweepHeader(sweep)
    /// Bytes per mapped page measured at the largest point so far, per
    /// workload (the smallest points carry the fixed costs too).
    var measuredBPP: [WorkloadKind: Double] = [:]
    var stopped: [WorkloadKind: String] = [:]
    for (kind, x, pc) in plan {
        let label = sweep == .sizes ? sizeLabel(x) : countLabel(x)
        func skip(_ what: String, _ reason: String) {
            result.skipped.append(SweepSkip(workload: kind.rawValue, x: x, label: label, what: what, reason: reason))
            print("   \(pad(kind.rawValue, 9)) \(pad(label, 12)) \(what) skipped: \(reason)")
        }
        if let why = stopped[kind] { skip("model", why); continue }
        let pages = sweep == .sizes ? (x << 20) >> Geometry.pageShift : x * (c.sparseKiB << 10) >> Geometry.pageShift
        let bpp = measuredBPP[kind] ?? priorBytesPerPage(kind)
        let predicted = Int(bpp * 1.25 * Double(pages)) + (16 << 20)
        let available = min(memAvailableBytes(), result.memAvailableAtStartBytes)
        let limit = min(available / 2, (c.sweepMemLimitMiB ?? Int.max >> 20) << 20)
        if predicted > limit {
            let why = "predicted model memory \(mib(predicted)) (\(fmt(bpp, 1)) B/page \(measuredBPP[kind] == nil ? "assumed" : "measured") +25% + 16 MiB) " +
                      "> the limit \(mib(limit)) (" + (limit < available / 2 ? "--sweep-mem-limit" : "half of MemAvailable \(mib(available))") + ")"
            skip("model", why)
            stopped[kind] = "a smaller size already exceeded the model limit"
            continue
        }
        var point: SweepPoint
        do {
            point = try measureSweepPoint(kind, x, label, pc, predicted: predicted, failures: &failures)
        } catch {
            skip("model", "could not build: \(error)")
            failures.append("sweep \(sweep.rawValue) \(kind.rawValue) \(label): the model workload could not be built")
            stopped[kind] = "a smaller size could not be built"
            continue
        }
        measuredBPP[kind] = point.bytesPerMappedPage
        // The model is freed (measureSweepPoint returned) before the real
        // workload is mapped.
        if c.kernel { kernelForPoint(sweep, kind, pc, &point) }
        printSweepPoint(point)
        if let why = point.kernelSkipped {
            result.skipped.append(SweepSkip(workload: kind.rawValue, x: x, label: label, what: "kernel", reason: why))
        }
        fflush(nil)
        result.points.append(point)
    }
    result.flatness = sweepFlatness(result)
    result.seconds = seconds(since: t0)
    printSweepSummary(result)
    return (result, failures)
}

/// Builds one point's model workload, measures it and lets it go.
func measureSweepPoint(_ kind: WorkloadKind, _ x: Int, _ label: String, _ c: Config, predicted: Int,
                       failures: inout [String]) throws -> SweepPoint {
    let rss0 = residentBytes()
    let wl = try buildModelWorkload(kind, c)
    let growth = residentBytes() - rss0
    var p = SweepPoint(workload: kind.rawValue, x: x, label: label, detail: wl.detail, pages: wl.pages, buildSeconds: wl.buildSeconds,
                       modelBytes: growth, bytesPerMappedPage: Double(growth) / Double(max(wl.pages, 1)),
                       predictedModelBytes: predicted)
    if growth > predicted {
        print("   !! \(kind.rawValue) \(label): model memory \(mib(growth)) exceeded the prediction \(mib(predicted))")
    }
    var bodies: [() -> Int] = []
    for w in sweepWorks {
        // Untimed check: callback and range batched agree (pages counted by
        // pages counted, without the callback's pte_hole gaps; producer bytes).
        let outs = sweepWalkers.map { k in
            w == .raw ? wl.spaces.map { s in (try? rawWalk(s, k).comparable) ?? [-1] }.description : String(modelRun(w, wl, k))
        }
        if Set(outs).count > 1 {
            failures.append("sweep \(kind.rawValue) \(label) \(w.rawValue): walkers disagree \(outs)")
        }
        for k in sweepWalkers { bodies.append { modelRun(w, wl, k) } }
    }
    let sums = measureInterleaved(bodies, reps: c.reps, warmup: c.warmup, minSampleNS: c.minSampleMS * 1e6)
    var i = 0
    for w in sweepWorks {
        for k in sweepWalkers {
            p.model[w.rawValue, default: [:]][k.rawValue] = sums[i]
            p.nsPerPage[w.rawValue, default: [:]][k.rawValue] = sums[i].medianNS / Double(max(wl.pages, 1))
            i += 1
        }
    }
    return p
}

/// The kernel's smaps per walk for one point, where the host can back it.
func kernelForPoint(_ sweep: SweepKind, _ kind: WorkloadKind, _ c: Config, _ p: inout SweepPoint) {
    let bytes = p.pages << Geometry.pageShift
    let limit = (memAvailableBytes() - kernelSafetyBytes) / 2
    if sweep == .sparse {
        if !hostFacts.fiveLevelPaging {
            p.kernelSkipped = "this host's kernel has 4-level paging (no la57): no user space above 2^47, model only"
            return
        }
        let maxMaps = Int((try? String(contentsOfFile: "/proc/sys/vm/max_map_count", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 65530
        if p.x + 1000 > maxMaps {
            p.kernelSkipped = "\(p.x) VMAs + this process's own > vm.max_map_count \(maxMaps)"
            return
        }
    }
    if bytes > limit {
        p.kernelSkipped = "\(mib(bytes)) of real memory > (MemAvailable - \(mib(kernelSafetyBytes))) / 2 = \(mib(max(limit, 0)))"
        return
    }
    var kc = c
    kc.works = [.smaps]
    let k = runKernel(kind, kc)
    p.kernel = k
    if let why = k.skipped { p.kernelSkipped = why; return }
    if let s = k.netPerWalk[Work.smaps.rawValue] ?? k.net[Work.smaps.rawValue], k.pages > 0 {
        p.kernelSmapsNSPerPage = s.medianNS / Double(k.pages)
    }
}

/// The series of a sweep: (workload, name, points as (x, ns/page)).
struct SweepSeries {
    var workload: String
    var work: Work
    /// nil: the kernel's smaps.
    var walker: Walker?
    var points: [(x: Int, ns: Double)]
    var name: String { "\(workload) \(work.rawValue) \(walker?.rawValue ?? "kernel per walk")" }
}

func sweepSeries(_ r: SweepResult) -> [SweepSeries] {
    var out: [SweepSeries] = []
    var workloads: [String] = []
    for p in r.points where !workloads.contains(p.workload) { workloads.append(p.workload) }
    for wl in workloads {
        let pts = r.points.filter { $0.workload == wl }
        for w in sweepWorks {
            for k in sweepWalkers {
                out.append(SweepSeries(workload: wl, work: w, walker: k,
                                       points: pts.compactMap { p in p.nsPerPage[w.rawValue]?[k.rawValue].map { (p.x, $0) } }))
            }
        }
        let kern = pts.compactMap { p in p.kernelSmapsNSPerPage.map { (p.x, $0) } }
        if !kern.isEmpty { out.append(SweepSeries(workload: wl, work: .smaps, walker: nil, points: kern)) }
    }
    return out
}

func sweepFlatness(_ r: SweepResult) -> [TargetResult] {
    sweepSeries(r).compactMap { s in
        guard s.points.count >= 2, let lo = s.points.min(by: { $0.ns < $1.ns }), let hi = s.points.max(by: { $0.ns < $1.ns }),
              lo.ns > 0 else { return nil }
        let x = hi.ns / lo.ns
        let unit = r.xUnit == "MiB" ? sizeLabel : countLabel
        let span = "\(unit(s.points.first!.x))..\(unit(s.points.last!.x)) (\(s.points.count) points)"
        return TargetResult(name: "\(r.sweep) \(s.name): max/min ns/page <= \(fmt(sweepFlatLimit, 1))", limit: sweepFlatLimit,
                            measured: x, met: x <= sweepFlatLimit,
                            detail: "\(span); min \(fmtNS(lo.ns)) at \(unit(lo.x)), max \(fmtNS(hi.ns)) at \(unit(hi.x))" +
                                    (s.walker == nil ? "; the kernel, for reference" : ""))
    }
}

// MARK: Printing

func printSweepHeader(_ sweep: SweepKind) {
    print("   ns/page (median), model bytes per mapped page; cb = callback (closures), rb = range batched")
    print("   " + pad("workload", 10) + pad(sweep == .sizes ? "size" : "VMAs", 13) + pad("pages", 10, right: true)
          + pad("B/page", 9, right: true) + pad("build s", 9, right: true)
          + pad("raw cb", 10, right: true) + pad("raw rb", 10, right: true)
          + pad("smaps cb", 10, right: true) + pad("smaps rb", 10, right: true) + pad("kern smaps", 12, right: true))
}

func printSweepPoint(_ p: SweepPoint) {
    func ns(_ w: Work, _ k: Walker) -> String { pad(fmtNS(p.nsPerPage[w.rawValue]?[k.rawValue]), 10, right: true) }
    print("   " + pad(p.workload, 10) + pad(p.label, 13) + pad(String(p.pages), 10, right: true)
          + pad(fmt(p.bytesPerMappedPage, 1), 9, right: true) + pad(fmt(p.buildSeconds, 2), 9, right: true)
          + ns(.raw, .callback) + ns(.raw, .rangeBatched) + ns(.smaps, .callback) + ns(.smaps, .rangeBatched)
          + pad(fmtNS(p.kernelSmapsNSPerPage), 12, right: true))
    if let why = p.kernelSkipped { print("   " + pad("", 23) + "kernel skipped: \(why)") }
}

func printSweepSummary(_ r: SweepResult) {
    if !r.skipped.isEmpty {
        print("   skipped:")
        for s in r.skipped { print("     \(s.workload) \(s.label) \(s.what): \(s.reason)") }
    }
    print("   flat per-page cost (max/min ns/page over the sweep <= \(fmt(r.flatLimit, 1))):")
    for t in r.flatness {
        let mark = t.met.map { $0 ? "MET   " : "MISSED" } ?? "n/a   "
        print("   [\(mark)] \(pad(t.name, 66)) \(pad(t.measured.map { fmt($0, 2) } ?? "-", 6, right: true))  (\(t.detail))")
    }
    print("   sweep \(r.sweep): \(fmt(r.seconds, 1)) s")
}
