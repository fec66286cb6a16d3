import Foundation

/// This run's bare-loop floor, ns per page (set when dense 4K runs; it runs first).
nonisolated(unsafe) var runFloorNSPerPage: Double?

/// Everything measured for one workload.
struct WorkloadResult: Codable {
    var workload: String
    var title: String
    var detail: String
    /// Virtual pages of the walked VMAs (the per-page denominator).
    var pages: Int
    var buildSeconds: Double
    var populate: PopulateFigures?
    /// The bare-loop floor (`rawFloor()`): dense 4K only.
    var floor: Summary?
    /// This run's floor in ns per page (measured with dense 4K), and every
    /// model figure of this workload as a multiple of it: work → walker →
    /// median ns/page ÷ floor.
    var floorNSPerPage: Double?
    var overFloor: [String: [String: Double]] = [:]
    /// work → walker → per-run times.
    var model: [String: [String: Summary]] = [:]
    var kernel: KernelResult?
    /// Output cross-check of the three walkers (empty: identical).
    var verification: [String]?

    func model(_ w: Work, _ k: Walker) -> Summary? { model[w.rawValue]?[k.rawValue] }

    /// Median nanoseconds per page.
    func nsPerPage(_ w: Work, _ k: Walker) -> Double? {
        model(w, k).map { $0.medianNS / Double(max(pages, 1)) }
    }
    /// The kernel per walk: smaps and numa_maps read so that the workload's
    /// records are produced once (SeqFileReads.swift); the rest as read.
    func kernelNSPerPage(_ w: Work) -> Double? {
        guard let k = kernel, k.skipped == nil, let s = k.netPerWalk[w.rawValue] ?? k.net[w.rawValue], k.pages > 0 else { return nil }
        return s.medianNS / Double(k.pages)
    }
    /// The kernel as a consumer reads (1 MiB read()s to EOF).
    func kernelAsReadNSPerPage(_ w: Work) -> Double? {
        guard let k = kernel, k.skipped == nil, let s = k.net[w.rawValue], k.pages > 0 else { return nil }
        return s.medianNS / Double(k.pages)
    }
    /// walker / callback (or / `over`), medians.
    func ratio(_ w: Work, _ k: Walker, over: Walker = .callback) -> Double? {
        guard let a = model(w, k)?.medianNS, let b = model(w, over)?.medianNS, b > 0 else { return nil }
        return a / b
    }
    func multiplesOfFloor() -> [String: [String: Double]] {
        guard let f = floorNSPerPage, f > 0 else { return [:] }
        var out: [String: [String: Double]] = [:]
        for w in Work.allCases {
            for k in Walker.allCases { if let x = nsPerPage(w, k) { out[w.rawValue, default: [:]][k.rawValue] = x / f } }
        }
        return out
    }
    /// range batched (the product) / kernel, per page.
    func oursOverKernel(_ w: Work, asRead: Bool = false) -> Double? {
        guard let a = nsPerPage(w, .rangeBatched), let b = asRead ? kernelAsReadNSPerPage(w) : kernelNSPerPage(w), b > 0 else { return nil }
        return a / b
    }
}

/// One target of the issue and whether this run meets it.
struct TargetResult: Codable {
    var name: String
    var limit: Double
    var measured: Double?
    var met: Bool?
    var detail: String
}

struct MachineInfo: Codable {
    var kernel: String
    var cpus: Int
    var memoryGiB: Double
    var loadAverage: [Double]
    var cpuModel: String
    /// The host facts that change /proc bytes (pkeys, THP modes, paging
    /// levels, vsyscall), as the model producers were set to match.
    var host: String
}

struct Report: Codable {
    var command: String
    var machine: MachineInfo
    var method: String
    var reps: Int
    var warmup: Int
    var minSampleMS: Double
    var totalSeconds: Double
    var workloads: [WorkloadResult]
    var targets: [TargetResult]
    /// [work][workload] ratios, for convenience.
    var rangeOverCallback: [String: [String: [String: Double]]]
    /// [range walker][work][workload] over the specialized callback.
    var rangeOverSpecializedCallback: [String: [String: [String: Double]]]
    var oursOverKernel: [String: [String: Double]]
    /// `--sweep`: cost as the work grows (Sweep.swift).
    var sweeps: [SweepResult]?
}

func machineInfo() -> MachineInfo {
    var u = utsname()
    uname(&u)
    let release = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    var loads = [Double](repeating: 0, count: 3)
    _ = getloadavg(&loads, 3)
    let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
        .map { String($0.split(separator: ":", maxSplits: 1).last ?? "").trimmingCharacters(in: .whitespaces) } ?? "?"
    return MachineInfo(kernel: release, cpus: ProcessInfo.processInfo.activeProcessorCount,
                       memoryGiB: Double(ProcessInfo.processInfo.physicalMemory) / Double(1 << 30),
                       loadAverage: loads, cpuModel: model, host: hostFacts.summary)
}

func evaluateTargets(_ results: [WorkloadResult]) -> [TargetResult] {
    var out: [TargetResult] = []
    let by = Dictionary(results.map { ($0.workload, $0) }, uniquingKeysWith: { a, _ in a })
    for walker in [Walker.rangeBatched, .rangeUnbatched] {
        var worst: (Double, String)?
        var misses: [String] = []
        for r in results {
            for w in Work.allCases {
                guard let x = r.ratio(w, walker) else { continue }
                if worst == nil || x > worst!.0 { worst = (x, "\(r.workload) \(w.rawValue)") }
                if x > 1.0 { misses.append("\(r.workload) \(w.rawValue) \(fmt(x, 2))") }
            }
        }
        out.append(TargetResult(name: "\(walker.rawValue) / callback <= 1.00, every workload and work", limit: 1.0,
                                measured: worst?.0, met: worst.map { $0.0 <= 1.0 },
                                detail: worst.map { "worst: \($0.1)" + (misses.isEmpty ? "" : "; over: " + misses.joined(separator: ", ")) } ?? "not run"))
    }
    do {
        var worst: (Double, String)?
        var misses: [String] = []
        for r in results {
            for w in Work.allCases {
                guard let x = r.ratio(w, .rangeBatched, over: .specialized) else { continue }
                if worst == nil || x > worst!.0 { worst = (x, "\(r.workload) \(w.rawValue)") }
                if x > 1.0 { misses.append("\(r.workload) \(w.rawValue) \(fmt(x, 2))") }
            }
        }
        out.append(TargetResult(name: "range <= specialized callback on every workload and work", limit: 1.0,
                                measured: worst?.0, met: worst.map { $0.0 <= 1.0 },
                                detail: worst.map { "range batched / specialized callback, worst: \($0.1)" + (misses.isEmpty ? "" : "; over: " + misses.joined(separator: ", ")) } ?? "not run"))
    }
    func one(_ name: String, _ limit: Double, _ value: Double?, _ detail: String) {
        out.append(TargetResult(name: name, limit: limit, measured: value, met: value.map { $0 <= limit }, detail: value == nil ? "not run" : detail))
    }
    let m64 = by[WorkloadKind.mthp64.rawValue], dense = by[WorkloadKind.dense.rawValue]
    one("smaps mTHP 64K: range batched / callback <= 0.25", 0.25, m64?.ratio(.smaps, .rangeBatched), "ratio of medians")
    func asRead(_ r: WorkloadResult?, _ w: Work) -> String {
        "; as read " + (r?.oursOverKernel(w, asRead: true).map { fmt($0, 3) } ?? "-")
    }
    one("ours/kernel smaps dense 4K <= 0.5 (per walk)", 0.5, dense?.oursOverKernel(.smaps),
        "range batched vs /proc/self/smaps, workload record produced once, ns per page" + asRead(dense, .smaps))
    one("ours/kernel smaps mTHP 64K <= 0.1 (per walk)", 0.1, m64?.oursOverKernel(.smaps),
        "range batched vs /proc/self/smaps, workload record produced once, ns per page" + asRead(m64, .smaps))
    one("ours/kernel pagemap dense 4K <= 0.25 (per walk)", 0.25, dense?.oursOverKernel(.pagemap), "range batched vs pread /proc/self/pagemap, ns per page")
    for w in Work.writers {
        var worst: (Double, String)?
        for r in results { if let x = r.oursOverKernel(w), worst == nil || x > worst!.0 { worst = (x, r.workload) } }
        one("ours/kernel \(w.rawValue) <= 0.5, every workload", 0.5, worst?.0,
            "range (update walk) vs the kernel on real memory, ns per page; worst: \(worst?.1 ?? "-")")
    }
    var worstPagemap: (Double, String)?
    for r in results { if let x = r.oursOverKernel(.pagemap), worstPagemap == nil || x > worstPagemap!.0 { worstPagemap = (x, r.workload) } }
    one("ours/kernel pagemap <= 0.25 per walk, every workload", 0.25, worstPagemap?.0,
        "range batched vs pread /proc/self/pagemap (no seq_file: one walk per read); worst: \(worstPagemap?.1 ?? "-")")
    let floor = dense?.floor.map { $0.medianNS / Double(max(dense!.pages, 1)) }
    one("raw range walk (batched) dense 4K <= 1.5x floor", 1.5, dense?.overFloor[Work.raw.rawValue]?[Walker.rangeBatched.rawValue],
        "median ns/page over the bare-loop floor of the same rounds" + (floor.map { " (\(fmtNS($0)) ns/page)" } ?? ""))
    one("raw range walk (batched) dense 4K <= 1 ns/page", 1.0, dense?.nsPerPage(.raw, .rangeBatched),
        "median ns per page" + (floor.map { "; bare-loop floor \(fmtNS($0)) ns/page" } ?? ""))
    return out
}

func fmt(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }

/// A time per page: 3 significant figures.
func fmtNS(_ x: Double?) -> String {
    guard let x else { return "-" }
    if x >= 100 { return String(format: "%.0f", x) }
    if x >= 10 { return String(format: "%.1f", x) }
    if x >= 1 { return String(format: "%.2f", x) }
    return String(format: "%.3f", x)
}

func pad(_ s: String, _ n: Int, right: Bool = false) -> String {
    s.count >= n ? s : (right ? String(repeating: " ", count: n - s.count) + s : s + String(repeating: " ", count: n - s.count))
}

/// "median ±spread%": spread = (max − min) / median.
func cell(_ s: Summary?, pages: Int) -> String {
    guard let s else { return "-" }
    return fmtNS(s.medianNS / Double(max(pages, 1))) + " ±" + String(format: "%.0f%%", 50 * s.spread)
}

func printWorkload(_ r: WorkloadResult) {
    print("")
    print("== \(r.workload): \(r.title) — \(r.detail)")
    print("   \(r.pages) pages walked; model built in \(fmt(r.buildSeconds, 2)) s" +
          (r.verification.map { $0.isEmpty ? "; walkers cross-checked: identical counts and bytes" : "; CROSS-CHECK FAILED" } ?? ""))
    for p in r.verification ?? [] { print("   !! \(p)") }
    if let k = r.kernel {
        if let s = k.skipped { print("   kernel: skipped — \(s)") }
        else { print("   kernel: \(k.pages) pages, set up in \(fmt(k.setupSeconds, 1)) s; " + k.notes.joined(separator: "; ")) }
    }
    print("   " + pad("ns/page, median ±half-range", 15 + 5 * 16) + "  ratios (medians)")
    print("   " + pad("work", 15) + pad("callback", 16) + pad("spec. callback", 16) + pad("range batched", 16) + pad("range unbatch.", 16)
          + pad("kernel/walk", 16) + pad("rb/cb", 7, right: true) + pad("ru/cb", 7, right: true)
          + pad("rb/scb", 7, right: true) + pad("ru/scb", 7, right: true) + pad("ours/kern", 10, right: true))
    for w in Work.allCases {
        let kernelCell: String
        if w == .raw { kernelCell = "-" }
        else if let k = r.kernel, k.skipped == nil, let s = k.netPerWalk[w.rawValue] ?? k.net[w.rawValue] { kernelCell = cell(s, pages: k.pages) }
        else { kernelCell = "-" }
        let line = pad(w.rawValue, 15)
            + pad(cell(r.model(w, .callback), pages: r.pages), 16)
            + pad(cell(r.model(w, .specialized), pages: r.pages), 16)
            + pad(cell(r.model(w, .rangeBatched), pages: r.pages), 16)
            + pad(cell(r.model(w, .rangeUnbatched), pages: r.pages), 16)
            + pad(kernelCell, 16)
            + pad(r.ratio(w, .rangeBatched).map { fmt($0, 2) } ?? "-", 7, right: true)
            + pad(r.ratio(w, .rangeUnbatched).map { fmt($0, 2) } ?? "-", 7, right: true)
            + pad(r.ratio(w, .rangeBatched, over: .specialized).map { fmt($0, 2) } ?? "-", 7, right: true)
            + pad(r.ratio(w, .rangeUnbatched, over: .specialized).map { fmt($0, 2) } ?? "-", 7, right: true)
            + pad(r.oursOverKernel(w).map { fmt($0, 3) } ?? "-", 10, right: true)
        print("   " + line)
    }
    if let k = r.kernel, k.skipped == nil {
        for w in [Work.smaps, .numaMaps] {
            guard let rep = k.seqFile[w.rawValue] else { continue }
            print("   kernel \(w.rawValue): as read \(cell(k.net[w.rawValue], pages: k.pages)), per walk \(cell(k.netPerWalk[w.rawValue], pages: k.pages)) ns/page " +
                  "(ours/kernel \(r.oursOverKernel(w, asRead: true).map { fmt($0, 3) } ?? "-") as read, \(r.oursOverKernel(w).map { fmt($0, 3) } ?? "-") per walk)")
            print("     seq_file: " + rep.summary)
        }
    }
    if let f = r.floor {
        print("   floor: \(fmtNS(f.medianNS / Double(max(r.pages, 1)))) ns/page ±\(fmt(f.spread * 50, 0))% — a bare loop reading each present PTE " +
              "and its memmap record, no entries, no locks (what any walk resolving each page's folio must read)")
    }
    if let f = r.floorNSPerPage, !r.overFloor.isEmpty {
        print("   × floor (\(fmtNS(f)) ns/page; median ÷ floor, ±half-range of the figure):")
        for w in Work.allCases {
            guard let m = r.overFloor[w.rawValue] else { continue }
            let cells = Walker.allCases.compactMap { k -> String? in
                guard let x = m[k.rawValue], let s = r.model(w, k) else { return nil }
                return "\(k.rawValue) \(fmt(x, 2))× ±\(fmt(s.spread * 50, 0))%"
            }
            print("     " + pad(w.rawValue, 15) + cells.joined(separator: ", "))
        }
    }
    if let p = r.populate {
        print("   populate: \(p.pages) pages in \(fmt(p.seconds, 3)) s = \(fmt(p.pagesPerSecond / 1e6, 2)) M pages/s; " +
              "\(fmt(p.bytesPerMappedPage, 1)) bytes per mapped page (RSS growth \(p.rssGrowthBytes >> 20) MiB)")
    }
}

func printSummary(_ results: [WorkloadResult], _ targets: [TargetResult]) {
    print("")
    print("== Ratios (medians). rb/cb, ru/cb: range batched / unbatched over callback; ours/kern: range batched over the kernel, per page")
    let works = Work.allCases
    print("   " + pad("workload", 11) + works.map { pad($0.rawValue, 13, right: true) }.joined() + "    ours/kern:" + Work.kernelMeasured.map { pad($0.rawValue, 13, right: true) }.joined())
    for r in results {
        var line = pad(r.workload, 11)
        for w in works {
            let a = r.ratio(w, .rangeBatched).map { fmt($0, 2) } ?? "-"
            let b = r.ratio(w, .rangeUnbatched).map { fmt($0, 2) } ?? "-"
            line += pad("\(a)/\(b)", 13, right: true)
        }
        line += "              "
        for w in Work.kernelMeasured { line += pad(r.oursOverKernel(w).map { fmt($0, 3) } ?? "-", 13, right: true) }
        print("   " + line)
    }
    print("")
    print("== Targets")
    for t in targets {
        let mark = t.met.map { $0 ? "MET   " : "MISSED" } ?? "n/a   "
        let value = t.measured.map { fmt($0, 3) } ?? "-"
        print("   [\(mark)] \(pad(t.name, 58)) measured \(pad(value, 7, right: true))  (\(t.detail))")
    }
}
