import Foundation
import Glibc
import Testing
import LiveKernel
import KernelSnapshot
import ProcFS
import Scenario

/// `capture` of a live child process, read back with --snapshot; and
/// `export-proc` read by smem.
@Suite("ptwalk capture and export-proc", .enabled(if: Ptwalk.available, "ptwalk executable not found next to the test bundle"))
struct CaptureAndExportTests {
    static let canCapture = getuid() == 0 && access("/proc/kpageflags", R_OK) == 0
    static let smem = Ptwalk.which("smem")

    @Test(.enabled(if: canCapture, "capture needs root and a readable /proc/kpageflags"))
    func captureAChildThenReadItBack() throws {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/sleep")
        child.arguments = ["30"]
        try child.run()
        // SIGKILL: the child inherits the test runner's signal mask, which may block SIGTERM.
        defer { kill(child.processIdentifier, SIGKILL); child.waitUntilExit() }
        usleep(100_000)   // let the loader finish mapping
        let pid = child.processIdentifier
        let dir = Ptwalk.tempDirectory("capture")
        defer { Ptwalk.remove(dir) }
        let out = dir + "/snap"

        let cap = try Ptwalk.run(["capture", "--pid", String(pid), "--out", out])
        #expect(cap.status == 0, "\(cap.stderr)")
        #expect(cap.lines.first?.hasPrefix("captured 1 process(es) into \(out)") == true)
        #expect(cap.lines.contains { $0.hasPrefix("  pid \(pid): ") && $0.contains(" VMAs, ") })
        #expect(FileManager.default.fileExists(atPath: out + "/FORMAT"))

        // smaps of the capture: the kernel's, the gate VMA [vsyscall] last
        // as the host's vsyscall mode prints it, but, for pages other
        // processes map too, Pss and the shared/private split of clean
        // pages: their mapcount moves between the kernel's smaps and
        // kpagecount reads as processes start and exit (the tests run
        // ptwalk processes in parallel).
        let smaps = try Ptwalk.run(["--snapshot", out, "smaps", "--pid", String(pid)])
        #expect(smaps.status == 0, "\(smaps.stderr)")
        #expect(!smaps.stderr.contains("gateVMASkipped"))
        let kernelText = try Ptwalk.readText(out + "/proc/\(pid)/smaps")
        let kernelLines = kernelText.split(separator: "\n")
        #expect(smaps.lines.count == kernelLines.count)
        for (a, b) in zip(kernelLines, smaps.lines) where a != b {
            let field = a.prefix { $0 != ":" }
            #expect(["Pss", "Shared_Clean", "Private_Clean"].contains(field) && b.hasPrefix(field + ":"), "'\(a)' vs '\(b)'")
        }
        let host = HostFacts.current()
        let gateBlock = kernelText.range(of: "\nffffffffff600000-").map { String(kernelText[kernelText.index(after: $0.lowerBound)...]) }
        #expect((gateBlock != nil) == (host.vsyscall != .none), "host vsyscall mode \(host.vsyscall)")
        if let gateBlock { #expect(smaps.text.hasSuffix(gateBlock), "our smaps ends with the kernel's [vsyscall] block") }
        // maps, through export-proc: the captured file, line for line.
        let exported = try Ptwalk.run(["export-proc", "--snapshot", out, "--quiet", dir + "/tree"])
        #expect(exported.status == 0, "\(exported.stderr)")
        #expect(try Ptwalk.readText(dir + "/tree/proc/\(pid)/maps") == (try Ptwalk.readText(out + "/proc/\(pid)/maps")))
        // pagemap as root saw it, word for word.
        let pagemap = try Ptwalk.run(["--snapshot", out, "--quiet", "pagemap"])
        #expect(pagemap.stdout == (try Ptwalk.read(out + "/proc/\(pid)/pagemap")))

        // Capturing into the same (now non-empty) directory, or a pid that does not exist, is an input error.
        let again = try Ptwalk.run(["capture", "--pid", String(pid), "--out", out])
        #expect(again.status == 1 && again.stdout.isEmpty && again.stderr.contains("is not empty"))
        let gone = try Ptwalk.run(["capture", "--pid", "4194303", "--out", dir + "/gone"])
        #expect(gone.status == 1 && gone.stdout.isEmpty && gone.stderr.contains("4194303"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/gone"))
    }

    static func state(_ pid: pid_t) -> Character? { ProcessStopper.schedulerState("/proc/\(pid)/stat") }

    /// A stopped capture resumes its target and says so in FORMAT; --no-stop
    /// records a running capture; an unsignallable target is a typed error.
    @Test(.enabled(if: canCapture, "capture needs root and a readable /proc/kpageflags"))
    func captureStopsResumesAndRecords() throws {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/sleep")
        child.arguments = ["30"]
        try child.run()
        defer { kill(child.processIdentifier, SIGKILL); child.waitUntilExit() }
        let pid = child.processIdentifier
        let dir = Ptwalk.tempDirectory("capture-stop")
        defer { Ptwalk.remove(dir) }

        let stopped = try Ptwalk.run(["capture", "--pid", String(pid), "--out", dir + "/stopped"])
        #expect(stopped.status == 0, "\(stopped.stderr)")
        let format = try Ptwalk.readText(dir + "/stopped/FORMAT")
        #expect(format.contains("\ncapture stopped "), "\(format)")
        #expect(Self.state(pid) == "S", "sleep left in state \(String(describing: Self.state(pid)))")

        let running = try Ptwalk.run(["capture", "--pid", String(pid), "--out", dir + "/running", "--no-stop", "--attempts", "2"])
        #expect(running.status == 0, "\(running.stderr)")
        #expect(try Ptwalk.readText(dir + "/running/FORMAT").contains("\ncapture running "))

        let bad = try Ptwalk.run(["capture", "--pid", String(pid), "--out", dir + "/bad", "--attempts", "0"])
        #expect(bad.status != 0 && bad.stderr.contains("--attempts"))

        // Run as nobody, ptwalk may not signal a root process: EPERM from kill(2).
        guard let setpriv = Ptwalk.which("setpriv"), let exe = Ptwalk.executable else { return }
        let out = "/tmp/pagewalk-eperm-\(getpid())"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: setpriv)
        p.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", exe, "capture", "--pid", String(pid), "--out", out]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 1 && text.contains("cannot stop process \(pid) with SIGSTOP") && text.contains("Operation not permitted"), "\(text)")
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(Self.state(pid) == "S")
    }

    /// The tree export-proc writes for the default scenario.
    @Test func exportProcTree() throws {
        let dir = Ptwalk.tempDirectory("export")
        defer { Ptwalk.remove(dir) }
        let r = try Ptwalk.run(["export-proc", dir + "/out"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.text == "wrote \(dir)/out/proc: meminfo and 2 process(es): 1000 (python3), 1001 (python3)\n")
        let proc = dir + "/out/proc"
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: proc)) == ["meminfo", "1000", "1001"])
        let built = DefaultScenarioTests.built
        for pid in [1000, 1001] {
            let files = Set(try FileManager.default.contentsOfDirectory(atPath: proc + "/\(pid)"))
            #expect(files == ["smaps", "smaps_rollup", "numa_maps", "maps", "cmdline", "status", "stat"])
            let mm = built.addressSpace(pid: Int32(pid))!
            let smaps = try Smaps.text(mm)
            let exported = try Ptwalk.readText(proc + "/\(pid)/smaps")
            #expect(Ptwalk.maskAnonInodes(exported) == Ptwalk.maskAnonInodes(smaps))
            #expect(try Ptwalk.readText(proc + "/\(pid)/smaps_rollup") == (try SmapsRollup.text(mm)))
            #expect(try Ptwalk.readText(proc + "/\(pid)/numa_maps") == (try NumaMaps.text(mm)))
            let maps = try Ptwalk.readText(proc + "/\(pid)/maps").split(separator: "\n")
            // The mm's VMAs, then the gate VMA as x86-64's default vsyscall=xonly prints it.
            #expect(maps.count == mm.vmas.count + 1)
            #expect(maps.last == "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]")
            let exportedHeaders = Set(exported.split(separator: "\n").filter { !$0.prefix { $0 != " " }.contains(":") })
            for line in maps { #expect(exportedHeaders.contains(line)) }
            #expect(try Ptwalk.readText(proc + "/\(pid)/stat").hasPrefix("\(pid) (python3) S \(pid == 1000 ? 1 : 1000) "))
        }
        let meminfo = try Ptwalk.readText(proc + "/meminfo")
        #expect(meminfo.hasPrefix("MemTotal:          65536 kB\n"))   // the default scenario's 64M budget
        #expect(meminfo.contains("\nSReclaimable:          0 kB\n"))
    }

    /// smem's per-process table for `tree`: pid → (uss, pss, rss).
    static func smemTable(_ tree: String) throws -> [Int: [Int]] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: smem!)
        p.arguments = ["--source", tree, "-c", "pid uss pss rss", "-H"]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        var out: [Int: [Int]] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let f = line.split(separator: " ").compactMap { Int($0) }
            if f.count == 4 { out[f[0]] = Array(f[1...]) }
        }
        return out
    }

    /// smem reads the exported tree; its USS, PSS and RSS per process equal
    /// the sums of our smaps (Private_Clean + Private_Dirty, Pss, Rss).
    @Test(.enabled(if: smem != nil, "smem is not installed (Debian: apt-get install smem)"))
    func smemReadsTheExport() throws {
        let dir = Ptwalk.tempDirectory("smem")
        defer { Ptwalk.remove(dir) }
        var sources: [(args: [String], tree: String)] = [([], dir + "/default")]
        if let fixture = Ptwalk.pythonIdle { sources.append((["--snapshot", fixture, "--quiet"], dir + "/fixture")) }
        try Ptwalk.write(ScenarioFileTests.json, to: dir + "/tiny.json")
        sources.append((["--scenario", dir + "/tiny.json"], dir + "/tiny"))
        for (args, tree) in sources {
            let r = try Ptwalk.run(args + ["export-proc", tree])
            #expect(r.status == 0, "\(r.stderr)")
            let table = try Self.smemTable(tree)
            let pids = try FileManager.default.contentsOfDirectory(atPath: tree + "/proc").compactMap { Int($0) }
            #expect(Set(table.keys) == Set(pids), "smem saw \(table.keys.sorted()), exported \(pids.sorted())")
            for pid in pids {
                let smaps = try Ptwalk.run(args + ["smaps", "--pid", String(pid)])
                let sums = Ptwalk.smapsSums(smaps.text)
                let expected = [sums["Private_Clean", default: 0] + sums["Private_Dirty", default: 0],
                                sums["Pss", default: 0], sums["Rss", default: 0]]
                #expect(table[pid] == expected, "pid \(pid) in \(tree): smem \(table[pid] ?? []) vs smaps sums \(expected)")
            }
        }
    }
}
