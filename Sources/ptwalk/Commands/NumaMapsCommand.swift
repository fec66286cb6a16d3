import ProcFS

enum NumaMapsCommand: Command {
    static let name = "numa_maps"
    static let summary = "Print /proc/PID/numa_maps of the process: policy, mapping kind and page counts per VMA and node."
    static let synopsis = ["numa_maps [--scenario FILE | --snapshot DIR] [--pid PID] [--walker range|callback] [--no-batch]"]
    static let options = ProcText.options
    static let discussion = """
    One line per VMA: start, policy, file=/heap/stack/huge, then anon, dirty,
    mapped, mapmax, swapcache, active, writeback, N<node> and kernelpagesize_kB
    with the kernel's rules for when each appears. No line for the gate VMA
    [vsyscall], as in the kernel (show_numa_map() skips a VMA without an mm).
    """
    static func run(_ args: ParsedArguments) throws(CLIError) {
        try ProcText.run(args) { mm, w, o in try NumaMaps.write(mm, to: &w, options: o) }
    }
}
