#if canImport(Glibc)
import Glibc
#endif

// /proc/PID/smaps and numa_maps are seq_files: one record per VMA, produced
// into a kernel buffer (one page at first, doubled only when a single record
// does not fit an empty buffer). A read() fills that buffer record by
// record; the record that no longer fits in what is left of it has been
// produced (its VMA walked) and is thrown away, then produced again at the
// start of the next read(). So whether the workload's VMA is walked once or
// twice per whole-file read depends on the bytes of records before it.
//
// The bench predicts the packing from the record lengths (of one untimed
// read), checks the prediction against the sizes read() really returned,
// and times two reads: as a consumer reads (1 MiB requests, the workload's
// record walked twice when it straddles), and per walk (the request of the
// read() that would end with the workload's record cut short just before
// it, so that record starts the next read() and is produced once). Every
// timed per-walk read checks that the read() after the short one begins
// with the workload's record.

/// What the seq_file packing did to the workload's records, and the proof.
struct SeqFileReport: Codable {
    var file: String
    /// Records (VMAs) in our file, and how many are the workload's.
    var records: Int
    var workloadRecords: Int
    /// The kernel buffer's size after the read (4096 unless a record needed more).
    var bufferBytes: Int
    /// read() sizes predicted from the record lengths, and as returned
    /// (1 MiB requests): equal when the packing model holds.
    var predictedReads: [Int]
    var observedReads: [Int]
    var modelMatches: Bool
    /// Workload records produced twice by a 1 MiB-request read (straddled a
    /// buffer boundary), and produced more than once by the per-walk read.
    var workloadRetriedAsRead: Int
    var workloadRetriedPerWalk: Int
    /// Request sizes of the per-walk read (0: 1 MiB).
    var perWalkRequests: [Int]
    var perWalkObservedReads: [Int]
    var perWalkMatches: Bool
    /// Timed per-walk reads whose read() after each short one began with the
    /// workload record's header, out of all checked.
    var timedChecks = 0
    var timedChecksPassed = 0

    var summary: String {
        "\(file): \(records) records, \(workloadRecords) of the workload; seq buffer \(bufferBytes) B; " +
        "predicted \(predictedReads.count) read()s \(modelMatches ? "= observed" : "!= observed \(observedReads.count)"); " +
        "as read: \(workloadRetriedAsRead) of \(workloadRecords) workload record(s) straddled a buffer boundary (walked twice); " +
        "per walk: \(workloadRetriedPerWalk) retried, \(perWalkRequests.filter { $0 > 0 }.count) short read()s, sizes \(perWalkMatches ? "as planned" : "NOT as planned"), " +
        "timed check \(timedChecksPassed)/\(timedChecks) reads began with the workload record"
    }
}

let bigRequest = 1 << 20

/// read() sizes of one whole read of `path` with the given requests (0 or
/// past the end: 1 MiB); the bytes are kept when `keep`.
func recordedRead(_ path: String, requests: [Int] = [], keep: Bool = false) -> (sizes: [Int], bytes: [UInt8]) {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { fail("open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var sizes: [Int] = [], bytes: [UInt8] = []
    while true {
        let k = sizes.count
        let want = k < requests.count && requests[k] > 0 ? requests[k] : readBufferSize
        let n = read(fd, readBuffer, want)
        if n < 0 { if errno == EINTR { continue }; fail("read \(path): \(String(cString: strerror(errno)))") }
        if n == 0 { return (sizes, bytes) }
        sizes.append(n)
        if keep { bytes.append(contentsOf: UnsafeRawBufferPointer(start: readBuffer, count: n)) }
    }
}

/// The records of a smaps or numa_maps text: each begins with a line whose
/// first character is a lowercase hex digit (the VMA's start address).
func seqRecords(_ bytes: [UInt8]) -> [(start: UInt64, length: Int)] {
    var out: [(UInt64, Int)] = []
    var lineStart = 0
    func isHex(_ c: UInt8) -> Bool { (c >= 48 && c <= 57) || (c >= 97 && c <= 102) }
    while lineStart < bytes.count {
        var end = lineStart
        while end < bytes.count && bytes[end] != 10 { end += 1 }
        if isHex(bytes[lineStart]) {
            var a: UInt64 = 0, i = lineStart
            while i < end && isHex(bytes[i]) { a = a << 4 | UInt64(bytes[i] <= 57 ? bytes[i] - 48 : bytes[i] - 87); i += 1 }
            out.append((a, 0))
        }
        if !out.isEmpty { out[out.count - 1].1 += end + 1 - lineStart }
        lineStart = end + 1
    }
    return out
}

/// The seq_file packing of records of `lengths` with 1 MiB requests: the
/// read() sizes, the request sizes (0: 1 MiB), the buffer size at the end,
/// and how many workload records were produced more than once. With
/// `perWalk`, the read() that would overflow on a workload record asks for
/// exactly the bytes before it instead.
func packSeqFile(_ lengths: [Int], _ isWorkload: [Bool], perWalk: Bool) -> (reads: [Int], requests: [Int], buffer: Int, retried: Int) {
    var size = 4096, i = 0, retried = 0
    var reads: [Int] = [], requests: [Int] = []
    while i < lengths.count {
        // The first record of a read() goes into an empty buffer, doubled
        // until it fits (each try produces it again).
        while lengths[i] >= size { if isWorkload[i] { retried += 1 }; size <<= 1 }
        var count = lengths[i], request = 0
        i += 1
        while i < lengths.count {
            if count + lengths[i] >= size {
                // Produced, does not fit, dropped: produced again next read().
                if isWorkload[i] { if perWalk { request = count } else { retried += 1 } }
                break
            }
            count += lengths[i]
            i += 1
        }
        reads.append(count)
        requests.append(request)
    }
    return (reads, requests, size, retried)
}

/// The per-walk read planned for `path` over a workload whose VMAs start at
/// `inWorkload`: the report (proof included) and the request sizes to time.
func planSeqFile(_ path: String, inWorkload: (UInt64) -> Bool) -> SeqFileReport {
    let whole = recordedRead(path, keep: true)
    let records = seqRecords(whole.bytes)
    let lengths = records.map(\.length)
    let isW = records.map { inWorkload($0.start) }
    let asRead = packSeqFile(lengths, isW, perWalk: false)
    let perWalk = packSeqFile(lengths, isW, perWalk: true)
    let planned = recordedRead(path, requests: perWalk.requests)
    return SeqFileReport(file: path, records: records.count, workloadRecords: isW.filter { $0 }.count,
                         bufferBytes: asRead.buffer, predictedReads: asRead.reads, observedReads: whole.sizes,
                         modelMatches: asRead.reads == whole.sizes,
                         workloadRetriedAsRead: asRead.retried, workloadRetriedPerWalk: perWalk.retried,
                         perWalkRequests: perWalk.requests, perWalkObservedReads: planned.sizes,
                         perWalkMatches: planned.sizes == perWalk.reads)
}

/// Timed per-walk read: the planned requests; after each short read() the
/// next must begin with a workload record's start address (checked against
/// `prefixes`, the hex text of the workload records' starts, by position).
nonisolated(unsafe) var perWalkChecks: [String: (checks: Int, passed: Int)] = [:]
func readPerWalk(_ path: String, requests: [Int], prefixes: [Int: [UInt8]]) -> Int {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { fail("open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var total = 0, k = 0, checks = 0, passed = 0
    defer { perWalkChecks[path, default: (0, 0)].checks += checks; perWalkChecks[path, default: (0, 0)].passed += passed }
    while true {
        let want = k < requests.count && requests[k] > 0 ? requests[k] : readBufferSize
        let n = read(fd, readBuffer, want)
        if n < 0 { if errno == EINTR { continue }; fail("read \(path): \(String(cString: strerror(errno)))") }
        if n == 0 { return total }
        if let p = prefixes[k] {
            checks += 1
            if n >= p.count && memcmp(readBuffer, p, p.count) == 0 { passed += 1 }
        }
        total += n
        k += 1
    }
}

/// For the read()s that follow a short one, the header text the workload
/// record they must begin with starts with ("7f12…-" or "7f12… ").
func perWalkPrefixes(_ report: SeqFileReport, _ path: String, inWorkload: (UInt64) -> Bool) -> [Int: [UInt8]] {
    let whole = recordedRead(path, keep: true)
    let records = seqRecords(whole.bytes)
    var out: [Int: [UInt8]] = [:]
    // Walk the planned reads by record, as packSeqFile did.
    var offset = 0, r = 0
    var readStarts: [Int: Int] = [:]   // byte offset -> read index
    for (k, n) in report.perWalkObservedReads.enumerated() { readStarts[offset] = k; offset += n }
    for rec in records {
        if let k = readStarts[r], k > 0, report.perWalkRequests[k - 1] > 0, inWorkload(rec.start) {
            out[k] = Array(String(rec.start, radix: 16).utf8) + [path.hasSuffix("smaps") ? UInt8(ascii: "-") : UInt8(ascii: " ")]
        }
        r += rec.length
    }
    return out
}
