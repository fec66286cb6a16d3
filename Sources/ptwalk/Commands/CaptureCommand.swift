#if canImport(Glibc)
import Glibc
#endif
import KernelSnapshot

enum CaptureCommand: Command {
    static let name = "capture"
    static let summary = "Capture live processes from /proc into a snapshot directory (format v1; needs root)."
    static let synopsis = ["capture --pid PID [--pid PID …] --out DIR"]
    static let options = [
        OptionSpec("--pid", value: "PID", repeatable: true, "a process to capture (repeat for several: shared pages stay shared)"),
        OptionSpec("--out", value: "DIR", "the snapshot directory: new, or an existing empty directory"),
    ]
    static let discussion = """
    Writes FORMAT, kpageflags, proc/meminfo and, per pid, proc/PID/{maps, smaps,
    smaps_rollup, numa_maps, cmdline, status, pagemap} as docs/SNAPSHOT.md describes.
    PFNs and /proc/kpageflags need CAP_SYS_ADMIN: run it as root. On failure
    nothing is left behind. Read it back with `ptwalk --snapshot DIR …`.
    """

    static func run(_ args: ParsedArguments) throws(CLIError) {
        let pidTexts = args.all("--pid")
        guard !pidTexts.isEmpty else { throw args.usage("capture needs at least one --pid PID") }
        guard let out = args.value("--out") else { throw args.usage("capture needs --out DIR") }
        var pids: [Int32] = []
        for t in pidTexts { pids.append(Int32(try parsePID(t, args: args))) }
        let summary: SnapshotCapture.Summary
        do {
            summary = try SnapshotCapture.capture(pids: pids, to: out)
        } catch let e as SnapshotError {
            var hint = ""
            if case .permissionDenied = e, getuid() != 0 { hint = " (capture needs root)" }
            throw .input("capture into \(out): \(e.description)\(hint)")
        } catch {
            throw .input("capture into \(out): \(error)")
        }
        var s = "captured \(summary.format.pids.count) process(es) into \(summary.directory) (kernel \(summary.format.kernel))\n"
        for (i, pid) in summary.format.pids.enumerated() {
            s += "  pid \(pid): \(summary.vmaCounts[i]) VMAs, \(summary.pagemapWords[i]) pagemap words"
            s += summary.attempts[i] > 1 ? " (\(summary.attempts[i]) attempts)\n" : "\n"
        }
        s += "  kpageflags: \(summary.kpageflagsRecords) records for \(summary.mappedPFNs) mapped PFNs\n"
        var w = stdoutWriter()
        w.write(s)
        _ = w.finish()
    }
}
