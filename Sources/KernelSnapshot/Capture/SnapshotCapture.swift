#if canImport(Glibc)
import Glibc
#endif
import MemoryModel

/// Captures live processes into a snapshot directory (docs/SNAPSHOT.md, format v1).
///
/// Per process the order is: cmdline, status, then maps, smaps and — straight
/// after smaps, with nothing allocated in between — pagemap; the attempt is
/// repeated when maps and smaps disagree (the process changed in between).
/// smaps_rollup and numa_maps follow. kpageflags is captured last, for every
/// PFN a captured pagemap word maps, widened to whole compound pages.
/// Everything is read with open/read/pread: procfs files report size 0.
///
/// The targets are stopped (SIGSTOP) for the whole capture unless
/// `Options.stop` is off, so their own mappings hold still; other processes
/// still map and unmap shared pages, so kpagecount (which smaps' shared /
/// private split and PSS depend on) is read for the mapped PFNs before and
/// after the text files, and the capture is repeated until both readings
/// agree, at most `Options.maxAttempts` times. The outcome is the FORMAT
/// file's `capture` line (`CaptureStability`). What cannot be made atomic
/// is not: a page freed or reused between pagemap and kpageflags is
/// recorded as the kernel shows it at that moment.
public enum SnapshotCapture {
    public struct Options: Sendable {
        /// Stop the targets with SIGSTOP while they are read, and resume
        /// them with SIGCONT afterwards, on success and on error. The
        /// calling process is never stopped (it is captured running).
        public var stop: Bool
        /// How many times to capture when the two kpagecount readings around
        /// the text files differ; the last attempt is kept and recorded as
        /// unstable (`CaptureStability`).
        public var maxAttempts: Int
        /// How many times to re-read maps/smaps/pagemap when maps and smaps disagree.
        public var maxHeaderAttempts: Int
        /// Longest compound page walked (in base pages; 1 GiB hugetlb = 262144).
        public var maxCompoundPages: Int
        public init(stop: Bool = true, maxAttempts: Int = 5, maxHeaderAttempts: Int = 20, maxCompoundPages: Int = 1 << 18) {
            self.stop = stop
            self.maxAttempts = maxAttempts
            self.maxHeaderAttempts = maxHeaderAttempts
            self.maxCompoundPages = maxCompoundPages
        }
    }

    /// What a capture wrote.
    public struct Summary: Sendable {
        public var directory: String
        public var format: SnapshotFormat
        /// Pagemap words written, per pid (same order as `format.pids`).
        public var pagemapWords: [Int]
        /// VMAs captured, per pid.
        public var vmaCounts: [Int]
        /// maps/smaps/pagemap attempts needed, per pid, in the attempt kept.
        public var attempts: [Int]
        /// Whether the targets were stopped and the kpagecount readings agreed.
        public var stability: CaptureStability
        /// Records in the kpageflags file.
        public var kpageflagsRecords: Int
        /// Distinct PFNs seen in pagemaps (before widening to compound pages).
        public var mappedPFNs: Int
    }

    /// Captures `pids` into `directory`, which must not exist (its parent must)
    /// or be an empty directory. On error nothing written is left behind.
    @discardableResult
    public static func capture(pids: [Int32], to directory: String, options: Options = Options()) throws -> Summary {
        var unique: [Int32] = []
        for p in pids where !unique.contains(p) { unique.append(p) }
        guard !unique.isEmpty else { throw SnapshotError.invalidArgument(reason: "no pids to capture") }
        if let bad = unique.first(where: { $0 <= 0 }) {
            throw SnapshotError.invalidArgument(reason: "pid \(bad) is not a positive process id")
        }
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard pageSize == SnapshotReader.pageSize else {
            throw SnapshotError.unsupported(path: "/proc/self", reason: "page size \(pageSize); format v1 needs 4096")
        }
        for pid in unique where !RawIO.isDirectory("/proc/\(pid)") {
            throw SnapshotError.processNotFound(pid: pid, path: "/proc/\(pid)")
        }

        // Output directory: new, or existing and empty.
        var createdDirectory = false
        if RawIO.exists(directory) {
            guard RawIO.isDirectory(directory) else {
                throw SnapshotError.invalidArgument(reason: "\(directory) exists and is not a directory")
            }
            guard try RawIO.listDirectory(directory).isEmpty else {
                throw SnapshotError.invalidArgument(reason: "\(directory) is not empty")
            }
        } else {
            try RawIO.makeDirectory(directory)
            createdDirectory = true
        }
        var written: [String] = []
        let stopper = ProcessStopper()
        defer { stopper.resumeAll() }
        do {
            if options.stop {
                guard options.maxAttempts >= 1 else { throw SnapshotError.invalidArgument(reason: "maxAttempts \(options.maxAttempts) < 1") }
                for pid in unique where pid != getpid() { try stopper.stop(pid) }
            }
            // Open the PFN-indexed files first: a permission problem should
            // surface before any work is done.
            let flagsFile = try PFNWordFile(path: "/proc/kpageflags")
            defer { flagsFile.close() }

            try RawIO.makeDirectory(directory + "/proc")
            written.append(directory + "/proc")
            let meminfo = try RawIO.readBytes("/proc/meminfo")
            try RawIO.writeFile(directory + "/proc/meminfo", bytes: meminfo)
            written.append(directory + "/proc/meminfo")

            var state = CaptureBuffers()
            var attempt = 0
            while true {
                attempt += 1
                // Reading 1: kpagecount of the PFNs mapped before the text files are read.
                let before = try PFNWordFile(path: "/proc/kpagecount")
                defer { before.close() }
                state.pfns.removeAll(keepingCapacity: true)
                for pid in unique { try scanMappedPFNs(pid: pid, state: &state) }
                let beforePFNs = sortedDistinct(state.pfns)
                for pfn in beforePFNs { _ = try before.word(pfn) }

                state.pfns.removeAll(keepingCapacity: true)
                var words: [Int] = [], vmas: [Int] = [], attempts: [Int] = []
                var processDirs: [String] = []
                for pid in unique {
                    let dir = directory + "/proc/\(pid)"
                    try RawIO.makeDirectory(dir)
                    processDirs.append(dir)
                    let r = try captureProcess(pid: pid, into: dir, state: &state, options: options)
                    words.append(r.words)
                    vmas.append(r.vmas)
                    attempts.append(r.attempts)
                }

                // Reading 2: kpagecount of the PFNs the captured pagemaps map.
                let countFile = try PFNWordFile(path: "/proc/kpagecount")
                defer { countFile.close() }
                let distinct = sortedDistinct(state.pfns)
                var stable = distinct == beforePFNs
                if stable {
                    for pfn in distinct {
                        let earlier = try before.word(pfn), later = try countFile.word(pfn)
                        if earlier != later { stable = false; break }
                    }
                }
                if !stable && attempt < options.maxAttempts {
                    for d in processDirs { RawIO.removeTree(d) }
                    continue
                }
                written.append(contentsOf: processDirs)

                // kpageflags: every mapped PFN plus the full extent of its compound page.
                let all = try widenToCompoundPages(distinct, flags: flagsFile, limit: options.maxCompoundPages)
                var bytes = [UInt8](repeating: 0, count: all.count * KPageFlagsRecord.byteSize)
                try bytes.withUnsafeMutableBytes { raw in
                    for (i, pfn) in all.enumerated() {
                        let o = i * KPageFlagsRecord.byteSize
                        raw.storeBytes(of: pfn.littleEndian, toByteOffset: o, as: UInt64.self)
                        raw.storeBytes(of: try flagsFile.word(pfn).littleEndian, toByteOffset: o + 8, as: UInt64.self)
                        raw.storeBytes(of: try countFile.word(pfn).littleEndian, toByteOffset: o + 16, as: UInt64.self)
                    }
                }
                try RawIO.writeFile(directory + "/kpageflags", bytes: bytes)
                written.append(directory + "/kpageflags")

                // FORMAT last: a snapshot with FORMAT is complete.
                let stability = CaptureStability(stopped: options.stop && !unique.contains(getpid()),
                                                 stable: stable, attempts: attempt)
                let format = SnapshotFormat(version: SnapshotReader.supportedVersion, kernel: RawIO.kernelRelease(),
                                            pageSize: pageSize, pids: unique, capture: stability)
                try RawIO.writeFile(directory + "/FORMAT", text: format.text)
                return Summary(directory: directory, format: format, pagemapWords: words, vmaCounts: vmas,
                               attempts: attempts, stability: stability, kpageflagsRecords: all.count,
                               mappedPFNs: distinct.count)
            }
        } catch {
            if createdDirectory {
                RawIO.removeTree(directory)
            } else {
                for p in written.reversed() { RawIO.removeTree(p) }
                for pid in unique { RawIO.removeTree(directory + "/proc/\(pid)") }
                RawIO.removeTree(directory + "/proc")
            }
            throw error
        }
    }

    private static func sortedDistinct(_ pfns: [UInt64]) -> [UInt64] {
        let sorted = pfns.sorted()
        var distinct: [UInt64] = []
        distinct.reserveCapacity(sorted.count)
        for p in sorted where distinct.last != p { distinct.append(p) }
        return distinct
    }

    /// Collects the PFNs `pid`'s pagemap maps now (VMA ranges from maps),
    /// for the kpagecount reading taken before the text files.
    private static func scanMappedPFNs(pid: Int32, state: inout CaptureBuffers) throws {
        try readProc(pid, "maps", into: &state.maps)
        scanHeaders(state.maps, into: &state.ranges)
        let source = "/proc/\(pid)/pagemap"
        let fd: Int32
        do { fd = try RawIO.openRead(source, pid: pid) } catch { throw classify(error, pid: pid) }
        defer { close(fd) }
        _ = try copyPagemap(pid: pid, fd: fd, source: source, out: nil, outPath: "", state: &state)
    }

    /// Captures the calling process.
    @discardableResult
    public static func captureSelf(to directory: String, options: Options = Options()) throws -> Summary {
        try capture(pids: [getpid()], to: directory, options: options)
    }

    // MARK: one process

    /// Buffers reused across attempts and pids so that capturing the calling
    /// process does not itself create or grow mappings between maps and smaps.
    struct CaptureBuffers {
        var maps: [UInt8] = [UInt8](repeating: 0, count: 1 << 16)
        var smaps: [UInt8] = [UInt8](repeating: 0, count: 1 << 20)
        var ranges: [(start: UInt64, end: UInt64)] = []
        var pfns: [UInt64] = []
        let chunkWords = 1 << 17
        let chunk: UnsafeMutablePointer<UInt64>
        init() {
            chunk = .allocate(capacity: chunkWords)
            ranges.reserveCapacity(1 << 14)
            pfns.reserveCapacity(1 << 16)
        }
    }

    /// Maps an error from a /proc/<pid> file, telling "process gone" from "file absent".
    private static func classify(_ error: Error, pid: Int32) -> Error {
        if case SnapshotError.processNotFound(_, let path) = error, RawIO.isDirectory("/proc/\(pid)") {
            return SnapshotError.fileMissing(path: path)
        }
        return error
    }

    private static func readProc(_ pid: Int32, _ name: String, into buffer: inout [UInt8]) throws {
        do {
            try RawIO.readAll("/proc/\(pid)/\(name)", into: &buffer, pid: pid)
        } catch {
            throw classify(error, pid: pid)
        }
    }

    private static func captureProcess(pid: Int32, into dir: String, state: inout CaptureBuffers,
                                       options: Options) throws -> (words: Int, vmas: Int, attempts: Int) {
        var scratch: [UInt8] = []
        try readProc(pid, "cmdline", into: &scratch)
        try RawIO.writeFile(dir + "/cmdline", bytes: scratch)
        try readProc(pid, "status", into: &scratch)
        try RawIO.writeFile(dir + "/status", bytes: scratch)

        let pagemapSource = "/proc/\(pid)/pagemap"
        let pagemapIn: Int32
        do { pagemapIn = try RawIO.openRead(pagemapSource, pid: pid) } catch { throw classify(error, pid: pid) }
        defer { close(pagemapIn) }
        let pagemapOutPath = dir + "/pagemap"
        let pagemapOut = open(pagemapOutPath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if pagemapOut < 0 { throw SnapshotError.fromErrno(errno, path: pagemapOutPath, operation: "create") }
        defer { close(pagemapOut) }

        let pfnMark = state.pfns.count
        var attempt = 0
        var lastMismatch = ""
        var totalWords = 0
        while true {
            attempt += 1
            state.pfns.removeSubrange(pfnMark...)
            if ftruncate(pagemapOut, 0) != 0 || lseek(pagemapOut, 0, SEEK_SET) != 0 {
                throw SnapshotError.fromErrno(errno, path: pagemapOutPath, operation: "truncate")
            }
            try readProc(pid, "maps", into: &state.maps)
            try readProc(pid, "smaps", into: &state.smaps)
            // VMA ranges straight from the smaps headers, then pagemap at once.
            scanHeaders(state.smaps, into: &state.ranges)
            totalWords = try copyPagemap(pid: pid, fd: pagemapIn, source: pagemapSource, out: pagemapOut,
                                         outPath: pagemapOutPath, state: &state)
            if let mismatch = compareHeaders(maps: state.maps, smaps: state.smaps) {
                lastMismatch = mismatch
                if attempt >= options.maxHeaderAttempts {
                    throw SnapshotError.inconsistentCapture(pid: pid, path: "/proc/\(pid)/maps",
                        reason: "maps and smaps still disagreed after \(attempt) attempts: \(lastMismatch)")
                }
                usleep(UInt32(min(attempt, 10) * 2000))
                continue
            }
            break
        }
        try RawIO.writeFile(dir + "/maps", bytes: state.maps)
        try RawIO.writeFile(dir + "/smaps", bytes: state.smaps)
        try readProc(pid, "smaps_rollup", into: &scratch)
        try RawIO.writeFile(dir + "/smaps_rollup", bytes: scratch)
        do {
            try readProc(pid, "numa_maps", into: &scratch)
            try RawIO.writeFile(dir + "/numa_maps", bytes: scratch)
        } catch SnapshotError.fileMissing {
            // Kernel built without NUMA: there is no numa_maps to keep.
        }
        return (totalWords, state.ranges.count, attempt)
    }

    /// Collects (start, end) of every header line (`hex-hex …`) of smaps.
    static func scanHeaders(_ smaps: [UInt8], into ranges: inout [(start: UInt64, end: UInt64)]) {
        ranges.removeAll(keepingCapacity: true)
        smaps.withUnsafeBufferPointer { b in
            var i = 0
            let n = b.count
            while i < n {
                // At a line start.
                var start: UInt64 = 0, end: UInt64 = 0
                var j = i
                var ok = false
                while j < n, let d = hexDigit(b[j]) { start = start << 4 | UInt64(d); j += 1 }
                if j > i, j < n, b[j] == UInt8(ascii: "-") {
                    j += 1
                    let k = j
                    while j < n, let d = hexDigit(b[j]) { end = end << 4 | UInt64(d); j += 1 }
                    ok = j > k && j < n && b[j] == UInt8(ascii: " ")
                }
                if ok { ranges.append((start, end)) }
                while j < n, b[j] != UInt8(ascii: "\n") { j += 1 }
                i = j + 1
            }
        }
    }

    /// nil when every maps line equals the corresponding smaps header line.
    static func compareHeaders(maps: [UInt8], smaps: [UInt8]) -> String? {
        maps.withUnsafeBufferPointer { m in
            smaps.withUnsafeBufferPointer { s in
                var mi = 0, si = 0, line = 0
                func lineEnd(_ b: UnsafeBufferPointer<UInt8>, _ from: Int) -> Int {
                    var e = from
                    while e < b.count, b[e] != UInt8(ascii: "\n") { e += 1 }
                    return e
                }
                func isHeader(_ b: UnsafeBufferPointer<UInt8>, _ from: Int) -> Bool {
                    var j = from
                    while j < b.count, hexDigit(b[j]) != nil { j += 1 }
                    return j > from && j < b.count && b[j] == UInt8(ascii: "-")
                }
                while true {
                    while si < s.count, !isHeader(s, si) { si = lineEnd(s, si) + 1 }
                    let mDone = mi >= m.count, sDone = si >= s.count
                    if mDone && sDone { return nil }
                    line += 1
                    if mDone { return "smaps has a VMA beyond maps' \(line - 1) lines" }
                    if sDone { return "maps line \(line) has no smaps block" }
                    let me = lineEnd(m, mi), se = lineEnd(s, si)
                    if me - mi != se - si || memcmp(m.baseAddress! + mi, s.baseAddress! + si, me - mi) != 0 {
                        return "maps line \(line) differs from the smaps header"
                    }
                    mi = me + 1
                    si = se + 1
                }
            }
        }
    }

    /// Copies the pagemap words of every VMA in `state.ranges` to `out` (nil:
    /// only scan), padding short reads with zeros, and records present PFNs.
    private static func copyPagemap(pid: Int32, fd: Int32, source: String, out: Int32?, outPath: String,
                                    state: inout CaptureBuffers) throws -> Int {
        var total = 0
        let chunk = state.chunk
        let cap = state.chunkWords
        for r in state.ranges {
            var page = r.start / Geometry.pageSize
            let endPage = r.end / Geometry.pageSize
            while page < endPage {
                let n = Int(min(UInt64(cap), endPage - page))
                let got = try RawIO.pread(fd: fd, path: source, into: UnsafeMutableRawPointer(chunk),
                                          count: n * 8, offset: Int64(page * 8), pid: pid)
                let gotWords = got / 8
                if gotWords < n { (chunk + gotWords).initialize(repeating: 0, count: n - gotWords) }
                for i in 0..<gotWords {
                    let w = UInt64(littleEndian: chunk[i])
                    if w & PagemapBits.present != 0 {
                        let pfn = w & PagemapBits.pfnMask
                        if pfn != 0 { state.pfns.append(pfn) }
                    }
                }
                // Words are stored little-endian on disk; x86-64 already is.
                if let out {
                    try RawIO.writeAll(fd: out, path: outPath,
                                       bytes: UnsafeRawBufferPointer(start: chunk, count: n * 8))
                }
                page += UInt64(n)
                total += n
            }
        }
        return total
    }

    // MARK: kpageflags

    /// Adds, for each compound page among `pfns` (sorted, distinct), every PFN
    /// from its head to its last tail. Returns sorted distinct PFNs.
    static func widenToCompoundPages(_ pfns: [UInt64], flags: PFNWordFile, limit: Int) throws -> [UInt64] {
        let head = KPageFlags.compoundHead.rawValue, tail = KPageFlags.compoundTail.rawValue
        var out: [UInt64] = []
        out.reserveCapacity(pfns.count)
        var covered: ClosedRange<UInt64>? = nil
        for pfn in pfns {
            if let c = covered, c.contains(pfn) { continue }
            let f = try flags.word(pfn)
            if f & (head | tail) == 0 {
                out.append(pfn)
                continue
            }
            var first = pfn
            if f & head == 0 {
                // A tail: walk back to the head.
                var steps = 0
                while first > 0, steps < limit {
                    let g = try flags.word(first - 1)
                    first -= 1
                    steps += 1
                    if g & head != 0 { break }
                    if g & tail == 0 { first += 1; break } // no head found (changed under us)
                }
            }
            var last = first
            var steps = 0
            while steps < limit {
                let g = try flags.word(last + 1)
                if g & tail == 0 || g & head != 0 { break }
                last += 1
                steps += 1
            }
            if last < pfn { last = pfn }
            out.append(contentsOf: first...last)
            covered = first...last
        }
        out.sort()
        var distinct: [UInt64] = []
        distinct.reserveCapacity(out.count)
        for p in out where distinct.last != p { distinct.append(p) }
        return distinct
    }
}

/// A PFN-indexed file of u64 words (/proc/kpageflags, /proc/kpagecount),
/// read in 4 KiB chunks and cached so that a capture sees one value per PFN.
final class PFNWordFile {
    let path: String
    private var fd: Int32
    private var cache: [UInt64: [UInt64]] = [:]
    private static let chunkWords: UInt64 = 512

    init(path: String) throws {
        self.path = path
        fd = try RawIO.openRead(path)
    }

    func word(_ pfn: UInt64) throws -> UInt64 {
        let chunkIndex = pfn / Self.chunkWords
        if let c = cache[chunkIndex] { return c[Int(pfn % Self.chunkWords)] }
        var words = [UInt64](repeating: 0, count: Int(Self.chunkWords))
        let path = self.path, fd = self.fd
        _ = try words.withUnsafeMutableBytes { raw in
            try RawIO.pread(fd: fd, path: path, into: raw.baseAddress!, count: raw.count,
                            offset: Int64(chunkIndex * Self.chunkWords * 8))
        }
        for i in words.indices { words[i] = UInt64(littleEndian: words[i]) }
        cache[chunkIndex] = words
        return words[Int(pfn % Self.chunkWords)]
    }

    func close() {
        if fd >= 0 { _ = Glibc.close(fd); fd = -1 }
    }
}
