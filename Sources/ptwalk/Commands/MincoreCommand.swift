import MemoryModel
import PageWalk
import ProcFS

enum MincoreCommand: Command {
    static let name = "mincore"
    static let summary = "Print mincore(2)'s residency vector of each VMA of the process, one line per VMA."
    static let synopsis = [
        "mincore [--scenario FILE | --snapshot DIR] [--pid PID] [--range START-END] [--walker range|callback]",
    ]
    static let options = OptionSpec.source + [
        OptionSpec("--range", value: "START-END", "only the VMAs meeting [START, END), clipped to it (hex, page aligned)"),
        .walker,
    ]
    static let discussion = """
    Runs the model of mincore(2) (Linux 6.18, mm/mincore.c) on each VMA of the
    process, in address order, and prints one line per VMA:
      START-END DIGITS
    START and END in lowercase hex without 0x (as /proc/PID/maps prints them),
    then one digit per page: 1 resident, 0 not. Resident means a present page
    or PMD leaf, a migration, device or hwpoison entry, a swap entry whose slot
    the swap cache holds, or (for none entries, missing tables and PTE markers,
    guard pages included) a page the VMA's file holds in its page cache; the
    kernel's special mappings ([vdso], [vvar]) report every page resident.
    Gaps between VMAs are left out (mincore itself fails on them with ENOMEM),
    and so is the gate VMA [vsyscall], which lies above user space.
    """

    /// The most pages asked of one `mincore()` call: a large VMA is printed
    /// in parts, never held whole.
    static let pagesPerCall: UInt64 = 1 << 18

    static func run(_ args: ParsedArguments) throws(CLIError) {
        let requested = try args.value("--range").map { v throws(CLIError) in try parseRange(v, option: "--range", args: args) }
        let walker = try parseProcWalker(args)
        let sourceOptions = try Source.Options(args)
        let source = try Source.load(sourceOptions)
        let p = try source.process(pid: sourceOptions.pid)
        let limit = p.mm.geometry.userAddressLimit
        let range = requested ?? 0..<limit
        guard range.upperBound <= limit else {
            throw .input("--range \(args.value("--range") ?? ""): ends above the user address limit 0x\(hex(limit)) of pid \(p.pid)")
        }
        var w = stdoutWriter()
        for vma in p.mm.vmas(intersecting: range.lowerBound, range.upperBound) {
            let start = max(vma.start, range.lowerBound), end = min(vma.end, range.upperBound)
            w.write("\(hex(start))-\(hex(end)) ")
            var at = start
            while at < end {
                let length = min(end - at, pagesPerCall << Geometry.pageShift)
                let vec = try producing("mincore of pid \(p.pid) at 0x\(hex(at))") {
                    try mincore(p.mm, at, length, walker: walker)
                }
                for b in vec { w.write(byte: 48 + b) }
                at += length
            }
            w.write(byte: 10)
        }
        _ = w.finish()
    }
}
