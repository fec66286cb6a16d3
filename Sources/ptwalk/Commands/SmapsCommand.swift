import ProcFS

enum SmapsCommand: Command {
    static let name = "smaps"
    static let summary = "Print /proc/PID/smaps of the process, produced on the model, in the kernel's exact format."
    static let synopsis = ["smaps [--scenario FILE | --snapshot DIR] [--pid PID] [--walker range|callback] [--no-batch] [--pkeys]"]
    static let options = ProcText.options
    static let discussion = """
    One block per VMA: the maps header, every counter Linux 6.18 prints (Rss, Pss,
    Pss_Dirty, Shared/Private Clean/Dirty, Referenced, Anonymous, KSM, LazyFree,
    AnonHugePages, …, Swap, SwapPss, Locked), THPeligible, ProtectionKey (with
    --pkeys, or as captured) and VmFlags. On x86-64 the last block is the gate
    VMA [vsyscall] (--xp, VmFlags ex; r-xp with vsyscall=emulate), all counters
    zero, as the kernel prints it; a scenario's "vsyscall" key chooses the mode
    (none drops it), a snapshot keeps the captured one. On a snapshot the output
    is comparable line for line with the captured smaps.
    """
    static func run(_ args: ParsedArguments) throws(CLIError) {
        try ProcText.run(args) { mm, w, o in try Smaps.write(mm, to: &w, options: o) }
    }
}
