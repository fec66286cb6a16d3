// Command-line plumbing shared by every ptwalk command: errors and exit
// codes, option specs and their parser, help text, stdout/stderr output.

#if canImport(Glibc)
import Glibc
#endif
import ProcFS
import MemoryModel

// MARK: - Errors and exit codes

/// What a command can fail with. The exit code tells which kind it was:
/// 1 for input that cannot be used (a missing or corrupt file or snapshot, a
/// pid the source does not hold), 2 for a command line that is malformed.
enum CLIError: Error {
    /// Exit 2: unknown command or option, missing or malformed value.
    /// `command` names the command whose help to point at.
    case usage(String, command: String?)
    /// Exit 1: the command line is fine but its input is not.
    case input(String)

    var exitCode: Int32 {
        switch self {
        case .usage: return ExitCode.usage
        case .input: return ExitCode.input
        }
    }

    var message: String {
        switch self {
        case .usage(let m, let command):
            let help = command.map { "ptwalk \($0) --help" } ?? "ptwalk --help"
            return "ptwalk: \(m)\nptwalk: see '\(help)'"
        case .input(let m):
            return "ptwalk: \(m)"
        }
    }
}

enum ExitCode {
    static let ok: Int32 = 0
    static let input: Int32 = 1
    static let usage: Int32 = 2
}

// MARK: - Output

/// Writes all of `s` to stderr (unbuffered: warnings come out in order with
/// the error that may follow).
func writeStderr(_ s: String) {
    var s = s
    s.withUTF8 { buf in
        var offset = 0
        while offset < buf.count {
            let n = Glibc.write(2, buf.baseAddress! + offset, buf.count - offset)
            if n <= 0 { return }
            offset += n
        }
    }
}

/// The producers' sink for stdout: a `FileDescriptorSink` that also counts
/// the bytes it was handed (pagemap pads short VMAs by that count).
struct StdoutSink: ProcSink {
    var fd = FileDescriptorSink(fd: 1)
    var count = 0
    mutating func write(_ chunk: UnsafeRawBufferPointer) {
        count += chunk.count
        fd.write(chunk)
    }
}

/// A page-buffered writer to stdout.
func stdoutWriter() -> ProcWriter<StdoutSink> { ProcWriter(StdoutSink(), capacity: 1 << 16) }

/// `value` in lowercase hex, zero-padded to `width` digits.
func hex(_ value: UInt64, width: Int = 0) -> String {
    let s = String(value, radix: 16)
    return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
}

// MARK: - Options

/// One option a command accepts: `--name` (a flag) or `--name VALUE`.
struct OptionSpec {
    let name: String
    /// The value's placeholder (`FILE`, `PID`); nil for a flag.
    let value: String?
    let help: String
    var repeatable = false

    init(_ name: String, value: String? = nil, repeatable: Bool = false, _ help: String) {
        self.name = name; self.value = value; self.repeatable = repeatable; self.help = help
    }

    static let scenario = OptionSpec("--scenario", value: "FILE", "build the processes from this JSON scenario (docs/SCENARIO.md)")
    static let snapshot = OptionSpec("--snapshot", value: "DIR", "rebuild the processes from this snapshot directory (format v1)")
    static let pid = OptionSpec("--pid", value: "PID", "the process to show (default: the source's first process)")
    static let quiet = OptionSpec("--quiet", "do not print snapshot rebuild warnings on stderr")
    static let apply = OptionSpec("--apply", value: "OP", repeatable: true,
                                  "apply this op (one JSON op object of the scenario format) to the process first; repeatable, in order")
    /// The options that choose the source and the process.
    static let source: [OptionSpec] = [.scenario, .snapshot, .pid, .quiet, .apply]
    static let walker = OptionSpec("--walker", value: "range|callback",
                                   "the walker the producer runs on (default: range; the output is the same)")
    static let noBatch = OptionSpec("--no-batch", "range walker: one entry per page-table entry (no batching)")
}

/// A parsed command line: the command, its options and positional arguments.
struct ParsedArguments {
    let command: String
    var flags: Set<String> = []
    var values: [String: [String]] = [:]
    var positionals: [String] = []
    var helpRequested = false

    func has(_ name: String) -> Bool { flags.contains(name) || values[name] != nil }
    func value(_ name: String) -> String? { values[name]?.last }
    func all(_ name: String) -> [String] { values[name] ?? [] }

    func usage(_ message: String) -> CLIError { .usage(message, command: command) }
}

/// A ptwalk command.
protocol Command {
    static var name: String { get }
    /// One line for the command list.
    static var summary: String { get }
    /// The usage line(s), without the leading `ptwalk `.
    static var synopsis: [String] { get }
    static var options: [OptionSpec] { get }
    /// Longer text for `--help`.
    static var discussion: String { get }
    /// How many positional arguments the command takes.
    static var positionals: ClosedRange<Int> { get }
    /// What the positional arguments are (`DIR`), for messages.
    static var positionalName: String { get }
    static func run(_ args: ParsedArguments) throws(CLIError)
}

extension Command {
    static var positionals: ClosedRange<Int> { 0...0 }
    static var positionalName: String { "argument" }

    static var help: String {
        var s = "Usage:\n"
        for line in synopsis {
            // A line starting with blanks continues the one above it.
            s += line.hasPrefix(" ") ? "         \(line)\n" : "  ptwalk \(line)\n"
        }
        s += "\n" + summary + "\n"
        if !discussion.isEmpty { s += "\n" + discussion + "\n" }
        let all = options + [OptionSpec("--help", "show this help")]
        let labels = all.map { o in o.value.map { v in "\(o.name) \(v)" } ?? o.name }
        let width = min(28, labels.map(\.count).max() ?? 0)
        s += "\nOptions:\n"
        for (o, label) in zip(all, labels) {
            if label.count > width {
                s += "  \(label)\n  \(String(repeating: " ", count: width))  \(o.help)\n"
            } else {
                s += "  \(label)\(String(repeating: " ", count: width - label.count))  \(o.help)\n"
            }
        }
        return s
    }
}

/// Parses `arguments` (the command name removed) against `spec`.
func parseArguments(_ arguments: [String], command: String, spec: [OptionSpec],
                    positionals: ClosedRange<Int>, positionalName: String = "argument") throws(CLIError) -> ParsedArguments {
    var parsed = ParsedArguments(command: command)
    var i = 0
    var onlyPositionals = false
    while i < arguments.count {
        let arg = arguments[i]
        i += 1
        if onlyPositionals || arg == "-" || !arg.hasPrefix("-") {
            parsed.positionals.append(arg)
            continue
        }
        if arg == "--" { onlyPositionals = true; continue }
        if arg == "--help" || arg == "-h" { parsed.helpRequested = true; continue }
        var name = arg, inline: String?
        if let eq = arg.firstIndex(of: "=") {
            name = String(arg[..<eq])
            inline = String(arg[arg.index(after: eq)...])
        }
        guard let option = spec.first(where: { $0.name == name }) else {
            throw parsed.usage("unknown option '\(name)' for '\(command)'")
        }
        if let placeholder = option.value {
            let value: String
            if let inline {
                value = inline
            } else if i < arguments.count {
                value = arguments[i]
                i += 1
            } else {
                throw parsed.usage("option \(name) needs a value (\(placeholder))")
            }
            if parsed.values[name] != nil && !option.repeatable {
                throw parsed.usage("option \(name) is given more than once")
            }
            parsed.values[name, default: []].append(value)
        } else {
            if inline != nil { throw parsed.usage("option \(name) takes no value (got '\(arg)')") }
            if parsed.flags.contains(name) { throw parsed.usage("option \(name) is given more than once") }
            parsed.flags.insert(name)
        }
    }
    if parsed.helpRequested { return parsed }
    if parsed.positionals.count < positionals.lowerBound {
        throw parsed.usage("'\(command)' needs \(positionalName)")
    }
    if parsed.positionals.count > positionals.upperBound {
        let extra = parsed.positionals[positionals.upperBound]
        throw parsed.usage("unexpected argument '\(extra)' for '\(command)'")
    }
    return parsed
}

// MARK: - Values

/// A hex address as in maps (`7fff0000`, `0x7fff0000`; underscores allowed).
func parseAddress(_ text: String) -> UInt64? {
    var t = Substring(text)
    if t.hasPrefix("0x") || t.hasPrefix("0X") { t = t.dropFirst(2) }
    let digits = t.filter { $0 != "_" }
    guard !digits.isEmpty else { return nil }
    return UInt64(digits, radix: 16)
}

/// `START-END`, both hex, page aligned, START < END.
func parseRange(_ text: String, option: String, args: ParsedArguments) throws(CLIError) -> Range<UInt64> {
    let parts = text.split(separator: "-", omittingEmptySubsequences: false)
    guard parts.count == 2, let start = parseAddress(String(parts[0])), let end = parseAddress(String(parts[1])) else {
        throw args.usage("\(option) '\(text)' is not START-END (hex addresses, e.g. 0x7f0000000000-0x7f0000200000)")
    }
    guard start & Geometry.pageOffsetMask == 0, end & Geometry.pageOffsetMask == 0 else {
        throw args.usage("\(option) '\(text)': both ends must be page aligned (multiples of 0x1000)")
    }
    guard start < end else { throw args.usage("\(option) '\(text)': START must be below END") }
    return start..<end
}

/// One of `choices` for `option`.
func parseChoice(_ text: String, option: String, _ choices: [String], args: ParsedArguments) throws(CLIError) -> String {
    guard choices.contains(text) else {
        throw args.usage("\(option) '\(text)' is not one of \(choices.joined(separator: ", "))")
    }
    return text
}

/// A process id (1…4194304, the kernel's PID_MAX_LIMIT).
func parsePID(_ text: String, args: ParsedArguments) throws(CLIError) -> Int {
    guard let v = Int(text), (1...4_194_304).contains(v) else {
        throw args.usage("--pid '\(text)' is not a process id (1…4194304)")
    }
    return v
}

/// The `--walker` option as ProcFS's `ProcWalker`.
func parseProcWalker(_ args: ParsedArguments) throws(CLIError) -> ProcWalker {
    guard let w = args.value("--walker") else { return .range }
    return try parseChoice(w, option: "--walker", ["range", "callback"], args: args) == "range" ? .range : .callback
}
