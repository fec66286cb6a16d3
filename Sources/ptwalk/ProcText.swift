// The shared body of `smaps`, `smaps_rollup` and `numa_maps`: our producer
// for the selected process, written to stdout as the kernel formats it.

import MemoryModel
import ProcFS

enum ProcText {
    static let options: [OptionSpec] = OptionSpec.source + [
        .walker, .noBatch,
        OptionSpec("--pkeys", "print ProtectionKey: lines (as a kernel with protection keys does; snapshots: as captured)"),
    ]

    static func run(_ args: ParsedArguments,
                    _ produce: (AddressSpace, inout ProcWriter<StdoutSink>, ProcOptions) throws -> Void) throws(CLIError) {
        let walker = try parseProcWalker(args)
        let sourceOptions = try Source.Options(args)
        let source = try Source.load(sourceOptions)
        let p = try source.process(pid: sourceOptions.pid)
        let options = source.procOptions(for: p, walker: walker, batching: !args.has("--no-batch"),
                                         protectionKeys: args.has("--pkeys"))
        var w = stdoutWriter()
        try producing("\(args.command) of pid \(p.pid)") { try produce(p.mm, &w, options) }
        _ = w.finish()
    }
}
