import Foundation
#if canImport(Glibc)
import Glibc
#endif

// pagewalk-bench: the callback walker, the range walker (batched and
// unbatched) and the running kernel over the same page-table shapes, in one
// run. See README.md ("Benchmark") for the method.

let config = Config.parse(CommandLine.arguments)
installCleanupHandlers()
if config.wallClock { timingClock = CLOCK_MONOTONIC }
let started = nanoseconds()
let machine = machineInfo()
let command = CommandLine.arguments.joined(separator: " ")
#if DEBUG
print("warning: debug build — run `swift run -c release pagewalk-bench` for meaningful figures")
#endif
print("pagewalk-bench: Linux \(machine.kernel), \(machine.cpus) CPUs (\(machine.cpuModel)), \(fmt(machine.memoryGiB, 1)) GiB, " +
      "load \(machine.loadAverage.map { fmt($0, 2) }.joined(separator: " "))")
print("pagewalk-bench: host \(machine.host)")
print("method: \(config.warmup) warm-up run(s), \(config.reps) timed samples per figure (each ≥ \(fmt(config.minSampleMS, 0)) ms, " +
      "short runs repeated inside a sample), walkers interleaved sample by sample, \(config.wallClock ? "wall clock" : "thread CPU time (user+system)"); median and ±half of (max−min)")

var results: [WorkloadResult] = []
/// What makes the run a failure (exit status 1, after everything is printed):
/// walkers that disagree, a workload that could not be built, an output
/// file that could not be written. Speed never does.
var failures: [String] = []
for kind in config.workloads {
    var r: WorkloadResult
    do {
        let wl = try buildModelWorkload(kind, config)
        r = WorkloadResult(workload: kind.rawValue, title: kind.title, detail: wl.detail, pages: wl.pages,
                           buildSeconds: wl.buildSeconds, populate: wl.populate)
        if config.verify { r.verification = verifyWalkers(wl) }
        let minNS = config.minSampleMS * 1e6
        for work in config.works where !work.isWriter || kind.runsWriters {
            let walkers = Walker.walkers(for: work)
            var bodies = walkers.map { k in { modelRun(work, wl, k) } }
            // The floor (dense 4K) in the raw walks' rounds, so that a slow
            // phase hits it and them alike.
            let withFloor = kind == .dense && work == .raw
            if withFloor { bodies.append { wl.spaces.reduce(0) { $0 &+ rawFloor($1) } } }
            let sums = measureInterleaved(bodies, reps: config.reps, warmup: config.warmup, minSampleNS: minNS)
            r.model[work.rawValue] = Dictionary(uniqueKeysWithValues: zip(walkers.map(\.rawValue), sums))
            if withFloor {
                r.floor = sums.last
                runFloorNSPerPage = sums.last!.medianNS / Double(max(wl.pages, 1))
            }
        }
        r.floorNSPerPage = runFloorNSPerPage
        r.overFloor = r.multiplesOfFloor()
    } catch {
        print("\n== \(kind.rawValue): could not build the model workload: \(error)")
        failures.append("\(kind.rawValue): the model workload could not be built")
        continue
    }
    // The model is gone before the kernel's turn (its arenas are mappings of
    // this process too, and would be walked by /proc/self/smaps).
    if config.kernel { r.kernel = runKernel(kind, config) }
    printWorkload(r)
    fflush(nil)
    for problem in r.verification ?? [] { failures.append("\(kind.rawValue): \(problem)") }
    results.append(r)
}

var sweeps: [SweepResult] = []
for sweep in config.sweeps {
    let (r, problems) = runSweep(sweep, config)
    sweeps.append(r)
    failures += problems
}

let targets = evaluateTargets(results)
if !results.isEmpty { printSummary(results, targets) }
let total = seconds(since: started)
print("\ntotal \(fmt(total, 1)) s")

var rc: [String: [String: [String: Double]]] = [:]
var rs: [String: [String: [String: Double]]] = [:]
var ok: [String: [String: Double]] = [:]
for r in results {
    for w in Work.allCases {
        for k in [Walker.rangeBatched, .rangeUnbatched, .specialized] {
            if let x = r.ratio(w, k) { rc[k.rawValue, default: [:]][w.rawValue, default: [:]][r.workload] = x }
        }
        for k in [Walker.rangeBatched, .rangeUnbatched] {
            if let x = r.ratio(w, k, over: .specialized) { rs[k.rawValue, default: [:]][w.rawValue, default: [:]][r.workload] = x }
        }
        if let x = r.oursOverKernel(w) { ok[w.rawValue, default: [:]][r.workload] = x }
    }
}
let report = Report(command: command, machine: machine,
                    method: "release build; per figure \(config.warmup) warm-up runs and \(config.reps) timed samples, walkers interleaved; timed by \(config.wallClock ? "the wall clock" : "the thread's CPU time (CLOCK_THREAD_CPUTIME_ID: user + system, so the kernel's work inside read() counts and competing processes do not)"); median, min/max, quartiles in ns per run; per-page figures divide by the workload's virtual pages; floor multiples divide ns/page by the bare-loop floor of this run (dense 4K); kernel figures are whole-file reads of /proc/self/{smaps,smaps_rollup,numa_maps} (smaps and numa_maps also per walk: read() requests planned so that each workload record is produced once, seqFile has the proof) minus, sample by sample, the same read of /proc/PID/... of a paused copy of the process forked before the workload was mapped (baseline), and pread of /proc/self/pagemap over the workload's ranges",
                    reps: config.reps, warmup: config.warmup, minSampleMS: config.minSampleMS, totalSeconds: total,
                    workloads: results, targets: targets, rangeOverCallback: rc, rangeOverSpecializedCallback: rs, oursOverKernel: ok,
                    sweeps: sweeps.isEmpty ? nil : sweeps)
if let path = config.jsonPath {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
    do {
        try enc.encode(report).write(to: URL(fileURLWithPath: path))
        print("json: \(path)")
    } catch { failures.append("could not write \(path): \(error)") }
}
@MainActor func writeSVG(_ svg: String, _ path: String) {
    do {
        try svg.write(toFile: path, atomically: true, encoding: .utf8)
        print("svg: \(path)")
    } catch { failures.append("could not write \(path): \(error)") }
}
let chartTitle = "pagewalk-bench — Linux \(machine.kernel), \(machine.cpus) CPUs"
// --svg with sweeps alone writes the sweep chart.
let sweepSVGPath = config.sweepSVGPath ?? (results.isEmpty ? config.svgPath : nil)
if let path = config.svgPath, !results.isEmpty {
    writeSVG(svgChart(results, targets, title: "\(chartTitle), \(config.quick ? "quick" : "full") run"), path)
}
if let path = sweepSVGPath, !sweeps.isEmpty {
    writeSVG(sweepChart(sweeps, title: "\(chartTitle): cost as the work grows"), path)
}
if !failures.isEmpty {
    printError("pagewalk-bench: failed run:\n" + failures.map { "  \($0)\n" }.joined())
    exit(1)
}
