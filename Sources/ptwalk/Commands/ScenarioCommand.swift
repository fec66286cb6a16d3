import Scenario

enum ScenarioCommand: Command {
    static let name = "scenario"
    static let summary = "Print the embedded default scenario, or check a scenario file."
    static let synopsis = ["scenario --print-default", "scenario --check FILE"]
    static let options = [
        OptionSpec("--print-default", "print the default scenario's JSON (a starting point for your own)"),
        OptionSpec("--check", value: "FILE", "validate and build FILE, then list its processes"),
    ]
    static let discussion = """
    The default scenario is what every command uses when given neither --scenario
    nor --snapshot: a python3 process (pid 1000) with file, heap (a PMD THP),
    mTHP, swapped, guard, shmem, hugetlb, PFN-mapped, vdso and stack VMAs, and a
    forked child (pid 1001). The format is docs/SCENARIO.md.
    """

    static func run(_ args: ParsedArguments) throws(CLIError) {
        let printDefault = args.has("--print-default")
        let check = args.value("--check")
        guard printDefault != (check != nil) else {
            throw args.usage(printDefault ? "--print-default and --check exclude each other"
                                          : "scenario needs --print-default or --check FILE")
        }
        var w = stdoutWriter()
        if printDefault {
            w.write(DefaultScenario.json)
            w.write("\n")
        } else if let check {
            var o = try Source.Options(ParsedArguments(command: name))
            o.scenario = check
            let source = try Source.load(o)
            let doc = source.document!
            w.write("\(check): valid, \(doc.architecture.rawValue) \(doc.levels)-level, \(doc.numaNodes) NUMA node(s)\n")
            for p in source.processes {
                let c = p.mm.counterSnapshot
                w.write("  pid \(p.pid) \(p.name): \(p.mm.vmas.count) VMAs, rss \(c.rssPages * 4) kB "
                        + "(anon \(c.anon * 4), file \(c.file * 4), shmem \(c.shmem * 4)), swap \(c.swapEntries * 4) kB\n")
            }
        }
        _ = w.finish()
    }
}
