#if canImport(Glibc)
import Glibc
#endif
import KernelSnapshot
import MemoryModel
import LiveKernel

/// The real kernel's figures for one workload.
struct KernelResult: Codable {
    /// Why there is no kernel row (not Linux, a shape the kernel would not
    /// build here, a workload that cannot be recreated).
    var skipped: String?
    var notes: [String] = []
    var pages = 0
    var setupSeconds = 0.0
    /// Whole-file reads of a paused copy of this process forked before the
    /// workload was mapped (what the rest of the process costs), per producer.
    var baseline: [String: Summary] = [:]
    /// Reads of /proc/self with the workload mapped.
    var measured: [String: Summary] = [:]
    /// measured − baseline, sample by sample (they are read in the same
    /// round): the workload's share per run. pagemap: measured as is.
    var net: [String: Summary] = [:]
    /// smaps and numa_maps read so that each workload record is produced
    /// once (SeqFileReads.swift): our reads, and minus the baseline.
    var measuredPerWalk: [String: Summary] = [:]
    var netPerWalk: [String: Summary] = [:]
    /// How the seq_file buffer cut the files, with the proof.
    var seqFile: [String: SeqFileReport] = [:]
}

/// The live mappings of the current kernel workload, torn down on exit and
/// on SIGINT/SIGTERM so that no sysfs knob or swap file is left behind.
nonisolated(unsafe) var activeLive: LiveMappings?

func installCleanupHandlers() {
    atexit { activeSibling?.stop(); unmapRegistered(); activeLive?.tearDown() }
    let handler: @convention(c) (Int32) -> Void = { sig in
        activeSibling?.stop()
        let failures = activeLive?.tearDown() ?? []
        for f in failures { printError("pagewalk-bench: cleanup: \(f)\n") }
        _exit(128 + sig)
    }
    signal(SIGINT, handler)
    signal(SIGTERM, handler)
}

// MARK: Reading /proc/self the way a consumer does

/// Scratch buffer for whole-file reads (bytes are counted, not kept).
nonisolated(unsafe) let readBuffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: Geometry.pageBytes)
let readBufferSize = 1 << 20

/// open + read to EOF + close; returns bytes read.
func readWhole(_ path: String) -> Int {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { fail("open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var total = 0
    while true {
        let n = read(fd, readBuffer, readBufferSize)
        if n < 0 { if errno == EINTR { continue }; fail("read \(path): \(String(cString: strerror(errno)))") }
        if n == 0 { return total }
        total += n
    }
}

/// open /proc/self/pagemap, pread the words of every range, close.
func readPagemap(_ ranges: [Range<UInt64>]) -> Int {
    let fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { fail("open /proc/self/pagemap: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var total = 0
    for r in ranges {
        var offset = Int(r.lowerBound >> Geometry.pageShift) * 8
        var left = Int((r.upperBound - r.lowerBound) >> Geometry.pageShift) * 8
        while left > 0 {
            let n = pread(fd, readBuffer, Swift.min(left, readBufferSize), offset)
            if n < 0 { if errno == EINTR { continue }; fail("pread pagemap: \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            total += n; left -= n; offset += n
        }
    }
    return total
}

/// One timed kernel read for a producer.
func kernelRead(_ work: Work, _ ranges: [Range<UInt64>]) -> Int {
    switch work {
    case .raw: return 0
    case .smaps: return readWhole("/proc/self/smaps")
    case .smapsRollup: return readWhole("/proc/self/smaps_rollup")
    case .numaMaps: return readWhole("/proc/self/numa_maps")
    case .pagemap: return readPagemap(ranges)
    case .clearRefs, .mincore, .mlock, .madvCold: return kernelRead(work, pid: nil, ranges)
    }
}

/// pagemap words of a range (for checking what the kernel built).
func pagemapWords(_ r: Range<UInt64>) -> [UInt64] {
    var words = [UInt64](repeating: 0, count: Int((r.upperBound - r.lowerBound) >> Geometry.pageShift))
    let fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return words }
    defer { close(fd) }
    _ = words.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, Int(r.lowerBound >> Geometry.pageShift) * 8) }
    return words
}

// MARK: THP knobs

let thpDir = LiveMappings.thpDirectory

/// The per-size THP directories' sizes in KiB (16, 32, …, 2048).
func thpSizesKB() -> [Int] {
    // Only sizes with an anonymous `enabled` knob (some list shmem/file only).
    guard let d = opendir(thpDir) else { return [] }
    defer { closedir(d) }
    var sizes: [Int] = []
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name.hasPrefix("hugepages-"), name.hasSuffix("kB"), let n = Int(name.dropFirst(10).dropLast(2)),
           access("\(thpDir)/\(name)/enabled", F_OK) == 0 { sizes.append(n) }
    }
    return sizes.sorted()
}

/// A per-size counter (`hugepages-<N>kB/stats/<name>`), nil when absent.
func thpStat(_ sizeKB: Int, _ name: String) -> Int? {
    (try? LiveMappings.readSetting(path: "\(thpDir)/hugepages-\(sizeKB)kB/stats/\(name)")).flatMap { Int($0) }
}

/// Every per-size anonymous THP knob `never` except `sizeKB` (`always`);
/// all are restored at tear-down.
func onlyTHPSize(_ live: LiveMappings, _ sizeKB: Int?) throws {
    for s in thpSizesKB() { try live.setMTHP(sizeKB: s, s == sizeKB ? "always" : "never") }
}

// MARK: Building the shapes for real

struct LiveShape {
    var ranges: [Range<UInt64>]
    var notes: [String]
}

/// Maps `size` bytes of private anonymous memory at exactly `address`, or nil
/// if something is already there (MAP_FIXED_NOREPLACE).
func mapFixed(_ live: LiveMappings, address: UInt64, size: Int) -> Bool {
    let MAP_FIXED_NOREPLACE: Int32 = 0x100000
    guard let p = mmap(UnsafeMutableRawPointer(bitPattern: UInt(address)), size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0),
          p != MAP_FAILED else { return false }
    if UInt64(UInt(bitPattern: p)) != address { munmap(p, size); return false }
    // Hand it to LiveMappings so tear-down unmaps it.
    liveRegistered.append((UInt(address), size))
    return true
}
nonisolated(unsafe) var liveRegistered: [(UInt, Int)] = []
func unmapRegistered() {
    for (a, s) in liveRegistered { munmap(UnsafeMutableRawPointer(bitPattern: a), s) }
    liveRegistered.removeAll()
}

func buildLive(_ kind: WorkloadKind, _ c: Config, _ live: LiveMappings) throws -> LiveShape {
    let size = c.size(kind) << 20
    let range = { (m: LiveMapping) in m.start..<m.end }
    switch kind {
    case .dense:
        let m = try live.anonymousPMDAligned(size: size)
        try live.madvise(m, .noHugePage)
        live.touch(m)
        return LiveShape(ranges: [range(m)], notes: ["MADV_NOHUGEPAGE, every page written"])
    case .thp:
        let before = thpStat(2048, "anon_fault_alloc")
        let m = try live.anonymousPMDAligned(size: size)
        try live.madvise(m, .hugePage)
        live.touch(m)
        var notes = ["MADV_HUGEPAGE, every page written"]
        if let b = before, let a = thpStat(2048, "anon_fault_alloc") {
            notes.append("PMD THPs faulted: \(a - b) of \(size >> 21)")
        }
        return LiveShape(ranges: [range(m)], notes: notes)
    case .mthp64:
        try onlyTHPSize(live, 64)
        let before = thpStat(64, "anon_fault_alloc")
        let m = try live.anonymousPMDAligned(size: size)
        live.touch(m)
        var notes = ["hugepages-64kB/enabled=always (others never), every page written"]
        if let b = before, let a = thpStat(64, "anon_fault_alloc") {
            notes.append("64K folios faulted: \(a - b) of \(size >> 16)")
        }
        try onlyTHPSize(live, nil)
        return LiveShape(ranges: [range(m)], notes: notes)
    case .mthpMix:
        let m = try live.anonymousPMDAligned(size: size)
        var notes = ["256K segments; for each size the knob set to always (others never) and its segments written"]
        let segments = size / Int(mixSegment)
        for (k, order) in mixOrders.enumerated() {
            let kb = 4 << order
            try onlyTHPSize(live, kb)
            let before = thpStat(kb, "anon_fault_alloc")
            var expected = 0
            for s in stride(from: k, to: segments, by: mixOrders.count) {
                live.touch(m, offset: s * Int(mixSegment), length: Int(mixSegment))
                expected += Int(mixSegment) / (kb << 10)
            }
            if let b = before, let a = thpStat(kb, "anon_fault_alloc") { notes.append("\(kb)K folios faulted: \(a - b) of \(expected)") }
        }
        try onlyTHPSize(live, nil)
        return LiveShape(ranges: [range(m)], notes: notes)
    case .swap:
        // The swap file first, so tear-down unmaps before swapoff.
        _ = try live.enableSwap(sizeMiB: (size >> 21) + 64, directory: "/var/tmp")
        let m = try live.anonymousPMDAligned(size: size)
        try live.madvise(m, .noHugePage)
        live.touch(m)
        let run = Int(swapRunPages) << Geometry.pageShift
        var o = run
        while o < size { try live.madvise(m, .pageOut, offset: o, length: min(run, size - o)); o += 2 * run }
        let words = pagemapWords(range(m))
        let swapped = words.filter { $0 & (1 << 62) != 0 }.count
        return LiveShape(ranges: [range(m)], notes: [
            "temporary swap file in /var/tmp, MADV_PAGEOUT on every other run of \(swapRunPages) pages",
            "pages swapped out: \(swapped) of \(words.count / 2) asked"])
    case .sparse:
        let bytes = c.sparseKiB << 10
        var ranges: [Range<UInt64>] = []
        var seed = c.seed
        while ranges.count < c.sparseVMAs {
            for a in sparseAddresses(count: c.sparseVMAs - ranges.count, bytes: UInt64(bytes), seed: seed, userBits: c.sparseUserBits)
            where mapFixed(live, address: a, size: bytes) {
                ranges.append(a..<a + UInt64(bytes))
            }
            seed &+= 1
        }
        for r in ranges {
            let m = LiveMapping(address: UInt(r.lowerBound), size: bytes, kind: .anonymous)
            live.touch(m)
        }
        ranges.sort { $0.lowerBound < $1.lowerBound }
        return LiveShape(ranges: ranges, notes: ["\(ranges.count) mmap(MAP_FIXED_NOREPLACE) of \(c.sparseKiB) KiB, every page written"])
    case .scenario, .snapshot:
        throw LiveMappingError.unavailable(feature: kind.rawValue,
            reason: "its file, shmem, hugetlb, forked and migrated state cannot be recreated faithfully in this process")
    }
}

/// A paused copy of this process, forked before the workload is mapped:
/// its /proc files cost what this process costs without the workload, read
/// beside ours sample by sample (the baseline).
final class Sibling {
    let pid: pid_t
    init?() {
        let p = fork()
        if p == 0 { while true { pause() } }
        if p < 0 { return nil }
        pid = p
    }
    func stop() {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }
}
nonisolated(unsafe) var activeSibling: Sibling?

/// A producer's whole-file read for `pid` (nil: self).
func kernelRead(_ work: Work, pid: pid_t?, _ ranges: [Range<UInt64>]) -> Int {
    let dir = pid.map { "/proc/\($0)" } ?? "/proc/self"
    switch work {
    case .raw, .pagemap: return kernelRead(work, ranges)
    case .smaps: return readWhole("\(dir)/smaps")
    case .smapsRollup: return readWhole("\(dir)/smaps_rollup")
    case .numaMaps: return readWhole("\(dir)/numa_maps")
    case .clearRefs: return writeClearRefs("\(dir)/clear_refs")
    case .mincore: return kernelMincore(ranges)
    case .mlock: return kernelMlock(ranges)
    case .madvCold: return kernelMadvCold(ranges)
    }
}

/// madvise(MADV_COLD) over each range.
func kernelMadvCold(_ ranges: [Range<UInt64>]) -> Int {
    for r in ranges {
        guard Glibc.madvise(UnsafeMutableRawPointer(bitPattern: UInt(r.lowerBound)), Int(r.upperBound - r.lowerBound), MADV_COLD) == 0 else {
            fail("madvise(MADV_COLD): \(String(cString: strerror(errno)))")
        }
    }
    return ranges.count
}

/// `echo 1 > clear_refs`: the kernel walks every VMA of the process.
func writeClearRefs(_ path: String) -> Int {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { fail("open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    guard write(fd, "1\n", 2) == 2 else { fail("write \(path): \(String(cString: strerror(errno)))") }
    return 1
}

/// mincore(2) over each range into one reused vector; returns the resident pages.
nonisolated(unsafe) var mincoreVector = [UInt8]()
func kernelMincore(_ ranges: [Range<UInt64>]) -> Int {
    var resident = 0
    for r in ranges {
        let n = Int((r.upperBound - r.lowerBound) >> Geometry.pageShift)
        if mincoreVector.count < n { mincoreVector = [UInt8](repeating: 0, count: n) }
        let rc = mincoreVector.withUnsafeMutableBufferPointer {
            Glibc.mincore(UnsafeMutableRawPointer(bitPattern: UInt(r.lowerBound)), Int(r.upperBound - r.lowerBound), $0.baseAddress)
        }
        guard rc == 0 else { fail("mincore: \(String(cString: strerror(errno)))") }
        resident &+= Int(mincoreVector[0] & 1)
    }
    return resident
}

/// mlock(2) then munlock(2) over each range.
func kernelMlock(_ ranges: [Range<UInt64>]) -> Int {
    for r in ranges {
        let p = UnsafeRawPointer(bitPattern: UInt(r.lowerBound)), n = Int(r.upperBound - r.lowerBound)
        guard Glibc.mlock(p, n) == 0 else { fail("mlock: \(String(cString: strerror(errno))) (RLIMIT_MEMLOCK?)") }
        guard Glibc.munlock(p, n) == 0 else { fail("munlock: \(String(cString: strerror(errno)))") }
    }
    return ranges.count
}

/// Builds the workload for real in this process, times the kernel's own
/// /proc/self reads over it, and undoes everything.
func runKernel(_ kind: WorkloadKind, _ c: Config) -> KernelResult {
    var result = KernelResult()
    #if !os(Linux)
    result.skipped = "not Linux"
    return result
    #else
    if kind == .scenario || kind == .snapshot {
        result.skipped = "\(kind.rawValue) state (files, shmem, hugetlb, fork, migration) cannot be recreated faithfully in this process"
        return result
    }
    let minNS = c.minSampleMS * 1e6
    guard let sibling = Sibling() else { result.skipped = "fork failed: \(String(cString: strerror(errno)))"; return result }
    activeSibling = sibling
    let live = LiveMappings()
    activeLive = live
    defer {
        sibling.stop()
        activeSibling = nil
        unmapRegistered()
        let failures = live.tearDown()
        activeLive = nil
        for f in failures { print("  !! cleanup: \(f)") }
    }
    let t0 = nanoseconds()
    let shape: LiveShape
    do {
        shape = try buildLive(kind, c, live)
    } catch {
        result.skipped = "\(error)"
        return result
    }
    result.setupSeconds = seconds(since: t0)
    result.notes = shape.notes
    result.pages = shape.ranges.reduce(0) { $0 + Int(($1.upperBound - $1.lowerBound) >> Geometry.pageShift) }
    let ranges = shape.ranges
    let producers = Work.kernelMeasured.filter { c.works.contains($0) && (!$0.isWriter || kind.runsWriters) }
    // Whole-process files and clear_refs need the sibling's figure as a
    // baseline (what the rest of the process costs); pagemap, mincore and
    // mlock act on the workload's ranges only.
    func needsBaseline(_ w: Work) -> Bool { [.smaps, .smapsRollup, .numaMaps, .clearRefs].contains(w) }
    // Per producer: the sibling's read and ours, interleaved.
    // smaps and numa_maps also per walk: planned so that every workload
    // record starts a read() of its own (SeqFileReads.swift).
    let sorted = ranges.sorted { $0.lowerBound < $1.lowerBound }
    let inWorkload = { (a: UInt64) -> Bool in
        var lo = 0, hi = sorted.count
        while lo < hi { let m = (lo + hi) / 2; if sorted[m].upperBound <= a { lo = m + 1 } else { hi = m } }
        return lo < sorted.count && sorted[lo].contains(a)
    }
    var plans: [Work: (path: String, requests: [Int], prefixes: [Int: [UInt8]])] = [:]
    for w in producers where w == .smaps || w == .numaMaps {
        let path = "/proc/self/\(w.rawValue)"
        let report = planSeqFile(path, inWorkload: inWorkload)
        result.seqFile[w.rawValue] = report
        plans[w] = (path, report.perWalkRequests, perWalkPrefixes(report, path, inWorkload: inWorkload))
    }
    perWalkChecks = [:]
    var bodies: [() -> Int] = []
    for w in producers {
        if needsBaseline(w) { bodies.append { kernelRead(w, pid: sibling.pid, ranges) } }
        bodies.append { kernelRead(w, pid: nil, ranges) }
        if let p = plans[w] { bodies.append { readPerWalk(p.path, requests: p.requests, prefixes: p.prefixes) } }
    }
    let sums = measureInterleaved(bodies, reps: c.reps, warmup: c.warmup, minSampleNS: minNS)
    var k = 0
    // Paired: each round's read minus the sibling's read of that round.
    func minus(_ m: Summary, _ b: Summary) -> Summary {
        Summary(zip(m.samplesNS, b.samplesNS).map { $0 - $1 }, runsPerSample: m.runsPerSample)
    }
    for w in producers {
        var base: Summary?
        if needsBaseline(w) { base = sums[k]; k += 1 }
        let m = sums[k]; k += 1
        result.measured[w.rawValue] = m
        if let b = base {
            result.baseline[w.rawValue] = b
            result.net[w.rawValue] = minus(m, b)
        } else {
            result.net[w.rawValue] = m
        }
        if plans[w] != nil {
            let p = sums[k]; k += 1
            result.measuredPerWalk[w.rawValue] = p
            result.netPerWalk[w.rawValue] = base.map { minus(p, $0) } ?? p
        }
    }
    for (w, p) in plans {
        result.seqFile[w.rawValue]!.timedChecks = perWalkChecks[p.path]?.checks ?? 0
        result.seqFile[w.rawValue]!.timedChecksPassed = perWalkChecks[p.path]?.passed ?? 0
    }
    return result
    #endif
}
