import LiveKernel
import Foundation
import Testing
import Glibc
import MemoryModel
import ProcFS
@testable import KernelSnapshot

/// A program installed on the machine, run until it prints "ready" and
/// blocks reading stdin (its steady state), then captured stopped.
struct RealProgram: Sendable, CustomStringConvertible {
    let name: String
    let tool: String
    let arguments: [String]
    /// Lines written to stdin before waiting for "ready" (sqlite3's script).
    var input: String = ""
    /// A command that must succeed for the program to count as present (a module import).
    var probe: [String]? = nil
    var description: String { name }

    static let all: [RealProgram] = [
        RealProgram(name: "python3-list", tool: "python3", arguments: ["-c",
            "import sys\nx = list(range(3_000_000))\nprint('ready', flush=True)\nsys.stdin.read()"]),
        RealProgram(name: "python3-numpy", tool: "python3", arguments: ["-c",
            "import sys, numpy\na = numpy.arange(4_000_000, dtype=numpy.float64)\nb = a * 2\nprint('ready', flush=True)\nsys.stdin.read()"],
            probe: ["python3", "-c", "import numpy"]),
        RealProgram(name: "perl", tool: "perl", arguments: ["-e",
            "my @a = (1 .. 1_000_000); my %h = map { $_ => $_ } 1 .. 50_000; $| = 1; print \"ready\\n\"; <STDIN>;"]),
        RealProgram(name: "sqlite3-memory", tool: "sqlite3", arguments: [":memory:"], input:
            "CREATE TABLE t(x INTEGER, y BLOB);\n"
            + "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) INSERT INTO t SELECT x, randomblob(100) FROM c;\n"
            + "SELECT 'ready';\n"),
        RealProgram(name: "node", tool: "node", arguments: ["-e",
            "const a = new Array(1_000_000).fill(0).map((_, i) => i); console.log('ready'); process.stdin.resume();"]),
        RealProgram(name: "bash", tool: "bash", arguments: ["-c",
            "a=(); for ((i = 0; i < 20000; i++)); do a+=(\"$i\"); done; echo ready; read -r line"]),
    ]

    /// The tool's path on $PATH, nil when it is not installed.
    static func which(_ tool: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") where access("\(dir)/\(tool)", X_OK) == 0 { return "\(dir)/\(tool)" }
        return nil
    }

    /// Why the program cannot run here, nil when it can.
    var absentReason: String? {
        guard let path = Self.which(tool) else { return "\(tool) is not installed (not on PATH)" }
        if let probe, let probeTool = Self.which(probe[0]) {
            let (ok, out) = LiveMappings.run(probeTool, Array(probe.dropFirst()))
            if !ok { return "\(probe.joined(separator: " ")) fails: \(out.prefix(200))" }
        }
        _ = path
        return nil
    }
}

/// One running real program; stdin stays open (so it blocks) until `finish`.
final class RunningProgram {
    let process = Process()
    private let stdin = Pipe(), stdout = Pipe()
    var pid: Int32 { process.processIdentifier }

    init(_ program: RealProgram) throws {
        process.executableURL = URL(fileURLWithPath: RealProgram.which(program.tool)!)
        process.arguments = program.arguments
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
        if !program.input.isEmpty { stdin.fileHandleForWriting.write(Data(program.input.utf8)) }
        var seen = ""
        while !seen.contains("ready") {
            let d = stdout.fileHandleForReading.availableData
            if d.isEmpty { break }
            seen += String(decoding: d, as: UTF8.self)
        }
        guard seen.contains("ready") else {
            finish()
            throw SnapshotError.invalidArgument(reason: "\(program.name) exited before printing ready: '\(seen)'")
        }
    }

    func finish() {
        guard process.isRunning else { return }
        try? stdin.fileHandleForWriting.close()
        kill(pid, SIGKILL)
        process.waitUntilExit()
    }

    /// The state letter of /proc/PID/stat (R, S, T, …).
    var state: Character? { ProcessStopper.schedulerState("/proc/\(pid)/stat") }
}

@Suite("Live oracle: real programs", .serialized,
       .enabled(if: TestSupport.isRoot && TestSupport.canReadKPageFlags, "needs root and /proc/kpageflags"))
struct LiveProgramOracleTests {
    @Test(arguments: RealProgram.all)
    func realProgram(_ program: RealProgram) throws {
        if let why = program.absentReason {
            print("ORACLE-SKIP \(program.name): \(why)")
            try Test.cancel("\(program.name): \(why)")
        }
        let running = try RunningProgram(program)
        defer { running.finish() }
        let work = TestSupport.tempDirectory("oracle-\(program.name)")
        defer { TestSupport.remove(work) }
        let dir = work + "/snap"
        let summary = try SnapshotCapture.capture(pids: [running.pid], to: dir)
        // Resumed: the program is back to blocking on stdin, not stopped.
        #expect(running.state != "T" && running.state != "t", "\(program.name) left stopped: \(String(describing: running.state))")
        #expect(summary.stability.stopped)
        let reread = [running.pid: OracleReread.read(pid: running.pid)]
        let thp = HostFacts.current().thp

        let snap = try SnapshotReader.read(directory: dir)
        #expect(snap.format.capture == summary.stability)
        let rebuilt = try SnapshotRebuilder.rebuild(snap)
        #expect(rebuilt.report.unplacedPFNs == 0, "\(rebuilt.report)")
        for w in rebuilt.report.warnings(.countsContradictSmaps) { print("ORACLE-WARN \(program.name): \(w)") }
        if summary.stability.stable {
            #expect(rebuilt.report.count(.countsContradictSmaps) == 0, "a stable capture's counts contradict its smaps: \(rebuilt.report)")
        }
        var tally = try LiveOracle.compare(snap, rebuilt, thp: thp, reread: reread) { _, m in
            let name = m.name.isEmpty ? "[anon \(String(m.start, radix: 16))]" : (m.name as NSString).lastPathComponent
            return name + " " + m.perms
        }
        tally.addPagemap(snap, rebuilt)
        #expect(tally.pagemapEqual == tally.pagemapWords, "pagemap words regenerated from the model differ")
        let note = "capture \(summary.stability.text)"
        OracleRow(name: program.name, pids: 1, tally: tally, note: note).print()
        for m in tally.unexplained { Issue.record("\(program.name): \(m)") }
    }
}
