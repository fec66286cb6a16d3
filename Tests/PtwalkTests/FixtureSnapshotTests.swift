import Foundation
import Testing
import KernelSnapshot
import MemoryModel
import PageWalk
import ProcFS

/// The commands on the fixture snapshot Tests/Fixtures/snapshots/python-idle
/// (a real capture of a Python interpreter), checked against the same
/// producers in-process and against what the kernel printed.
@Suite("ptwalk --snapshot python-idle",
       .enabled(if: Ptwalk.available, "ptwalk executable not found next to the test bundle"),
       .enabled(if: Ptwalk.pythonIdle != nil, "fixture Tests/Fixtures/snapshots/python-idle not found"))
struct FixtureSnapshotTests {
    static let dir = Ptwalk.pythonIdle ?? ""
    static let snapshot = try! SnapshotReader.read(directory: dir)
    static let rebuilt = try! SnapshotRebuilder.rebuild(snapshot)
    static var captured: ProcessSnapshot { snapshot.processes[0] }
    static var mm: AddressSpace { rebuilt.processes[0].addressSpace }
    static var pid: String { String(captured.pid) }

    /// smaps blocks keyed by their header line.
    static func blocks(_ text: String) -> [(header: String, lines: [String])] {
        var out: [(String, [String])] = []
        for line in text.split(separator: "\n") {
            let first = line.prefix { $0 != " " }
            if first.contains("-") && !first.contains(":") { out.append((String(line), [])) } else { out[out.count - 1].1.append(String(line)) }
        }
        return out
    }

    @Test func smapsEqualsTheProducerAndTheKernelWithDocumentedExceptions() throws {
        let r = try Ptwalk.run(["--snapshot", Self.dir, "smaps"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.text == (try Smaps.text(Self.mm, options: Ptwalk.options(for: Self.captured))))

        // Against the kernel's smaps, every block, the gate VMA [vsyscall]
        // last. One exception: Pss of pages that processes outside the
        // snapshot map too can differ by a few kB (kpagecount is read after
        // smaps, and libc's mapcount moves with every process start and exit).
        let kernel = Self.blocks(Self.captured.smapsText)
        #expect(kernel.last?.header.hasSuffix("[vsyscall]") == true)
        let ours = Self.blocks(r.text)
        #expect(kernel.count == ours.count)
        var pssDiffs = 0
        for (k, o) in zip(kernel, ours) {
            #expect(k.header == o.header)
            #expect(k.lines.count == o.lines.count, "\(k.header)")
            for (a, b) in zip(k.lines, o.lines) where a != b {
                #expect(a.hasPrefix("Pss:") && b.hasPrefix("Pss:"), "\(k.header): '\(a)' vs '\(b)'")
                let shared = k.lines.contains { $0.hasPrefix("Shared_Clean:") && !$0.hasSuffix(" 0 kB") }
                #expect(shared, "Pss differs on a VMA without shared pages: \(k.header)")
                pssDiffs += 1
            }
        }
        #expect(pssDiffs <= 2)
        // The whole file, byte for byte, once the Pss lines are the kernel's.
        var patched = r.text.split(separator: "\n", omittingEmptySubsequences: false)
        let kernelLines = Self.captured.smapsText.split(separator: "\n", omittingEmptySubsequences: false)
        if patched.count == kernelLines.count {
            for i in patched.indices where patched[i].hasPrefix("Pss:") { patched[i] = kernelLines[i] }
        }
        #expect(patched.joined(separator: "\n") == Self.captured.smapsText)
    }

    @Test func smapsRollupAndNumaMaps() throws {
        let rollup = try Ptwalk.run(["--snapshot", Self.dir, "--quiet", "smaps_rollup"])
        #expect(rollup.status == 0 && rollup.stderr.isEmpty)
        #expect(rollup.text == (try SmapsRollup.text(Self.mm, options: Ptwalk.options(for: Self.captured))))
        // Against the kernel: all equal but Pss and Pss_File (the smaps exception).
        let kernelRollup = try #require(Self.captured.smapsRollupText)
        for (a, b) in zip(kernelRollup.split(separator: "\n"), rollup.lines) where a != b {
            #expect(a.hasPrefix("Pss:") || a.hasPrefix("Pss_File:"), "'\(a)' vs '\(b)'")
        }

        let numa = try Ptwalk.run(["numa_maps", "--snapshot", Self.dir])
        #expect(numa.status == 0)
        #expect(numa.text == Self.captured.numaMapsText, "numa_maps differs from the kernel's")
    }

    @Test func pagemapEqualsTheCapturedFileByteForByte() throws {
        let r = try Ptwalk.run(["--snapshot", Self.dir, "pagemap"])
        #expect(r.status == 0, "\(r.stderr)")
        let file = try Ptwalk.read(Self.dir + "/proc/\(Self.pid)/pagemap")
        #expect(r.stdout.count == file.count)
        #expect(r.stdout == file)
        if r.stdout != file, let i = (0..<min(r.stdout.count, file.count)).first(where: { r.stdout[$0] != file[$0] }) {
            Issue.record("first difference at byte \(i) (word \(i / 8))")
        }

        let hex = try Ptwalk.run(["--snapshot", Self.dir, "--quiet", "pagemap", "--hex"])
        #expect(hex.status == 0, "\(hex.stderr)")
        #expect(hex.lines.count == Self.captured.pagemap.count)
        var addresses: [UInt64] = []
        for m in Self.captured.maps { for k in 0..<UInt64(m.pageCount) { addresses.append(m.start + k * 4096) } }
        for (line, (address, word)) in zip(hex.lines, zip(addresses, Self.captured.pagemap)) {
            let f = line.split(separator: " ")
            #expect(UInt64(f[0].dropFirst(2), radix: 16) == address)
            #expect(UInt64(f[1].dropFirst(2), radix: 16) == word.rawValue)
        }
    }

    @Test func walkAndWarnings() throws {
        let r = try Ptwalk.run(["walk", "--snapshot", Self.dir])
        #expect(r.status == 0)
        let mm = Self.mm
        let expected = try mm.withMmapReadLock { lock in
            try mm.walk(0..<mm.geometry.userAddressLimit, lock: lock).map { $0.description }
        }
        #expect(r.lines.map(String.init) == expected)
        // Rebuild warnings on stderr, each with its count.
        let warnings = r.stderr.split(separator: "\n")
        #expect(warnings.first?.hasPrefix("ptwalk: snapshot \(Self.dir): rebuilt with \(Self.rebuilt.report.warnings.count) kind(s) of warning") == true)
        for w in Self.rebuilt.report.warnings {
            #expect(warnings.contains { $0 == "ptwalk: " + w.description })
        }
        #expect(!r.stderr.contains("gateVMASkipped"))
        #expect(r.stderr.contains("warning: externalMappings: \(Self.rebuilt.report.count(.externalMappings)) × "))
        let quiet = try Ptwalk.run(["walk", "--snapshot", Self.dir, "--quiet", "--range", "0x1000-0x2000"])
        #expect(quiet.status == 0 && quiet.stderr.isEmpty && quiet.stdout.isEmpty)
    }

    @Test func unknownPidOfTheSnapshot() throws {
        let r = try Ptwalk.run(["--snapshot", Self.dir, "--quiet", "smaps", "--pid", "1"])
        #expect(r.status == 1)
        #expect(r.stdout.isEmpty)
        #expect(r.stderr.contains("--pid 1: no such process in snapshot \(Self.dir) (it holds \(Self.pid))"))
    }
}
