// The dispatcher: finds the command, parses its options, runs it and turns
// errors into messages and exit codes.

#if canImport(Glibc)
import Glibc
#endif

enum PTWalk {
    static var commands: [any Command.Type] { [
        SmapsCommand.self, SmapsRollupCommand.self, NumaMapsCommand.self, PagemapCommand.self,
        WalkCommand.self, MincoreCommand.self, PTDumpCommand.self, CaptureCommand.self, ScenarioCommand.self, ExportProcCommand.self,
    ] }

    static let generalHelp: String = {
        var s = """
        Usage: ptwalk [--scenario FILE | --snapshot DIR] [--pid PID] COMMAND [OPTIONS]
               ptwalk COMMAND --help

        Models Linux page tables: builds processes from a JSON scenario, a captured
        snapshot, or (given neither) the embedded default scenario, and shows them
        through the model's /proc producers and page-table walkers.

        Commands:

        """
        let width = commands.map { $0.name.count }.max() ?? 0
        for c in commands {
            s += "  \(c.name)\(String(repeating: " ", count: width - c.name.count))  \(c.summary)\n"
        }
        s += """

        Source options (every command that shows a process; they may come before or
        after the command name):
          --scenario FILE   a JSON scenario (docs/SCENARIO.md)
          --snapshot DIR    a snapshot directory (format v1, written by `ptwalk capture`);
                            rebuild warnings go to stderr with their counts
          --pid PID         the process (default: the first process of the source)
          --quiet           no rebuild warnings

        Exit status: 0 success; 1 unusable input (missing or corrupt file or snapshot,
        unknown pid; nothing is written to stdout); 2 usage error (unknown command or
        option, malformed value).

        """
        return s
    }()

    /// Options that take a value, wherever they appear: the word after them is
    /// not the command name.
    static let valueOptions: Set<String> = {
        var names: Set<String> = []
        for c in commands { for o in c.options where o.value != nil { names.insert(o.name) } }
        return names
    }()

    static func run(_ arguments: [String]) -> Int32 {
        if arguments.isEmpty {
            writeStderr(generalHelp)
            return ExitCode.usage
        }
        // The command is the first word that is neither an option nor an option's value.
        var commandIndex: Int?
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if a == "--" { break }
            if a.hasPrefix("-") && a != "-" {
                if valueOptions.contains(a) { i += 1 }
                i += 1
                continue
            }
            commandIndex = i
            break
        }
        guard let commandIndex else {
            if arguments.contains("--help") || arguments.contains("-h") {
                PTWalk.writeStdout(generalHelp)
                return ExitCode.ok
            }
            writeStderr(CLIError.usage("no command given (one of \(commandNames))",
                                       command: nil).message + "\n")
            return ExitCode.usage
        }
        var rest = arguments
        let name = rest.remove(at: commandIndex)
        if name == "help" {
            if let topic = rest.first, let c = commands.first(where: { $0.name == topic }) {
                PTWalk.writeStdout(helpText(c))
                return ExitCode.ok
            }
            if let topic = rest.first {
                writeStderr(CLIError.usage("unknown command '\(topic)'", command: nil).message + "\n")
                return ExitCode.usage
            }
            PTWalk.writeStdout(generalHelp)
            return ExitCode.ok
        }
        guard let command = commands.first(where: { $0.name == name }) else {
            writeStderr(CLIError.usage("unknown command '\(name)' (commands: \(commandNames))",
                                       command: nil).message + "\n")
            return ExitCode.usage
        }
        return invoke(command, rest)
    }

    /// Parses `arguments` for `command` and runs it (generic: the command's
    /// type is opened here).
    static func invoke<C: Command>(_ command: C.Type, _ arguments: [String]) -> Int32 {
        do {
            let parsed = try parseArguments(arguments, command: C.name, spec: C.options, positionals: C.positionals,
                                         positionalName: C.positionalName)
            if parsed.helpRequested {
                PTWalk.writeStdout(C.help)
                return ExitCode.ok
            }
            try C.run(parsed)
            return ExitCode.ok
        } catch {
            writeStderr(error.message + "\n")
            return error.exitCode
        }
    }

    static var commandNames: String { commands.map { $0.name }.joined(separator: ", ") }

    static func helpText<C: Command>(_ c: C.Type) -> String { C.help }

    static func writeStdout(_ s: String) {
        var w = stdoutWriter()
        w.write(s)
        _ = w.finish()
    }
}
