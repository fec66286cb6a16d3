import LiveKernel
import Foundation
import Glibc
import MemoryModel
import ProcFS
@testable import KernelSnapshot

// MARK: building and running the helper

/// Compiles the C helper (LiveOracleHelperSource) once per test run into a
/// temporary directory with `cc`, and runs its cases as child processes.
enum LiveOracleHelper {
    /// The compiler: $CC, else cc, gcc or clang on the usual paths.
    static func findCompiler() -> String? {
        if let cc = ProcessInfo.processInfo.environment["CC"], !cc.isEmpty {
            if cc.hasPrefix("/") { return access(cc, X_OK) == 0 ? cc : nil }
            for dir in ["/usr/bin", "/usr/local/bin", "/bin"] where access("\(dir)/\(cc)", X_OK) == 0 { return "\(dir)/\(cc)" }
        }
        for name in ["cc", "gcc", "clang"] {
            for dir in ["/usr/bin", "/usr/local/bin", "/bin"] where access("\(dir)/\(name)", X_OK) == 0 { return "\(dir)/\(name)" }
        }
        return nil
    }

    /// (path of the built helper, nil) or (nil, why not). The binary lives in
    /// /tmp/pagewalk-oracle-helper-<source hash>/ and is reused by later runs
    /// of the same source (one directory, not one per run).
    static let built: (path: String?, reason: String?) = {
        guard let cc = findCompiler() else { return (nil, "no C compiler (cc, gcc or clang) found") }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325   // FNV-1a
        for b in LiveOracleHelperSource.c.utf8 { hash = (hash ^ UInt64(b)) &* 0x100_0000_01b3 }
        let dir = "/tmp/pagewalk-oracle-helper-" + String(hash, radix: 16)
        let binary = dir + "/oracle-helper"
        if access(binary, X_OK) == 0 { return (binary, nil) }
        if mkdir(dir, 0o700) != 0 && errno != EEXIST { return (nil, "cannot create \(dir): \(String(cString: strerror(errno)))") }
        let source = dir + "/oracle-helper-\(getpid()).c", scratch = dir + "/oracle-helper-\(getpid())"
        do {
            try LiveOracleHelperSource.c.write(toFile: source, atomically: true, encoding: .utf8)
        } catch {
            return (nil, "cannot write \(source): \(error)")
        }
        defer { unlink(source) }
        let (ok, out) = LiveMappings.run(cc, ["-O1", "-Wall", "-Wl,-z,now", "-o", scratch, source])
        guard ok, access(scratch, X_OK) == 0, rename(scratch, binary) == 0 else {
            unlink(scratch)
            return (nil, "\(cc) failed: \(out)")
        }
        return (binary, nil)
    }()

    static var available: Bool { TestSupport.isRoot && TestSupport.canReadKPageFlags && built.path != nil }
}

/// One running helper: the case's process (and its forked child, if any).
final class OracleHelperProcess {
    let pid: pid_t
    private(set) var childPid: pid_t?
    /// REGION name → [start, end).
    private(set) var regions: [(name: String, start: UInt64, end: UInt64)] = []
    private(set) var info: [String: Int] = [:]
    private(set) var skipReason: String?
    private var stdinWrite: Int32
    private var stdoutRead: Int32
    private var reaped = false

    /// Spawns `helper CASE DIR` (posix_spawn: no fork of the test process)
    /// and waits until it reports READY, SKIP or FAIL.
    init(caseName: String, directory: String, timeoutSeconds: Int32 = 20) throws {
        guard let helper = LiveOracleHelper.built.path else {
            throw LiveMappingError.unavailable(feature: "oracle helper", reason: LiveOracleHelper.built.reason ?? "?")
        }
        var inFDs: [Int32] = [0, 0], outFDs: [Int32] = [0, 0]
        guard pipe(&inFDs) == 0 else { throw LiveMappingError.last("pipe") }
        guard pipe(&outFDs) == 0 else { close(inFDs[0]); close(inFDs[1]); throw LiveMappingError.last("pipe") }
        // Our ends must not leak into other children (dup2 clears CLOEXEC on 0 and 1).
        for fd in inFDs + outFDs { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, inFDs[0], 0)
        posix_spawn_file_actions_adddup2(&actions, outFDs[1], 1)
        let argv: [String] = [helper, caseName, directory]
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, helper, &actions, nil, &cargs, environ)
        close(inFDs[0]); close(outFDs[1])
        guard rc == 0 else {
            close(inFDs[1]); close(outFDs[0])
            throw LiveMappingError.syscall(name: "posix_spawn(\(helper))", errno: rc, reason: String(cString: strerror(rc)))
        }
        self.pid = pid
        stdinWrite = inFDs[1]
        stdoutRead = outFDs[0]
        // Read lines until READY / SKIP / FAIL.
        var buffer: [UInt8] = []
        var done = false
        let deadline = Date().addingTimeInterval(TimeInterval(timeoutSeconds))
        while !done {
            var pfd = pollfd(fd: stdoutRead, events: Int16(POLLIN), revents: 0)
            let left = Int32(max(0, deadline.timeIntervalSinceNow) * 1000)
            if left == 0 || poll(&pfd, 1, left) <= 0 {
                finish()
                throw LiveMappingError.unavailable(feature: "helper \(caseName)", reason: "no READY within \(timeoutSeconds) s")
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { read(stdoutRead, $0.baseAddress!, $0.count) }
            if n <= 0 {
                finish()
                throw LiveMappingError.unavailable(feature: "helper \(caseName)",
                    reason: "exited before READY; output: \(String(decoding: buffer, as: UTF8.self))")
            }
            buffer += chunk[..<n]
            while let nl = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeSubrange(...nl)
                let w = line.split(separator: " ").map(String.init)
                switch w.first {
                case "REGION" where w.count == 4:
                    regions.append((w[1], UInt64(w[2], radix: 16) ?? 0, UInt64(w[3], radix: 16) ?? 0))
                case "INFO" where w.count == 3: info[w[1]] = Int(w[2])
                case "CHILD" where w.count == 2: childPid = pid_t(w[1])
                case "READY": done = true
                case "SKIP":
                    skipReason = String(line.dropFirst(5))
                    done = true
                case "FAIL":
                    finish()
                    throw LiveMappingError.syscall(name: "helper \(caseName)", errno: 0, reason: line)
                default: break
                }
            }
        }
    }

    var pids: [Int32] { [pid] + (childPid.map { [$0] } ?? []) }

    func region(containing address: UInt64) -> String? {
        regions.first { $0.start <= address && address < $0.end }?.name
    }

    /// Closes the helper's stdin (it and its child exit) and reaps it;
    /// SIGKILL (to this pid only) if it has not gone within two seconds.
    func finish() {
        guard !reaped else { return }
        reaped = true
        if stdinWrite >= 0 { close(stdinWrite); stdinWrite = -1 }
        var status: Int32 = 0
        var gone = false
        for _ in 0..<200 {
            if waitpid(pid, &status, WNOHANG) == pid { gone = true; break }
            usleep(10_000)
        }
        if !gone {
            kill(pid, SIGKILL)
            waitpid(pid, &status, 0)
        }
        if let c = childPid, kill(c, 0) == 0 {
            // The child exits on the same EOF; it is reparented, not ours to reap.
            for _ in 0..<200 where kill(c, 0) == 0 { usleep(10_000) }
        }
        if stdoutRead >= 0 { close(stdoutRead); stdoutRead = -1 }
    }

    deinit { finish() }
}

// MARK: THP settings as the kernel had them

enum OracleSettings {
    /// The knobs a test may change, with their values now (to prove restoration).
    static func watched() -> [String: String] {
        var paths = [LiveMappings.thpDirectory + "/enabled", LiveMappings.thpDirectory + "/shmem_enabled",
                     LiveMappings.nrHugepagesPath(pageSizeKB: 2048)]
        for kb in [16, 32, 64, 128, 256, 512, 1024, 2048] { paths.append(LiveMappings.mthpEnabledPath(sizeKB: kb)) }
        var out: [String: String] = [:]
        for p in paths { out[p] = (try? LiveMappings.readSetting(path: p)) ?? "absent" }
        out["swaps"] = ((try? RawIO.readText("/proc/swaps")) ?? "").split(separator: "\n").dropFirst()
            .map { String($0.split(separator: " ").first ?? "") }.sorted().joined(separator: ",")
        return out
    }
}

// MARK: comparison

/// Why a field may differ from the kernel's: a named, checked condition.
struct OracleException: Sendable {
    let name: String
    let reason: String
}

/// Everything a decision about one differing field may look at.
struct OracleFieldContext {
    enum File: String { case smaps, rollup = "smaps_rollup", numa = "numa_maps" }
    let file: File
    let field: String
    let kernel: String
    let ours: String
    /// smaps block of the VMA (nil for the rollup).
    let block: SmapsBlock?
    /// Pages of the VMA (or of the process, for the rollup) that processes
    /// outside the snapshot map too (kpagecount above the captured mappings).
    let externalPages: Int
    /// The same field read from the kernel again after the capture (nil
    /// for fixtures, or when the VMA is gone).
    let kernelAgain: String?
    /// For a rollup field: the same field summed over the captured smaps
    /// blocks (the gate VMA left out), as "N kB"; nil elsewhere.
    var smapsSum: String? = nil
    /// The kernel's value moved during the capture: its second read differs
    /// from the first, or equals the model's (the model reflects kpageflags,
    /// read after smaps and numa_maps).
    var kernelMoved: Bool { kernelAgain.map { $0 != kernel || $0 == ours } ?? false }
}

/// /proc/<pid>/smaps, smaps_rollup and numa_maps read again right after
/// the capture, while the process still runs.
struct OracleReread {
    var smaps: [UInt64: SmapsBlock] = [:]
    var rollup: KernelSnapshot.SmapsRollup?
    var numa: [UInt64: NumaMapsLine] = [:]

    static func read(pid: Int32) -> OracleReread {
        var r = OracleReread()
        if let t = try? RawIO.readText("/proc/\(pid)/smaps"), let b = try? SnapshotReader.parseSmaps(t, path: "reread") {
            for x in b { r.smaps[x.header.start] = x }
        }
        if let t = try? RawIO.readText("/proc/\(pid)/smaps_rollup") {
            r.rollup = try? SnapshotReader.parseSmapsRollup(t, path: "reread")
        }
        if let t = try? RawIO.readText("/proc/\(pid)/numa_maps"), let l = try? SnapshotReader.parseNumaMaps(t, path: "reread") {
            for x in l { r.numa[x.start] = x }
        }
        return r
    }
}

/// The named exceptions. Each says which field may differ, under which
/// condition that can be checked on the capture, and why; a difference no
/// exception explains fails the test.
enum OracleExceptions {
    static let externalPss = OracleException(
        name: "external-pss",
        reason: "Pss of pages that processes outside the snapshot also map (libc, ld.so): smaps divides by the mapcount at smaps time, the model by kpagecount read later; processes start and exit in between")
    static let externalMapmax = OracleException(
        name: "external-mapmax",
        reason: "numa_maps mapmax of pages that processes outside the snapshot also map: read before kpagecount, which moves as processes start and exit")
    static let lruDrift = OracleException(
        name: "lru-drift",
        reason: "numa_maps active counts PG_active|PG_unevictable, which the LRU changes asynchronously (per-CPU activate batches drained by any task, mark_page_accessed when another mapper exits); numa_maps is read before kpageflags and the kernel's own second read moved too")

    static let rollupAfterSmaps = OracleException(
        name: "rollup-after-smaps",
        reason: "smaps_rollup Referenced is a read of its own, after smaps: the process runs during the capture and its pages were referenced in between; the model equals the captured smaps' sum, the kernel's rollup does not")

    static func explain(_ c: OracleFieldContext) -> OracleException? {
        switch (c.file, c.field) {
        case (.rollup, "Referenced"):
            return c.smapsSum == c.ours && c.kernel != c.ours ? rollupAfterSmaps : nil
        case (.smaps, "Pss"), (.rollup, "Pss"), (.rollup, "Pss_File"):
            return c.externalPages > 0 ? externalPss : nil
        case (.numa, "mapmax"):
            return c.externalPages > 0 ? externalMapmax : nil
        case (.numa, "active"):
            return c.kernelMoved ? lruDrift : nil
        default:
            return nil
        }
    }
}

/// Per-field tallies for one process (or one fixture), with every mismatch.
struct OracleTally {
    struct Mismatch: CustomStringConvertible {
        let file: OracleFieldContext.File
        let vma: String
        let field: String
        let kernel: String
        let ours: String
        let exception: OracleException?
        var again: String? = nil
        var description: String {
            "\(file.rawValue) \(vma) \(field): kernel '\(kernel)' model '\(ours)'"
                + (again.map { " kernel re-read '\($0)'" } ?? "") + " — "
                + (exception.map { "\($0.name): \($0.reason)" } ?? "UNEXPLAINED")
        }
    }
    var vmas = 0
    var smapsFields = 0, smapsEqual = 0
    var rollupFields = 0, rollupEqual = 0
    var numaLines = 0, numaFields = 0, numaEqual = 0
    var pagemapWords = 0, pagemapEqual = 0
    var mismatches: [Mismatch] = []
    var unexplained: [Mismatch] { mismatches.filter { $0.exception == nil } }

    mutating func add(_ o: OracleTally) {
        vmas += o.vmas
        smapsFields += o.smapsFields; smapsEqual += o.smapsEqual
        rollupFields += o.rollupFields; rollupEqual += o.rollupEqual
        numaLines += o.numaLines; numaFields += o.numaFields; numaEqual += o.numaEqual
        pagemapWords += o.pagemapWords; pagemapEqual += o.pagemapEqual
        mismatches += o.mismatches
    }

    /// Pagemap words regenerated from the rebuilt model vs the captured ones
    /// (the gate VMA, not rebuilt, is left out).
    mutating func addPagemap(_ snap: Snapshot, _ rebuilt: RebuiltSnapshot) {
        for (rp, sp) in zip(rebuilt.processes, snap.processes) {
            let d = ModelPagemap.differences(rp, sp)
            let words = sp.maps.indices.filter { rp.vmas[$0] != nil }.reduce(0) { $0 + sp.maps[$1].pageCount }
            pagemapWords += words
            pagemapEqual += words - d.count
            for x in d.prefix(4) {
                Swift.print("pagemap differs: pid \(sp.pid) 0x\(String(x.address, radix: 16)) captured \(x.captured) model \(x.model)")
            }
        }
    }
}

enum LiveOracle {
    /// The one exception to "every captured VMA is compared": the rebuild
    /// leaves the gate VMA ([vsyscall]) out by default
    /// (`SnapshotRebuildOptions.includeGateVMA`), so its smaps block has no
    /// rebuilt counterpart. Remove this (return false) once the rebuild keeps it.
    static func rebuildDropsVMA(_ header: MapsLine) -> Bool { header.name == "[vsyscall]" }

    /// Producer options for a captured process.
    static func options(_ p: ProcessSnapshot, thp: THPSettings) -> ProcOptions {
        var o = ProcOptions()
        o.protectionKeys = p.smaps.first?["ProtectionKey"] != nil
        o.thp = thp
        return o
    }

    /// One numa_maps field as compared: start, policy, file/kind or a key's value ("absent").
    static func numaValue(_ l: NumaMapsLine, _ field: String) -> String {
        switch field {
        case "start": return String(l.start, radix: 16)
        case "policy": return l.policy
        case "file/kind":
            return l.file.map { "file=\($0)" } ?? (l.isHeap ? "heap" : l.isStack ? "stack" : l.isHuge ? "huge" : "-")
        default: return l.fields.first { $0.key == field }?.value ?? "absent"
        }
    }

    /// PFN → present pagemap words naming it, over every captured process.
    static func capturedMappings(_ snap: Snapshot) -> [UInt64: Int] {
        var n: [UInt64: Int] = [:]
        for p in snap.processes {
            for w in p.pagemap where w.isPresent {
                if let pfn = w.pfn, pfn != 0 { n[pfn, default: 0] += 1 }
            }
        }
        return n
    }

    /// Pages in `words` whose kpagecount exceeds the captured mappings.
    static func externalPages(_ words: ArraySlice<PagemapWord>, _ snap: Snapshot, _ mapped: [UInt64: Int]) -> Int {
        var n = 0
        for w in words where w.isPresent {
            guard let pfn = w.pfn, let r = snap.record(pfn: pfn) else { continue }
            if Int(r.count) > (mapped[pfn] ?? 0) { n += 1 }
        }
        return n
    }

    /// Compares our smaps, smaps_rollup and numa_maps of every rebuilt
    /// process with the kernel's captured text, field by field, per VMA.
    static func compare(_ snap: Snapshot, _ rebuilt: RebuiltSnapshot, thp: THPSettings,
                        reread: [Int32: OracleReread] = [:],
                        label: (ProcessSnapshot, MapsLine) -> String) throws -> OracleTally {
        let mapped = capturedMappings(snap)
        var total = OracleTally()
        for (rp, p) in zip(rebuilt.processes, snap.processes) {
            var t = OracleTally()
            let opts = options(p, thp: thp)
            let again = reread[p.pid]
            // smaps, per VMA (the gate VMA is not part of the rebuilt mm).
            let ours = try SnapshotReader.parseSmaps(try Smaps.text(rp.addressSpace, options: opts), path: "model smaps")
            let kernelIdx = p.smaps.indices.filter { !rebuildDropsVMA(p.smaps[$0].header) }
            if ours.count != kernelIdx.count {
                t.mismatches.append(.init(file: .smaps, vma: "pid \(p.pid)", field: "VMA count",
                                          kernel: "\(kernelIdx.count)", ours: "\(ours.count)", exception: nil))
            }
            var processExternal = 0
            for (ki, b) in zip(kernelIdx, ours) {
                let a = p.smaps[ki]
                let ext = externalPages(p.pagemapWords(vma: ki), snap, mapped)
                processExternal += ext
                let name = label(p, a.header)
                t.vmas += 1
                let a2 = again?.smaps[a.header.start]
                func check(_ field: String, _ k: String, _ o: String) {
                    t.smapsFields += 1
                    if k == o { t.smapsEqual += 1; return }
                    let k2 = a2.map { field == "header" ? $0.header.raw : $0[field]?.value ?? "missing" }
                    let ctx = OracleFieldContext(file: .smaps, field: field, kernel: k, ours: o, block: a,
                                                 externalPages: ext, kernelAgain: k2)
                    t.mismatches.append(.init(file: .smaps, vma: name, field: field, kernel: k, ours: o,
                                              exception: OracleExceptions.explain(ctx), again: k2))
                }
                check("header", a.header.raw, b.header.raw)
                for f in a.fields { check(f.name, f.value, b[f.name]?.value ?? "missing") }
                for f in b.fields where a[f.name] == nil { check(f.name, "missing", f.value) }
            }
            // smaps_rollup.
            if let captured = p.smapsRollup {
                let r = try SnapshotReader.parseSmapsRollup(try SmapsRollup.text(rp.addressSpace, options: opts),
                                                            path: "model smaps_rollup")
                func check(_ field: String, _ k: String, _ o: String) {
                    t.rollupFields += 1
                    if k == o { t.rollupEqual += 1; return }
                    let k2 = again?.rollup.map { field == "header" ? $0.header.raw : $0[field]?.value ?? "missing" }
                    let sum = p.smaps.filter { !rebuildDropsVMA($0.header) }.reduce(UInt64(0)) { $0 + ($1.kilobytes(field) ?? 0) }
                    let ctx = OracleFieldContext(file: .rollup, field: field, kernel: k, ours: o, block: nil,
                                                 externalPages: processExternal, kernelAgain: k2, smapsSum: "\(sum) kB")
                    t.mismatches.append(.init(file: .rollup, vma: "pid \(p.pid) [rollup]", field: field, kernel: k, ours: o,
                                              exception: OracleExceptions.explain(ctx), again: k2))
                }
                // The rollup header's end is the last VMA's: the gate VMA is outside the mm either way.
                check("header", captured.header.raw, r.header.raw)
                for f in captured.fields { check(f.name, f.value, r[f.name]?.value ?? "missing") }
            }
            // numa_maps, per line (the kernel prints no line for the gate VMA).
            if !p.numaMaps.isEmpty {
                let n = try SnapshotReader.parseNumaMaps(try NumaMaps.text(rp.addressSpace, options: opts), path: "model numa_maps")
                if n.count != p.numaMaps.count {
                    t.mismatches.append(.init(file: .numa, vma: "pid \(p.pid)", field: "line count",
                                              kernel: "\(p.numaMaps.count)", ours: "\(n.count)", exception: nil))
                }
                for (a, b) in zip(p.numaMaps, n) {
                    t.numaLines += 1
                    let vi = p.vmaIndex(containing: a.start)
                    let block = vi.map { p.smaps[$0] }
                    let ext = vi.map { externalPages(p.pagemapWords(vma: $0), snap, mapped) } ?? 0
                    let name = block.map { label(p, $0.header) } ?? String(a.start, radix: 16)
                    let a2 = again?.numa[a.start]
                    func check(_ field: String, _ k: String, _ o: String) {
                        t.numaFields += 1
                        if k == o { t.numaEqual += 1; return }
                        let k2 = a2.map { l in numaValue(l, field) }
                        let ctx = OracleFieldContext(file: .numa, field: field, kernel: k, ours: o, block: block,
                                                     externalPages: ext, kernelAgain: k2)
                        t.mismatches.append(.init(file: .numa, vma: name, field: field, kernel: k, ours: o,
                                                  exception: OracleExceptions.explain(ctx), again: k2))
                    }
                    check("start", numaValue(a, "start"), numaValue(b, "start"))
                    check("policy", numaValue(a, "policy"), numaValue(b, "policy"))
                    check("file/kind", numaValue(a, "file/kind"), numaValue(b, "file/kind"))
                    var keys: [String] = []
                    for f in a.fields + b.fields where !keys.contains(f.key) { keys.append(f.key) }
                    for k in keys { check(k, numaValue(a, k), numaValue(b, k)) }
                }
            }
            total.add(t)
        }
        return total
    }
}

// MARK: the table

/// One row of the oracle table.
struct OracleRow {
    let name: String
    let pids: Int
    let tally: OracleTally
    let note: String

    var markdown: String {
        var groups: [String: Int] = [:]
        var order: [String] = []
        for m in tally.mismatches {
            let key = "\(m.file.rawValue) \(m.field) (\(m.exception?.name ?? "UNEXPLAINED"))"
            if groups[key] == nil { order.append(key) }
            groups[key, default: 0] += 1
        }
        let diffs = order.isEmpty ? "none" : order.map { "\($0) ×\(groups[$0]!)" }.joined(separator: "; ")
        let t = tally
        return "| \(name) | \(pids) | \(t.vmas) | \(t.pagemapEqual)/\(t.pagemapWords) | \(t.smapsEqual)/\(t.smapsFields) | \(t.rollupEqual)/\(t.rollupFields) "
            + "| \(t.numaEqual)/\(t.numaFields) (\(t.numaLines)) | \(diffs)\(note.isEmpty ? "" : "; " + note) |"
    }

    /// Printed by every case so that the full table can be collected from
    /// the test log (`grep '^ORACLE'`).
    func print() {
        Swift.print("ORACLE-ROW " + markdown)
        for m in tally.mismatches { Swift.print("ORACLE-DIFF \(name): \(m)") }
    }
}
