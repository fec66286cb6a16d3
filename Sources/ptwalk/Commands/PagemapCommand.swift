#if canImport(Glibc)
import Glibc
#endif
import KernelSnapshot
import MemoryModel
import ProcFS

enum PagemapCommand: Command {
    static let name = "pagemap"
    static let summary = "Write /proc/PID/pagemap words (little-endian u64, one per page) for every VMA, in maps order."
    static let synopsis = [
        "pagemap [--scenario FILE | --snapshot DIR] [--pid PID] [--hex] [--range START-END] [--unprivileged]",
    ]
    static let options = OptionSpec.source + [
        OptionSpec("--hex", "one text line per page instead: address, word, decoded bits"),
        OptionSpec("--range", value: "START-END", "only the pages of [START, END) (hex, page aligned), holes included"),
        OptionSpec("--unprivileged", "as a reader without CAP_SYS_ADMIN: PFNs and swap entries read as zero"),
        .walker, .noBatch,
    ]
    static let discussion = """
    Without --range the words of each VMA [start, end) follow each other in maps
    order, the gate VMA [vsyscall] last (x86-64 unless vsyscall=none): for a
    snapshot that is the captured maps file, so the output has the layout of
    the snapshot's proc/PID/pagemap file and, with PFNs as root saw them, equals
    it word for word. Pages the kernel's pagemap cannot reach (above TASK_SIZE:
    the gate VMA, where a read of /proc/PID/pagemap ends the file) are written
    as zero words, as the capture pads them.

    The binary output is refused on a terminal: redirect it, or use --hex
    (`0xADDRESS 0xWORD bits`, bits among present, pfn=, swap type=/offset=,
    soft-dirty, exclusive, uffd-wp, guard, file/shared; `none` for 0).
    """

    static func run(_ args: ParsedArguments) throws(CLIError) {
        let hexOutput = args.has("--hex")
        let range = try args.value("--range").map { v throws(CLIError) in try parseRange(v, option: "--range", args: args) }
        let walker = try parseProcWalker(args)
        if !hexOutput && isatty(1) != 0 {
            throw args.usage("refusing to write binary pagemap words to a terminal: redirect stdout, or use --hex")
        }
        let sourceOptions = try Source.Options(args)
        let source = try Source.load(sourceOptions)
        let p = try source.process(pid: sourceOptions.pid)
        let options = source.procOptions(for: p, walker: walker, batching: !args.has("--no-batch"))
        let privileged = !args.has("--unprivileged")

        // The ranges, each with the number of words it must produce.
        var ranges: [Range<UInt64>] = []
        if let range {
            ranges = [range]
        } else if let captured = p.captured {
            ranges = captured.maps.map { $0.start..<$0.end }
        } else {
            ranges = p.mm.mapsVMAs.map { $0.start..<$0.end }
        }
        let limit = p.mm.geometry.userAddressLimit
        var w = stdoutWriter()
        var hexLines = HexLines()
        for r in ranges {
            let pages = Int((r.upperBound - r.lowerBound) >> Geometry.pageShift)
            if hexOutput {
                // In chunks of 1 GiB of address space: a large sparse VMA
                // never needs all its words in memory at once.
                let chunk: UInt64 = 1 << 30
                var at = r.lowerBound
                while at < r.upperBound {
                    let next = (at | (chunk - 1)) &+ 1          // 0 past the top of the address space
                    let end = next == 0 ? r.upperBound : min(r.upperBound, next)
                    var words: [UInt64] = []
                    if at < limit {
                        words = try producing("pagemap of pid \(p.pid)") {
                            try Pagemap.words(p.mm, at..<min(end, limit), privileged: privileged, options: options)
                        }
                    }
                    let pages = Int((end - at) >> Geometry.pageShift)
                    if words.count < pages { words += repeatElement(0, count: pages - words.count) }
                    for (i, word) in words.enumerated() {
                        hexLines.write(address: at + UInt64(i) << Geometry.pageShift, word: word, to: &w)
                    }
                    at = end
                }
            } else {
                w.flush()
                let before = w.sink.count
                if r.lowerBound < limit {
                    try producing("pagemap of pid \(p.pid)") {
                        try Pagemap.read(p.mm, r.lowerBound..<min(r.upperBound, limit), privileged: privileged,
                                         to: &w, options: options)
                    }
                }
                w.flush()
                let written = (w.sink.count - before) / 8
                if written < pages { writeZeros(pages - written, to: &w) }
            }
        }
        _ = w.finish()
    }

    private static func writeZeros(_ words: Int, to w: inout ProcWriter<StdoutSink>) {
        let zeros = [UInt8](repeating: 0, count: Geometry.pageBytes)
        var left = words * 8
        zeros.withUnsafeBytes { buf in
            while left > 0 {
                let n = min(left, buf.count)
                w.write(UnsafeRawBufferPointer(rebasing: buf[0..<n]))
                left -= n
            }
        }
    }
}

/// `--hex` lines: `0x00007fff00000000 0x8100000000012345 present pfn=0x12345 exclusive`.
struct HexLines {
    mutating func write(address: UInt64, word: UInt64, to w: inout ProcWriter<StdoutSink>) {
        w.write("0x\(hex(address, width: 16)) 0x\(hex(word, width: 16)) \(Self.decode(word))\n")
    }

    static func decode(_ raw: UInt64) -> String {
        let word = PagemapWord(raw)
        guard raw != 0 else { return "none" }
        var parts: [String] = []
        if word.isPresent { parts.append("present pfn=0x\(hex(word.pfn ?? 0))") }
        if let t = word.swapType, let o = word.swapOffset { parts.append("swap type=\(t) offset=0x\(hex(o))") }
        if word.isSoftDirty { parts.append("soft-dirty") }
        if word.isExclusive { parts.append("exclusive") }
        if word.isUffdWP { parts.append("uffd-wp") }
        if word.isGuard { parts.append("guard") }
        if word.isFileOrSharedAnon { parts.append("file/shared") }
        return parts.joined(separator: " ")
    }
}
