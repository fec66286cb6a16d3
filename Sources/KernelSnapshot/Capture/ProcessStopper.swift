#if canImport(Glibc)
import Glibc
#endif

/// Stops capture targets with SIGSTOP (a group stop: every thread) and
/// resumes them with SIGCONT. A target that was already stopped (state T)
/// is left as found. The pids stopped and not yet resumed are also kept in
/// `StoppedTargets`, which a signal handler can resume from.
package final class ProcessStopper {
    private var stopped: [Int32] = []
    /// How often, and how long between, to look whether every thread has stopped.
    private static let stopPolls = 2000
    private static let stopPollMicroseconds: useconds_t = 1000

    func stop(_ pid: Int32) throws {
        if Self.allThreadsStopped(pid) { return }
        guard StoppedTargets.add(pid) else {
            throw SnapshotError.invalidArgument(reason: "more than \(StoppedTargets.capacity) processes to stop")
        }
        if kill(pid, SIGSTOP) != 0 {
            let e = errno
            StoppedTargets.remove(pid)
            if e == ESRCH { throw SnapshotError.processNotFound(pid: pid, path: "/proc/\(pid)") }
            throw SnapshotError.cannotStop(pid: pid, path: "/proc/\(pid)", errno: e, reason: String(cString: strerror(e)))
        }
        stopped.append(pid)
        // SIGSTOP takes effect when each thread next leaves the kernel; a
        // thread asleep uninterruptibly stops later, and the kpagecount
        // comparison covers whatever it does meanwhile.
        for _ in 0..<Self.stopPolls where !Self.allThreadsStopped(pid) { usleep(Self.stopPollMicroseconds) }
    }

    func resumeAll() {
        for pid in stopped {
            kill(pid, SIGCONT)
            StoppedTargets.remove(pid)
        }
        stopped.removeAll()
    }

    /// Every thread of `pid` is stopped, traced, or gone (/proc/PID/task/TID/stat state).
    static func allThreadsStopped(_ pid: Int32) -> Bool {
        guard let tids = try? RawIO.listDirectory("/proc/\(pid)/task") else { return true }
        for tid in tids {
            if let state = schedulerState("/proc/\(pid)/task/\(tid)/stat"), !"tTZX".contains(state) { return false }
        }
        return true
    }

    /// The state letter of a /proc stat file (R, S, D, T, t, Z, X, …): the
    /// first field after the command name's closing parenthesis; nil when unreadable.
    package static func schedulerState(_ statPath: String) -> Character? {
        guard let stat = try? RawIO.readText(statPath), let close = stat.lastIndex(of: ")") else { return nil }
        return stat[stat.index(after: close)...].first { $0 != " " }
    }
}

/// The pids a capture has stopped, in a fixed table that a signal handler
/// may read without allocating: `SnapshotCapture.resumeStoppedTargets()`.
enum StoppedTargets {
    static let capacity = 1024
    nonisolated(unsafe) static let slots: UnsafeMutablePointer<Int32> = {
        let p = UnsafeMutablePointer<Int32>.allocate(capacity: capacity)
        p.initialize(repeating: 0, count: capacity)
        return p
    }()

    static func add(_ pid: Int32) -> Bool {
        for i in 0..<capacity where slots[i] == 0 { slots[i] = pid; return true }
        return false
    }

    static func remove(_ pid: Int32) {
        for i in 0..<capacity where slots[i] == pid { slots[i] = 0 }
    }

    static func resumeAll() {
        for i in 0..<capacity where slots[i] > 0 {
            kill(slots[i], SIGCONT)
            slots[i] = 0
        }
    }
}

extension SnapshotCapture {
    /// Sends SIGCONT to every process a capture in progress has stopped.
    /// Safe to call from a signal handler (no allocation, only kill(2)).
    public static func resumeStoppedTargets() { StoppedTargets.resumeAll() }

    /// Installs handlers for SIGINT, SIGTERM, SIGHUP and SIGQUIT that resume
    /// the stopped targets, then die of the signal as they would have.
    public static func resumeTargetsOnTerminatingSignals() {
        _ = StoppedTargets.slots // initialised here, not in the handler
        for sig in [SIGINT, SIGTERM, SIGHUP, SIGQUIT] {
            signal(sig) { received in
                StoppedTargets.resumeAll()
                signal(received, SIG_DFL)
                raise(received)
            }
        }
    }
}
