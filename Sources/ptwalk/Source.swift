// Where the processes come from: a JSON scenario (--scenario FILE), a
// snapshot directory (--snapshot DIR), or the embedded default scenario.

import Foundation
import KernelSnapshot
import MemoryModel
import PageWalk
import ProcFS
import Scenario

/// The built or rebuilt processes of one source.
final class Source {
    enum Kind {
        case defaultScenario
        case scenario(path: String)
        case snapshot(directory: String)
    }

    /// One process of the source.
    struct Process {
        let pid: Int
        let name: String
        let ppid: Int
        let mm: AddressSpace
        /// What the kernel printed, for a snapshot's process.
        let captured: ProcessSnapshot?
    }

    let kind: Kind
    let processes: [Process]
    let memory: PhysicalMemory
    let snapshot: Snapshot?
    let document: ScenarioDocument?
    /// Kept alive: the address spaces belong to them.
    private let built: BuiltScenario?
    private let rebuilt: RebuiltSnapshot?

    private init(kind: Kind, processes: [Process], memory: PhysicalMemory, snapshot: Snapshot?,
                 document: ScenarioDocument?, built: BuiltScenario?, rebuilt: RebuiltSnapshot?) {
        self.kind = kind; self.processes = processes; self.memory = memory; self.snapshot = snapshot
        self.document = document; self.built = built; self.rebuilt = rebuilt
    }

    var description: String {
        switch kind {
        case .defaultScenario: return "the default scenario"
        case .scenario(let p): return "scenario \(p)"
        case .snapshot(let d): return "snapshot \(d)"
        }
    }

    var isSnapshot: Bool { snapshot != nil }

    /// The process `pid`, or the first one.
    func process(pid: Int?) throws(CLIError) -> Process {
        guard let pid else {
            guard let first = processes.first else { throw .input("\(description) holds no process") }
            return first
        }
        guard let p = processes.first(where: { $0.pid == pid }) else {
            let pids = processes.map { String($0.pid) }.joined(separator: ", ")
            throw .input("--pid \(pid): no such process in \(description) (it holds \(pids))")
        }
        return p
    }

    /// Producer options for `p`: ProtectionKey lines when the captured
    /// kernel printed them (snapshots) or when asked for.
    func procOptions(for p: Process, walker: ProcWalker = .range, batching: Bool = true,
                     protectionKeys: Bool = false) -> ProcOptions {
        var o = ProcOptions(walker: walker, batching: batching)
        o.protectionKeys = protectionKeys || p.captured?.smaps.first?["ProtectionKey"] != nil
        return o
    }

    // MARK: Loading

    /// The source options of a command line.
    struct Options {
        var scenario: String?
        var snapshot: String?
        var pid: Int?
        var quiet = false
        /// `--apply` ops, in order, and the walker their users run on.
        var apply: [String] = []
        var walker: WalkerKind = .range

        init(_ args: ParsedArguments) throws(CLIError) {
            scenario = args.value("--scenario")
            snapshot = args.value("--snapshot")
            if scenario != nil && snapshot != nil {
                throw args.usage("--scenario and --snapshot exclude each other: give one source")
            }
            if let p = args.value("--pid") { pid = try parsePID(p, args: args) }
            quiet = args.has("--quiet")
            apply = args.all("--apply")
            walker = try parseProcWalker(args)
        }
    }

    /// Loads the source (rebuild warnings go to stderr unless quiet) and
    /// applies the `--apply` ops to the chosen process, in order.
    static func load(_ o: Options) throws(CLIError) -> Source {
        let source = try loadUnapplied(o)
        guard !o.apply.isEmpty else { return source }
        let p = try source.process(pid: o.pid)
        let g = p.mm.geometry
        let architecture: ScenarioDocument.Architecture = g.architecture == .arm64 ? .arm64 : .x86_64
        for (k, text) in o.apply.enumerated() {
            let op: OperationSpec
            do {
                op = try OperationSpec.parse(text, architecture: architecture, levels: g.levels,
                                             numaNodes: p.mm.memory.nodeCount, path: "--apply[\(k)]")
            } catch {
                throw .usage("--apply \(text): \(error.description)", command: nil)
            }
            do { try ScenarioBuilder.apply(op, to: p.mm, walker: o.walker) } catch {
                throw .input("--apply \(text) on pid \(p.pid): \(error.description)")
            }
        }
        return source
    }

    private static func loadUnapplied(_ o: Options) throws(CLIError) -> Source {
        if let dir = o.snapshot { return try loadSnapshot(dir, quiet: o.quiet) }
        let document: ScenarioDocument
        let kind: Kind
        if let path = o.scenario {
            kind = .scenario(path: path)
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: path))
            } catch {
                throw .input("--scenario \(path): cannot read the file: \(readFailure(path, error))")
            }
            do { document = try ScenarioDocument.parse(data) } catch {
                throw .input("--scenario \(path): \(error.description)")
            }
        } else {
            kind = .defaultScenario
            do { document = try DefaultScenario.load() } catch {
                throw .input("the default scenario: \(error.description)")
            }
        }
        let built: BuiltScenario
        do { built = try ScenarioBuilder.build(document) } catch {
            let what: String
            if case .scenario(let p) = kind { what = "--scenario \(p)" } else { what = "the default scenario" }
            throw .input("\(what): \(error.description)")
        }
        let processes = built.processes.map { p in
            Process(pid: Int(p.pid), name: p.name, ppid: document.process(pid: Int(p.pid))?.parent ?? 1,
                    mm: p.addressSpace, captured: nil)
        }
        return Source(kind: kind, processes: processes, memory: built.memory, snapshot: nil,
                      document: document, built: built, rebuilt: nil)
    }

    private static func loadSnapshot(_ dir: String, quiet: Bool) throws(CLIError) -> Source {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) else {
            throw .input("--snapshot \(dir): no such directory")
        }
        guard isDir.boolValue else { throw .input("--snapshot \(dir): not a directory") }
        let snap: Snapshot
        let rebuilt: RebuiltSnapshot
        do {
            snap = try SnapshotReader.read(directory: dir)
            rebuilt = try SnapshotRebuilder.rebuild(snap)
        } catch {
            throw .input("--snapshot \(dir): corrupt or unusable snapshot: \(error.description)")
        }
        if !quiet { reportWarnings(rebuilt.report, directory: dir) }
        var processes: [Process] = []
        for rp in rebuilt.processes {
            let captured = snap.process(pid: rp.pid)
            let name = rp.name.isEmpty ? rp.addressSpace.options.name : rp.name
            let ppid = captured?.status("PPid").flatMap { Int($0) } ?? 0
            processes.append(Process(pid: Int(rp.pid), name: name, ppid: ppid, mm: rp.addressSpace, captured: captured))
        }
        return Source(kind: .snapshot(directory: dir), processes: processes, memory: rebuilt.memory,
                      snapshot: snap, document: nil, built: nil, rebuilt: rebuilt)
    }

    /// The rebuild report's warnings, one line each with its count.
    private static func reportWarnings(_ report: RebuildReport, directory: String) {
        guard !report.warnings.isEmpty else { return }
        let total = report.warnings.reduce(0) { $0 + $1.count }
        var s = "ptwalk: snapshot \(directory): rebuilt with \(report.warnings.count) kind(s) of warning, \(total) item(s) in all\n"
        for w in report.warnings { s += "ptwalk: \(w.description)\n" }
        writeStderr(s)
    }

    private static func readFailure(_ path: String, _ error: Error) -> String {
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: path, isDirectory: &isDir) { return "no such file" }
        if isDir.boolValue { return "it is a directory" }
        return (error as NSError).localizedDescription
    }
}

/// Runs `body`, turning a producer's walk error into an input error (the
/// model refused; it does not happen on a source that loaded).
func producing<R>(_ what: String, _ body: () throws -> R) throws(CLIError) -> R {
    do { return try body() } catch {
        throw .input("\(what): \(error)")
    }
}
