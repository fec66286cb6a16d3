import Foundation
import MemoryModel
import ProcFS

enum ExportProcCommand: Command {
    static let name = "export-proc"
    static let summary = "Write a /proc-like tree of every process of the source, for tools such as `smem --source DIR`."
    static let synopsis = ["export-proc [--scenario FILE | --snapshot DIR] [--pid PID] DIR"]
    static let options = OptionSpec.source + [
        OptionSpec("--pkeys", "print ProtectionKey: lines in smaps (snapshots: as captured)"),
    ]
    static let positionals: ClosedRange<Int> = 1...1
    static let positionalName = "the output directory DIR"
    static let discussion = """
    Writes DIR/proc/meminfo and, for every process (or only --pid PID),
    DIR/proc/PID/{smaps, smaps_rollup, numa_maps, maps, cmdline, status, stat}.
    smaps, smaps_rollup, numa_maps and maps are our producers' output on the model,
    so a /proc reader sees exactly what `ptwalk smaps` prints: `smem --source DIR`
    reports USS (Private_Clean + Private_Dirty), PSS and RSS equal to the sums of
    our smaps. A snapshot's cmdline, status and meminfo are copied as captured;
    stat (and, for a scenario, everything but the producers' output) is derived
    from the model: sizes and RSS counters are the model's, times and ids fixed.
    DIR is created if needed; DIR/proc must not exist yet.
    """

    static func run(_ args: ParsedArguments) throws(CLIError) {
        let dir = args.positionals[0]
        let sourceOptions = try Source.Options(args)
        let source = try Source.load(sourceOptions)
        let processes = sourceOptions.pid == nil ? source.processes : [try source.process(pid: sourceOptions.pid)]

        let fm = FileManager.default
        var isDir: ObjCBool = false
        let existed = fm.fileExists(atPath: dir, isDirectory: &isDir)
        if existed && !isDir.boolValue { throw .input("export-proc \(dir): exists and is not a directory") }
        if fm.fileExists(atPath: dir + "/proc") { throw .input("export-proc \(dir): \(dir)/proc already exists") }
        do {
            try fm.createDirectory(atPath: dir + "/proc", withIntermediateDirectories: true)
        } catch {
            throw .input("export-proc \(dir): cannot create \(dir)/proc: \((error as NSError).localizedDescription)")
        }
        do {
            try export(source, processes, to: dir + "/proc", protectionKeys: args.has("--pkeys"))
        } catch {
            try? fm.removeItem(atPath: existed ? dir + "/proc" : dir)
            throw error
        }
        var w = stdoutWriter()
        w.write("wrote \(dir)/proc: meminfo and \(processes.count) process(es): "
                + processes.map { "\($0.pid) (\($0.name))" }.joined(separator: ", ") + "\n")
        _ = w.finish()
    }

    private static func export(_ source: Source, _ processes: [Source.Process], to proc: String,
                               protectionKeys: Bool) throws(CLIError) {
        let meminfo = source.snapshot?.meminfo
            ?? ProcFiles.meminfo(memory: source.memory, processes: source.processes.map(\.mm))
        try write(Array(meminfo.utf8), to: proc + "/meminfo")
        for p in processes {
            let d = proc + "/\(p.pid)"
            do { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: false) } catch {
                throw .input("export-proc: cannot create \(d): \((error as NSError).localizedDescription)")
            }
            let o = source.procOptions(for: p, protectionKeys: protectionKeys)
            let smaps = try producing("smaps of pid \(p.pid)") { try Smaps.text(p.mm, options: o) }
            try write(Array(smaps.utf8), to: d + "/smaps")
            let rollup = try producing("smaps_rollup of pid \(p.pid)") { try SmapsRollup.text(p.mm, options: o) }
            try write(Array(rollup.utf8), to: d + "/smaps_rollup")
            let numa = try producing("numa_maps of pid \(p.pid)") { try NumaMaps.text(p.mm, options: o) }
            try write(Array(numa.utf8), to: d + "/numa_maps")
            try write(Array(maps(fromSmaps: smaps).utf8), to: d + "/maps")
            let cmdline = p.captured.map(\.cmdlineBytes).flatMap { $0.isEmpty ? nil : $0 } ?? ProcFiles.cmdline(name: p.name)
            try write(cmdline, to: d + "/cmdline")
            let status = p.captured?.statusText
                ?? ProcFiles.status(pid: p.pid, ppid: p.ppid, name: p.name, mm: p.mm)
            try write(Array(status.utf8), to: d + "/status")
            try write(Array(ProcFiles.stat(pid: p.pid, ppid: p.ppid, name: p.name, mm: p.mm).utf8), to: d + "/stat")
        }
    }

    /// The maps lines are the smaps headers: the lines whose first word
    /// (the address range) has no colon.
    static func maps(fromSmaps smaps: String) -> String {
        var out = ""
        for line in smaps.split(separator: "\n", omittingEmptySubsequences: true) {
            let first = line.prefix { $0 != " " }
            if first.contains("-") && !first.contains(":") { out += line + "\n" }
        }
        return out
    }

    private static func write(_ bytes: [UInt8], to path: String) throws(CLIError) {
        do { try Data(bytes).write(to: URL(fileURLWithPath: path)) } catch {
            throw .input("export-proc: cannot write \(path): \((error as NSError).localizedDescription)")
        }
    }
}
