import Foundation
import Testing
import MemoryModel
import PageWalk
import ProcFS
import Scenario

/// Every process-showing command on a small scenario file written here.
@Suite("ptwalk --scenario FILE", .enabled(if: Ptwalk.available, "ptwalk executable not found next to the test bundle"))
struct ScenarioFileTests {
    static let json = """
    {
      "version": 1, "architecture": "x86_64", "memoryBudget": "16M", "numaNodes": 2,
      "processes": [
        { "pid": 42, "name": "tiny",
          "vmas": [
            { "start": "0x400000", "size": "64K", "perms": "r-xp", "kind": "file",
              "file": { "path": "/usr/bin/tiny", "dev": "08:01", "inode": 99, "offset": 0 } },
            { "start": "0x600000", "size": "4M", "perms": "rw-p", "kind": "anon", "name": "[heap]" },
            { "start": "0x7fff00000000", "size": "128K", "perms": "rw-p", "kind": "anon", "name": "[stack]",
              "flags": ["growsdown"] }
          ],
          "ops": [
            { "op": "fault", "start": "0x400000", "size": "32K" },
            { "op": "thp", "start": "0x600000", "size": "2M" },
            { "op": "fault", "start": "0x800000", "size": "64K", "write": true },
            { "op": "swapout", "start": "0x808000", "size": "16K" },
            { "op": "fault", "start": "0x7fff0001c000", "size": "16K", "write": true },
            { "op": "fork", "child": 43 }
          ] },
        { "pid": 43, "name": "tiny-child", "parent": 42,
          "ops": [ { "op": "fault", "start": "0x800000", "size": "8K", "write": true } ] }
      ]
    }
    """

    /// Writes the scenario to a fresh directory; returns (directory, file).
    static func scenarioFile() throws -> (String, String) {
        let dir = Ptwalk.tempDirectory("scenario")
        try Ptwalk.write(json, to: dir + "/tiny.json")
        return (dir, dir + "/tiny.json")
    }

    static let built = try! ScenarioBuilder.build(ScenarioDocument.parse(json))

    @Test(arguments: [42, 43])
    func everyCommandMatchesInProcess(pid: Int) throws {
        let (dir, file) = try Self.scenarioFile()
        defer { Ptwalk.remove(dir) }
        let mm = Self.built.addressSpace(pid: Int32(pid))!
        let src = ["--scenario", file, "--pid", String(pid)]

        let smaps = try Ptwalk.run(src + ["smaps"])
        #expect(smaps.status == 0, "\(smaps.stderr)")
        #expect(Ptwalk.maskAnonInodes(smaps.text) == Ptwalk.maskAnonInodes(try Smaps.text(mm)))
        #expect(smaps.text.hasPrefix("00400000-00410000 r-xp 00000000 08:01 99"))
        // No "vsyscall" key on x86_64: xonly, the gate VMA last; the forked
        // child has it too (dup_mm() copies the mm's context).
        let gateHeader = "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n"
        #expect(smaps.text.hasSuffix("VmFlags: ex \n") && smaps.text.contains("\n" + gateHeader))
        #expect(try Ptwalk.run(src + ["smaps_rollup"]).text == (try SmapsRollup.text(mm)))
        #expect(try Ptwalk.run(src + ["numa_maps"]).text == (try NumaMaps.text(mm)))

        var words: [UInt64] = []
        for vma in mm.vmas { words += try Pagemap.words(mm, vma.start..<vma.end, privileged: true) }
        #expect(words.count == (64 + 4096 + 128) / 4)
        words.append(0)             // the gate VMA's page: above TASK_SIZE, written as zero
        let pagemap = try Ptwalk.run(src + ["pagemap"])
        #expect(pagemap.stdout == Ptwalk.bytes(words))

        let walk = try Ptwalk.run(src + ["walk"])
        let expected = try mm.withMmapReadLock { lock in
            try mm.walk(0..<mm.geometry.userAddressLimit, lock: lock).map { $0.description }
        }
        #expect(walk.lines.map(String.init) == expected)
        #expect(walk.lines.contains { $0.contains(" swap ") || $0.contains("swap") })
        if pid == 42 { #expect(walk.lines.contains { $0.hasPrefix("0x600000-0x800000 pmd x1 folio") }) }
    }

    @Test func checkListsTheProcesses() throws {
        let (dir, file) = try Self.scenarioFile()
        defer { Ptwalk.remove(dir) }
        let r = try Ptwalk.run(["scenario", "--check", file])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.lines.count == 3)
        #expect(r.lines[0] == "\(file): valid, x86_64 4-level, 2 NUMA node(s)")
        #expect(r.lines[1].hasPrefix("  pid 42 tiny: 3 VMAs"))
        #expect(r.lines[2].hasPrefix("  pid 43 tiny-child: 3 VMAs"))
    }

    @Test func exportProcOfTheScenario() throws {
        let (dir, file) = try Self.scenarioFile()
        defer { Ptwalk.remove(dir) }
        let r = try Ptwalk.run(["--scenario", file, "export-proc", dir + "/tree"])
        #expect(r.status == 0, "\(r.stderr)")
        for pid in [42, 43] {
            let d = dir + "/tree/proc/\(pid)"
            let mm = Self.built.addressSpace(pid: Int32(pid))!
            #expect(Ptwalk.maskAnonInodes(try Ptwalk.readText(d + "/smaps")) == Ptwalk.maskAnonInodes(try Smaps.text(mm)))
            let stat = try Ptwalk.readText(d + "/stat")
            let name = pid == 42 ? "tiny" : "tiny-child"
            #expect(stat.hasPrefix("\(pid) (\(name)) S \(pid == 42 ? 1 : 42) "))
            #expect(stat.split(separator: " ").count == 52)
            #expect(try Ptwalk.read(d + "/cmdline") == Array(name.utf8) + [0])
            let status = try Ptwalk.readText(d + "/status")
            let rss = Ptwalk.smapsSums(try Smaps.text(mm))["Rss"]!
            #expect(status.contains("VmRSS:\t" + String(repeating: " ", count: 8 - String(rss).count) + "\(rss) kB\n"))
        }
    }
}
