import Foundation
import Glibc
import KernelSnapshot
import MemoryModel
import TestKit
import ProcFS
import Scenario

/// Runs the built `ptwalk` executable and holds what it printed.
struct PtwalkRun {
    let arguments: [String]
    let status: Int32
    let stdout: [UInt8]
    let stderr: String

    var text: String { String(decoding: stdout, as: UTF8.self) }
    var lines: [Substring] { text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() }
    var command: String { "ptwalk " + arguments.joined(separator: " ") }
}

enum Ptwalk {
    /// The executable: next to the test bundle (swift build puts every
    /// product of the package in the same directory), or $PTWALK.
    static let executable: String? = {
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment["PTWALK"] { candidates.append(env) }
        let bundleDir = Bundle.main.bundleURL
        candidates.append(bundleDir.appendingPathComponent("ptwalk").path)
        candidates.append(bundleDir.deletingLastPathComponent().appendingPathComponent("ptwalk").path)
        if let exe = Bundle.main.executableURL {
            candidates.append(exe.deletingLastPathComponent().appendingPathComponent("ptwalk").path)
        }
        let arg0 = URL(fileURLWithPath: CommandLine.arguments[0])
        candidates.append(arg0.deletingLastPathComponent().appendingPathComponent("ptwalk").path)
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    static let available = executable != nil

    /// Runs ptwalk with `arguments`; stdout and stderr go through files (no
    /// pipe can fill up).
    static func run(_ arguments: [String]) throws -> PtwalkRun {
        guard let executable else { throw PtwalkTestError("ptwalk executable not found next to the test bundle") }
        let dir = tempDirectory("run")
        defer { remove(dir) }
        let outPath = dir + "/stdout", errPath = dir + "/stderr"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        try out.close(); try err.close()
        let stdout = try [UInt8](Data(contentsOf: URL(fileURLWithPath: outPath)))
        let stderr = String(decoding: try Data(contentsOf: URL(fileURLWithPath: errPath)), as: UTF8.self)
        return PtwalkRun(arguments: arguments, status: p.terminationStatus, stdout: stdout, stderr: stderr)
    }

    // MARK: Fixtures and files

    static let pythonIdle = fixtureSnapshot("python-idle")

    /// A fresh empty directory under /tmp.
    static func tempDirectory(_ tag: String) -> String { temporaryDirectory("ptwalk-test-\(tag)") }

    static func remove(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

    static func read(_ path: String) throws -> [UInt8] { try [UInt8](Data(contentsOf: URL(fileURLWithPath: path))) }
    static func readText(_ path: String) throws -> String { String(decoding: try read(path), as: UTF8.self) }
    static func write(_ text: String, to path: String) throws { try Data(text.utf8).write(to: URL(fileURLWithPath: path)) }

    /// An executable on $PATH.
    static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let p = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    // MARK: In-process references

    /// Little-endian bytes of `words`.
    static func bytes(_ words: [UInt64]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(words.count * 8)
        for w in words { for k in 0..<8 { out.append(UInt8(truncatingIfNeeded: w >> (8 * UInt64(k)))) } }
        return out
    }

    /// Producer options as ptwalk picks them for a snapshot process.
    static func options(for captured: ProcessSnapshot?) -> ProcOptions {
        var o = ProcOptions()
        o.protectionKeys = captured?.smaps.first?["ProtectionKey"] != nil
        return o
    }

    /// `text` with the inode of anonymous hugetlb and shared-anonymous
    /// mappings masked in maps/smaps headers: the model numbers those files
    /// from a process-wide counter (as the kernel does), so a build in the
    /// test process and one in a fresh ptwalk process can differ there.
    static func maskAnonInodes(_ text: String) -> String {
        var out = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasSuffix("/anon_hugepage (deleted)") || line.hasSuffix("/dev/zero (deleted)") || line.contains("[anon_shmem:") {
                var f = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
                if f.count > 4 { f[4] = "INODE" }
                out += f.joined(separator: " ") + "\n"
            } else {
                out += line + "\n"
            }
        }
        return out
    }

    /// Sums of smaps counters over VMAs (what smem adds up), in kB.
    static func smapsSums(_ smaps: String) -> [String: Int] {
        var sums: [String: Int] = [:]
        for line in smaps.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count == 3, f[2] == "kB", f[0].hasSuffix(":"), let v = Int(f[1]) else { continue }
            sums[String(f[0].dropLast()), default: 0] += v
        }
        return sums
    }
}

struct PtwalkTestError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
