#if canImport(Glibc)
import Glibc
#endif

/// Monotonic nanoseconds (wall clock).
@inline(__always)
func nanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// The clock samples are timed with: the thread's CPU time (user + system,
/// so the kernel's work in our read() calls counts) by default, which other
/// processes competing for the CPUs do not inflate; or the wall clock.
nonisolated(unsafe) var timingClock: clockid_t = CLOCK_THREAD_CPUTIME_ID

@inline(__always)
func sampleClock() -> UInt64 {
    var ts = timespec()
    clock_gettime(timingClock, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func seconds(since t0: UInt64) -> Double { Double(nanoseconds() - t0) / 1e9 }

/// Summary of the samples of one measurement: nanoseconds per run (one run
/// is one whole walk or one whole `/proc` read).
struct Summary: Codable {
    var samplesNS: [Double]
    var medianNS: Double
    var minNS: Double
    var maxNS: Double
    var q1NS: Double
    var q3NS: Double
    /// Runs inside one timed sample (short runs are repeated).
    var runsPerSample: Int

    init(_ samples: [Double], runsPerSample: Int) {
        let s = samples.sorted()
        samplesNS = samples
        self.runsPerSample = runsPerSample
        medianNS = Summary.quantile(s, 0.5)
        q1NS = Summary.quantile(s, 0.25)
        q3NS = Summary.quantile(s, 0.75)
        minNS = s.first ?? 0
        maxNS = s.last ?? 0
    }

    /// Linear interpolation between closest ranks.
    static func quantile(_ s: [Double], _ q: Double) -> Double {
        guard !s.isEmpty else { return 0 }
        let x = q * Double(s.count - 1)
        let lo = Int(x.rounded(.down)), hi = Int(x.rounded(.up))
        return s[lo] + (s[hi] - s[lo]) * (x - Double(lo))
    }

    /// (max - min) / median: the spread shown in the table.
    var spread: Double { medianNS > 0 ? (maxNS - minNS) / medianNS : 0 }
}

/// Keeps results alive so the optimiser cannot drop the work.
nonisolated(unsafe) var blackHole = 0

/// Measures several bodies interleaved: after `warmup` untimed runs each,
/// every round times each body once, so slow phases of a noisy machine hit
/// all of them alike. A body shorter than `minSampleNS` is run several times
/// per sample and the sample divided back to one run.
func measureInterleaved(_ bodies: [() -> Int], reps: Int, warmup: Int, minSampleNS: Double) -> [Summary] {
    var inner = [Int](repeating: 1, count: bodies.count)
    for (k, body) in bodies.enumerated() {
        for _ in 0..<warmup { blackHole &+= body() }
        // Calibration (warm): how many runs make one sample of minSampleNS.
        let t0 = sampleClock()
        blackHole &+= body()
        let t = Double(sampleClock() - t0)
        inner[k] = Swift.max(1, Int((minSampleNS / Swift.max(t, 1)).rounded(.up)))
    }
    var samples = [[Double]](repeating: [], count: bodies.count)
    for _ in 0..<reps {
        for (k, body) in bodies.enumerated() {
            let n = inner[k]
            let t0 = sampleClock()
            for _ in 0..<n { blackHole &+= body() }
            samples[k].append(Double(sampleClock() - t0) / Double(n))
        }
    }
    return samples.enumerated().map { Summary($0.element, runsPerSample: inner[$0.offset]) }
}

/// Resident set size of this process in bytes (`/proc/self/statm`).
func residentBytes() -> Int {
    guard let f = fopen("/proc/self/statm", "r") else { return 0 }
    defer { fclose(f) }
    var size = 0, resident = 0
    withUnsafeMutablePointer(to: &size) { s in
        withUnsafeMutablePointer(to: &resident) { r in
            _ = withVaList([s, r]) { vfscanf(f, "%ld %ld", $0) }
        }
    }
    return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
}
