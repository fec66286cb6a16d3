#if canImport(Glibc)
import Glibc
#endif
import KernelSnapshot

enum CaptureCommand: Command {
    static let name = "capture"
    static let summary = "Capture live processes from /proc into a snapshot directory (format v1; needs root)."
    static let synopsis = ["capture --pid PID [--pid PID …] --out DIR [--no-stop] [--attempts N]"]
    static let options = [
        OptionSpec("--pid", value: "PID", repeatable: true, "a process to capture (repeat for several: shared pages stay shared)"),
        OptionSpec("--out", value: "DIR", "the snapshot directory: new, or an existing empty directory"),
        OptionSpec("--no-stop", "leave the targets running (default: SIGSTOP while reading, then SIGCONT)"),
        OptionSpec("--attempts", value: "N", "captures to try until kpagecount holds still across the text files (default 5)"),
    ]
    static let discussion = """
    Writes FORMAT, kpageflags, proc/meminfo and, per pid, proc/PID/{maps, smaps,
    smaps_rollup, numa_maps, cmdline, status, pagemap} as docs/SNAPSHOT.md describes.
    PFNs and /proc/kpageflags need CAP_SYS_ADMIN: run it as root. On failure
    nothing is left behind. Read it back with `ptwalk --snapshot DIR …`.

    The targets are stopped with SIGSTOP while they are read and resumed with
    SIGCONT afterwards, also on error and when ptwalk gets SIGINT, SIGTERM,
    SIGHUP or SIGQUIT; ptwalk's own pid is captured running. kpagecount is
    read before and after the text files; when the readings differ the capture
    is repeated, and after --attempts tries the last one is kept, recorded as
    unstable in FORMAT's `capture` line and reported on stderr.
    """

    static func run(_ args: ParsedArguments) throws(CLIError) {
        let pidTexts = args.all("--pid")
        guard !pidTexts.isEmpty else { throw args.usage("capture needs at least one --pid PID") }
        guard let out = args.value("--out") else { throw args.usage("capture needs --out DIR") }
        var pids: [Int32] = []
        for t in pidTexts { pids.append(Int32(try parsePID(t, args: args))) }
        var options = SnapshotCapture.Options(stop: !args.has("--no-stop"))
        if let t = args.value("--attempts") {
            guard let n = Int(t), n >= 1 else { throw args.usage("--attempts '\(t)' is not a positive number") }
            options.maxAttempts = n
        }
        if options.stop && pids.contains(getpid()) {
            writeStderr("ptwalk: capture: pid \(getpid()) is ptwalk itself: captured running, not stopped\n")
        }
        if options.stop { SnapshotCapture.resumeTargetsOnTerminatingSignals() }
        let summary: SnapshotCapture.Summary
        do {
            summary = try SnapshotCapture.capture(pids: pids, to: out, options: options)
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
        let st = summary.stability
        s += "  capture: \(st.stopped ? "stopped" : "running"), \(st.stable ? "stable" : "unstable") after \(st.attempts) attempt(s)\n"
        if !st.stable {
            writeStderr("ptwalk: capture: unstable after \(st.attempts) attempts: the mapped pages or their kpagecount changed while the text files were read; kept the last attempt (FORMAT: capture \(st.text))\n")
        }
        var w = stdoutWriter()
        w.write(s)
        _ = w.finish()
    }
}
