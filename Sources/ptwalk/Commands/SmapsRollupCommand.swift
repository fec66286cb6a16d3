import ProcFS

enum SmapsRollupCommand: Command {
    static let name = "smaps_rollup"
    static let summary = "Print /proc/PID/smaps_rollup of the process: the smaps counters summed, with Pss_Anon/File/Shmem."
    static let synopsis = ["smaps_rollup [--scenario FILE | --snapshot DIR] [--pid PID] [--walker range|callback] [--no-batch]"]
    static let options = ProcText.options
    static let discussion = """
    The header spans the first VMA's start to the last VMA's end, padded to column
    73 with [rollup], as the kernel prints it: the gate VMA [vsyscall] is not one
    of the mm's VMAs, so it neither ends the range nor counts.
    """
    static func run(_ args: ParsedArguments) throws(CLIError) {
        try ProcText.run(args) { mm, w, o in try SmapsRollup.write(mm, to: &w, options: o) }
    }
}
