import Foundation
import TestKit
import Testing

/// Exit codes and messages: 0 ok, 1 unusable input (nothing on stdout),
/// 2 usage; --help for every command.
@Suite("ptwalk errors and help", .enabled(if: Ptwalk.available, "ptwalk executable not found next to the test bundle"))
struct ErrorAndHelpTests {
    static let commands = ["smaps", "smaps_rollup", "numa_maps", "pagemap", "walk", "mincore", "ptdump", "capture", "scenario", "export-proc"]

    @Test func helpForEveryCommand() throws {
        for c in Self.commands {
            for args in [[c, "--help"], ["help", c], [c, "-h"]] {
                let r = try Ptwalk.run(args)
                #expect(r.status == 0, "\(r.command)")
                #expect(r.text.hasPrefix("Usage:\n  ptwalk \(c) "), "\(r.command)")
                #expect(r.text.contains("\nOptions:\n") && r.text.contains("  --help "), "\(r.command)")
                #expect(r.stderr.isEmpty)
            }
        }
        let general = try Ptwalk.run(["--help"])
        #expect(general.status == 0)
        for c in Self.commands { #expect(general.text.contains("\n  \(c) "), "\(c) missing from ptwalk --help") }
        #expect(general.text.contains("Exit status: 0 success; 1 unusable input"))
        let none = try Ptwalk.run([])
        #expect(none.status == 2 && none.stdout.isEmpty && none.stderr.hasPrefix("Usage: ptwalk"))
    }

    /// (arguments, the text stderr must contain) for exit status 2.
    static let usageErrors: [([String], String)] = [
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["--pid", "1000"], "no command given"),
        (["smaps", "--bogus"], "unknown option '--bogus' for 'smaps'"),
        (["smaps", "--pid"], "option --pid needs a value (PID)"),
        (["smaps", "--pid", "abc"], "--pid 'abc' is not a process id"),
        (["smaps", "--pid", "0"], "--pid '0' is not a process id"),
        (["smaps", "--pid", "1000", "--pid", "1001"], "option --pid is given more than once"),
        (["smaps", "extra"], "unexpected argument 'extra' for 'smaps'"),
        (["smaps", "--walker", "sideways"], "--walker 'sideways' is not one of range, callback"),
        (["--scenario", "a.json", "--snapshot", "b", "smaps"], "--scenario and --snapshot exclude each other"),
        (["walk", "--range", "zz"], "--range 'zz' is not START-END"),
        (["walk", "--range", "0x2000-0x1000"], "--range '0x2000-0x1000': START must be below END"),
        (["walk", "--range", "0x1001-0x2000"], "both ends must be page aligned"),
        (["walk", "--pfnmap", "maybe"], "--pfnmap 'maybe' is not one of skip, hole, walk"),
        (["walk", "--holes=yes"], "option --holes takes no value"),
        (["pagemap", "--range", "1-"], "--range '1-' is not START-END"),
        (["mincore", "--walker", "up"], "--walker 'up' is not one of range, callback"),
        (["mincore", "--range", "0x3000-0x1000"], "--range '0x3000-0x1000': START must be below END"),
        (["ptdump", "--arch", "sparc"], "--arch 'sparc' is not one of x86_64, arm64"),
        (["ptdump", "--levels", "3"], "--levels '3' is not one of 4, 5"),
        (["ptdump", "--arch", "arm64", "--levels", "5"], "--levels 5: the arm64 layout has 4 levels"),
        (["capture", "--out", "/tmp/x"], "capture needs at least one --pid PID"),
        (["capture", "--pid", "1"], "capture needs --out DIR"),
        (["scenario"], "scenario needs --print-default or --check FILE"),
        (["scenario", "--print-default", "--check", "x"], "--print-default and --check exclude each other"),
        (["export-proc"], "'export-proc' needs the output directory DIR"),
    ]

    @Test func usageErrorsExit2AndNameTheArgument() throws {
        for (args, message) in Self.usageErrors {
            let r = try Ptwalk.run(args)
            #expect(r.status == 2, "\(r.command): status \(r.status)")
            #expect(r.stdout.isEmpty, "\(r.command)")
            #expect(r.stderr.contains(message), "\(r.command): stderr was: \(r.stderr)")
            #expect(r.stderr.contains("see 'ptwalk "), "\(r.command)")
        }
    }

    @Test func inputErrorsExit1WithNothingOnStdout() throws {
        let dir = Ptwalk.tempDirectory("input")
        defer { Ptwalk.remove(dir) }
        try Ptwalk.write("{ \"version\": 1,", to: dir + "/truncated.json")
        try Ptwalk.write("""
        { "version": 1, "architecture": "x86_64",
          "processes": [ { "pid": 5, "name": "x", "vmas": [ { "start": "0x1000", "size": "4K", "perms": "rw-q", "kind": "anon" } ] } ] }
        """, to: dir + "/badperms.json")
        let cases: [([String], String)] = [
            (["--scenario", dir + "/missing.json", "smaps"], "--scenario \(dir)/missing.json: cannot read the file: no such file"),
            (["--scenario", dir, "smaps"], "it is a directory"),
            (["--scenario", dir + "/truncated.json", "pagemap"], "--scenario \(dir)/truncated.json: invalid JSON at line"),
            (["--scenario", dir + "/badperms.json", "walk"], "processes[0].vmas[0].perms"),
            (["scenario", "--check", dir + "/badperms.json"], "processes[0].vmas[0].perms"),
            (["--snapshot", dir + "/nothing", "smaps"], "--snapshot \(dir)/nothing: no such directory"),
            (["--snapshot", dir, "numa_maps"], "\(dir)/FORMAT: file is missing"),
            (["smaps", "--pid", "77"], "--pid 77: no such process in the default scenario (it holds 1000, 1001)"),
            (["walk", "--range", "0x1000-0x800000000000"], "ends above the user address limit"),
        ]
        for (args, message) in cases {
            let r = try Ptwalk.run(args)
            #expect(r.status == 1, "\(r.command): status \(r.status)")
            #expect(r.stdout.isEmpty, "\(r.command)")
            #expect(r.stderr.hasPrefix("ptwalk: ") && r.stderr.contains(message), "\(r.command): stderr was: \(r.stderr)")
        }
    }

    /// Truncated copies of the fixture: every command that reads the
    /// snapshot exits 1, prints nothing on stdout and names the file.
    @Test(.enabled(if: Ptwalk.pythonIdle != nil, "fixture Tests/Fixtures/snapshots/python-idle not found"))
    func corruptSnapshotExits1() throws {
        let fixture = try #require(Ptwalk.pythonIdle)
        let dir = Ptwalk.tempDirectory("corrupt")
        defer { Ptwalk.remove(dir) }
        let pid = try Ptwalk.readText(fixture + "/FORMAT").split(separator: "\n")
            .first { $0.hasPrefix("pids ") }!.split(separator: " ")[1]
        // (file to truncate, new size, what stderr must name)
        let damages: [(String, Int, String)] = [
            ("proc/\(pid)/pagemap", 50_000, "pagemap is short"),
            ("kpageflags", 100_001, "kpageflags at byte offset"),
            ("proc/\(pid)/smaps", 40_000, "disagree"),
        ]
        for (i, (file, size, message)) in damages.enumerated() {
            let copy = dir + "/copy\(i)"
            try copyTree(fixture, to: copy)
            #expect(truncate(copy + "/" + file, off_t(size)) == 0)
            for command in [["smaps"], ["pagemap"], ["walk"], ["export-proc", dir + "/export\(i)"]] {
                let r = try Ptwalk.run(["--snapshot", copy] + command)
                #expect(r.status == 1, "\(r.command): status \(r.status)")
                #expect(r.stdout.isEmpty, "\(r.command)")
                #expect(r.stderr.contains("--snapshot \(copy): corrupt or unusable snapshot: "), "\(r.command): \(r.stderr)")
                #expect(r.stderr.contains(message), "\(r.command): \(r.stderr)")
            }
            #expect(!FileManager.default.fileExists(atPath: dir + "/export\(i)"))
        }
    }

    @Test func exportProcRefusesAnExistingTree() throws {
        let dir = Ptwalk.tempDirectory("exists")
        defer { Ptwalk.remove(dir) }
        try FileManager.default.createDirectory(atPath: dir + "/proc", withIntermediateDirectories: false)
        let r = try Ptwalk.run(["export-proc", dir])
        #expect(r.status == 1 && r.stdout.isEmpty)
        #expect(r.stderr.contains("\(dir)/proc already exists"))
    }
}
