#if canImport(Glibc)
import Glibc
#endif

/// The workloads the benchmark knows, in run order.
enum WorkloadKind: String, CaseIterable, Codable {
    case dense = "dense-4k"
    case thp = "thp-pmd"
    case mthp64 = "mthp-64k"
    case mthpMix = "mthp-mix"
    case sparse = "sparse"
    case swap = "swap-half"
    case scenario = "scenario"
    case snapshot = "snapshot"

    var title: String {
        switch self {
        case .dense: return "dense anonymous 4K"
        case .thp: return "PMD THP (2M)"
        case .mthp64: return "mTHP 64K"
        case .mthpMix: return "mTHP mix 16K-256K"
        case .sparse: return "sparse VMAs over 47 bits"
        case .swap: return "half swapped out"
        case .scenario: return "embedded default scenario"
        case .snapshot: return "snapshot directory"
        }
    }

    /// Whether the writers run here: on the fully populated shapes only
    /// (mlock populates, so elsewhere it would change the workload; the
    /// scenario's guard pages make mlock fail with ENOMEM, as on Linux).
    var runsWriters: Bool { [.dense, .thp, .mthp64, .mthpMix].contains(self) }
}

/// Command-line configuration.
struct Config {
    var sizes: [WorkloadKind: Int] = [:]   // MiB per workload
    var sparseVMAs = 1000
    var sparseKiB = 64
    /// The sparse workload in the 5-level (57-bit) geometry, VMAs below 2^56
    /// (the sparse sweep); otherwise 4-level, below 2^47.
    var sparseFiveLevel = false
    var sparseUserBits: Int { sparseFiveLevel ? 56 : 47 }
    /// The sweeps to run (Sweep.swift); they replace the workloads unless
    /// `--only` names some.
    var sweeps: [SweepKind] = []
    /// Largest size of the size sweep, MiB (and the memory limit still applies).
    var sweepMaxMiB = 64 << 10
    /// Largest VMA count of the sparse sweep.
    var sweepMaxVMAs = 100_000
    var sweepSVGPath: String?
    /// A lower cap on the sweeps' model memory than half of MemAvailable, MiB.
    var sweepMemLimitMiB: Int?
    var snapshot: String?
    var workloads: [WorkloadKind] = WorkloadKind.allCases.filter { $0 != .snapshot }
    var reps = 7
    var warmup = 2
    /// Smallest timed sample: short walks are repeated inside one sample.
    var minSampleMS = 5.0
    var works: [Work] = Work.allCases
    var wallClock = false
    var kernel = true
    var verify = true
    var quick = false
    var jsonPath: String?
    var svgPath: String?
    var seed: UInt64 = 0x5eed_2026

    static let defaultMiB = 2048
    static let quickMiB = 64

    func size(_ w: WorkloadKind) -> Int { sizes[w] ?? (quick ? Config.quickMiB : Config.defaultMiB) }

    static let usage = """
    usage: pagewalk-bench [options]

    Runs callback walker, range walker (batched and unbatched) and the real
    kernel over the same page-table shapes, in one run, on one machine.

    workloads (sizes in MiB of populated anonymous memory; default 2048):
      --dense MiB  --thp MiB  --mthp MiB  --mix MiB  --swap MiB
                                 dense 4K, PMD THP, mTHP 64K, mTHP 16K-256K
                                 mix, 2 MiB..: half swapped out
      --size MiB                 all of the above at once
      --sparse-vmas N            sparse workload: N VMAs (default 1000) ...
      --sparse-kib K             ... of K KiB each, fully populated (default 64)
      --snapshot DIR             also run a captured snapshot directory
      --only a,b,...             run only these workloads (names below)
      --skip a,b,...             skip these workloads
      names: \(WorkloadKind.allCases.map(\.rawValue).joined(separator: ", "))

    method:
      --reps N                   timed samples per measurement (default 7)
      --warmup N                 untimed runs first (default 2)
      --min-sample-ms MS         repeat short runs within a sample (default 5)
      --wall                     time with the wall clock (default: the thread's CPU
                                 time, user + system, which competing processes on
                                 a shared machine do not inflate)
      --quick                    64 MiB workloads, 200 sparse VMAs, 3 reps, 1 warm-up
      --works a,b,...            only these works: raw, smaps, smaps_rollup, numa_maps, pagemap,
                                 clear_refs, mincore, mlock+munlock, madv_cold
      --no-kernel                skip the real-kernel row
      --no-verify                skip the output cross-check of the walkers

    output:
      --json FILE                every figure as JSON
      --svg FILE                 bar chart of the ratios (with --sweep alone: the sweep chart)

    cost as the work grows (not run by default; replace the workloads unless --only is given):
      --sweep sizes,sparse       sizes: dense 4K, PMD THP and mTHP 64K of 64 MiB, 256 MiB, ... x4 ...
                                 64 GiB (raw walk and smaps, callback and range batched, the kernel's
                                 smaps per walk, model bytes per mapped page); the model stays under
                                 half of MemAvailable (predicted from the bytes per page measured at
                                 the smaller sizes), the kernel row under (MemAvailable - 2 GiB) / 2;
                                 larger sizes are skipped with the reason printed.
                                 sparse: 1,000, 10,000, 100,000 VMAs of --sparse-kib KiB over the
                                 57-bit 5-level space (kernel row only on a la57 host).
                                 MET/MISSED per walker, work and workload: max/min ns/page <= \(fmt(sweepFlatLimit, 1))
      --sweep-max MiB            largest size of the size sweep (default 65536; --quick: 256)
      --sweep-max-vmas N         largest VMA count of the sparse sweep (default 100000; --quick: 10000)
      --sweep-mem-limit MiB      cap the sweeps' model memory lower than half of MemAvailable
      --sweep-svg FILE           line plots of ns/page and model bytes per page against size
    """

    static func parse(_ args: [String]) -> Config {
        var c = Config()
        var i = 1
        func value(_ name: String) -> String {
            guard i + 1 < args.count else { fail("\(name) needs a value") }
            i += 1
            return args[i]
        }
        func int(_ name: String) -> Int {
            let v = value(name)
            guard let n = Int(v), n > 0 else { fail("\(name): '\(v)' is not a positive integer") }
            return n
        }
        func names(_ name: String) -> [WorkloadKind] {
            value(name).split(separator: ",").map { s in
                guard let w = WorkloadKind(rawValue: String(s)) else { fail("\(name): unknown workload '\(s)'") }
                return w
            }
        }
        // --quick first, so explicit flags override it wherever they appear.
        if args.contains("--quick") {
            c.quick = true; c.reps = 3; c.warmup = 1; c.sparseVMAs = 200; c.minSampleMS = 2
            c.sweepMaxMiB = 256; c.sweepMaxVMAs = 10_000
        }
        var only: [WorkloadKind]?
        var skip: [WorkloadKind] = []
        while i < args.count {
            let a = args[i]
            switch a {
            case "--quick": break
            case "--dense": c.sizes[.dense] = int(a)
            case "--thp": c.sizes[.thp] = int(a)
            case "--mthp": c.sizes[.mthp64] = int(a)
            case "--mix": c.sizes[.mthpMix] = int(a)
            case "--swap": c.sizes[.swap] = int(a)
            case "--size":
                let n = int(a)
                for w in [WorkloadKind.dense, .thp, .mthp64, .mthpMix, .swap] { c.sizes[w] = n }
            case "--sparse-vmas": c.sparseVMAs = int(a)
            case "--sparse-kib": c.sparseKiB = int(a)
            case "--snapshot": c.snapshot = value(a)
            case "--only": only = names(a)
            case "--skip": skip = names(a)
            case "--reps": c.reps = int(a)
            case "--warmup":
                let v = value(a)
                guard let n = Int(v), n >= 0 else { fail("--warmup: '\(v)' is not a count") }
                c.warmup = n
            case "--min-sample-ms":
                let v = value(a)
                guard let n = Double(v), n >= 0 else { fail("--min-sample-ms: '\(v)' is not a number") }
                c.minSampleMS = n
            case "--works":
                c.works = value(a).split(separator: ",").map { s in
                    guard let w = Work.allCases.first(where: { $0.rawValue == s || $0.rawValue.hasPrefix(s) }) else {
                        fail("--works: unknown work '\(s)' (raw, smaps, smaps_rollup, numa_maps, pagemap, clear_refs, mincore, mlock+munlock, madv_cold)")
                    }
                    return w
                }
            case "--wall": c.wallClock = true
            case "--no-kernel": c.kernel = false
            case "--no-verify": c.verify = false
            case "--json": c.jsonPath = value(a)
            case "--svg": c.svgPath = value(a)
            case "--sweep":
                c.sweeps = value(a).split(separator: ",").flatMap { s -> [SweepKind] in
                    if s == "all" { return SweepKind.allCases }
                    guard let k = SweepKind(rawValue: String(s)) else { fail("--sweep: unknown sweep '\(s)' (sizes, sparse, all)") }
                    return [k]
                }
            case "--sweep-max": c.sweepMaxMiB = int(a)
            case "--sweep-max-vmas": c.sweepMaxVMAs = int(a)
            case "--sweep-svg": c.sweepSVGPath = value(a)
            case "--sweep-mem-limit": c.sweepMemLimitMiB = int(a)
            case "-h", "--help": print(usage); exit(0)
            default: fail("unknown option '\(a)'")
            }
            i += 1
        }
        if c.sparseKiB % 4 != 0 { fail("--sparse-kib must be a multiple of 4") }
        if (c.sizes[.mthpMix] ?? 2) < 2 { fail("--mix needs at least 2 MiB") }
        var list = only ?? (c.sweeps.isEmpty ? WorkloadKind.allCases.filter { $0 != .snapshot } : [])
        if c.snapshot != nil && only == nil && c.sweeps.isEmpty { list.append(.snapshot) }
        if list.contains(.snapshot) && c.snapshot == nil { fail("the snapshot workload needs --snapshot DIR") }
        c.workloads = list.filter { !skip.contains($0) }
        return c
    }
}

func fail(_ message: String) -> Never {
    printError("pagewalk-bench: \(message)\n\n\(Config.usage)\n")
    exit(2)
}

/// Writes to standard error (fd 2).
func printError(_ s: String) {
    var s = s
    s.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
