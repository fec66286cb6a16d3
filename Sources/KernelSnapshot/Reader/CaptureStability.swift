/// Whether a capture saw the processes' page counts hold still: the FORMAT
/// file's `capture <stopped|running> <stable|unstable> <attempts>` line.
///
/// Capture reads /proc/kpagecount for the mapped PFNs before and after the
/// text files (smaps and the rest); `stable` means the two readings agreed
/// on the attempt kept, `unstable` that they still differed after the last
/// attempt. smaps counts a page as shared or private from its mapcount, so
/// an unstable capture may hold counts that contradict its smaps.
public struct CaptureStability: Hashable, Sendable {
    public static let key = "capture"
    /// The targets were stopped (SIGSTOP) while being read.
    public var stopped: Bool
    /// The two kpagecount readings of the last attempt agreed.
    public var stable: Bool
    /// Attempts made (≥ 1).
    public var attempts: Int

    public init(stopped: Bool, stable: Bool, attempts: Int) {
        self.stopped = stopped; self.stable = stable; self.attempts = attempts
    }

    /// The value of the FORMAT line.
    public var text: String { "\(stopped ? "stopped" : "running") \(stable ? "stable" : "unstable") \(attempts)" }

    /// Parses the value of a `capture` line; the error names the line.
    public static func parse(_ value: String, path: String, line: Int) throws -> CaptureStability {
        let tokens = value.split(separator: " ")
        func bad(_ why: String) -> SnapshotError {
            SnapshotError.malformedText(path: path, line: line,
                reason: "capture '\(value)': \(why) (expected 'stopped|running stable|unstable <attempts>')")
        }
        guard tokens.count == 3 else { throw bad("\(tokens.count) values, not 3") }
        let stopped: Bool
        switch tokens[0] {
        case "stopped": stopped = true
        case "running": stopped = false
        default: throw bad("'\(tokens[0])' is neither stopped nor running")
        }
        let stable: Bool
        switch tokens[1] {
        case "stable": stable = true
        case "unstable": stable = false
        default: throw bad("'\(tokens[1])' is neither stable nor unstable")
        }
        guard let attempts = Int(tokens[2]), attempts >= 1 else { throw bad("attempts '\(tokens[2])' is not a positive number") }
        return CaptureStability(stopped: stopped, stable: stable, attempts: attempts)
    }
}
