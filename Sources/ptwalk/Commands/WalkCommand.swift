import MemoryModel
import PageWalk
import ProcFS

enum WalkCommand: Command {
    static let name = "walk"
    static let summary = "Print the range walker's entries for the process, one per line."
    static let synopsis = [
        "walk [--scenario FILE | --snapshot DIR] [--pid PID] [--range START-END] [--no-batch] [--holes]",
        "     [--pfnmap skip|hole|walk] [--zero-page-as-folio]",
    ]
    static let options = OptionSpec.source + [
        OptionSpec("--range", value: "START-END", "walk [START, END) (hex, page aligned; default: all of user space)"),
        OptionSpec("--no-batch", "one entry per page-table entry (no folio/swap/none batching)"),
        OptionSpec("--holes", "also report ranges outside VMAs, with the pte_hole depth"),
        OptionSpec("--pfnmap", value: "skip|hole|walk", "what to do with VM_PFNMAP VMAs (default: skip, as walk_page_range)"),
        OptionSpec("--zero-page-as-folio", "report the zero page as a folio instead of a pfn"),
    ]
    static let discussion = """
    Runs `for entry in mm.walk(range, lock:, options:)` under the mmap read lock
    and prints each WalkEntry:
      START-END LEVEL xCOUNT CONTENT [attrs 0xBITS]
    LEVEL is where the entries live (pte, cont-pte, pmd, cont-pmd, pud), COUNT how
    many page-table entries were batched into the line, CONTENT one of none,
    hole depth D, folio pfn P order O pages FIRST+N, pfn P, marker M, swap …,
    migration …, device …, hwpoison …; attrs are EntryAttributes bits (1 writable,
    2 dirty, 4 young, 8 soft-dirty, 0x10 uffd-wp, 0x20 anon-exclusive, 0x40
    special, 0x80 PROT_NONE).
    """

    static func run(_ args: ParsedArguments) throws(CLIError) {
        var options = RangeWalkOptions(batching: !args.has("--no-batch"), reportHoles: args.has("--holes"),
                                       zeroPageAsFolio: args.has("--zero-page-as-folio"))
        if let p = args.value("--pfnmap") {
            switch try parseChoice(p, option: "--pfnmap", ["skip", "hole", "walk"], args: args) {
            case "hole": options.pfnMap = .hole
            case "walk": options.pfnMap = .walk
            default: options.pfnMap = .skip
            }
        }
        let requested = try args.value("--range").map { v throws(CLIError) in try parseRange(v, option: "--range", args: args) }
        let sourceOptions = try Source.Options(args)
        let source = try Source.load(sourceOptions)
        let p = try source.process(pid: sourceOptions.pid)
        let limit = p.mm.geometry.userAddressLimit
        let range = requested ?? 0..<limit
        guard range.upperBound <= limit else {
            throw .input("--range \(args.value("--range") ?? ""): ends above the user address limit 0x\(hex(limit)) of pid \(p.pid)")
        }
        var w = stdoutWriter()
        try producing("walk of pid \(p.pid)") {
            try p.mm.withMmapReadLock { lock in
                for entry in try p.mm.walk(range, lock: lock, options: options) {
                    w.write(entry.description)
                    w.write(byte: 10)
                }
            }
        }
        _ = w.finish()
    }
}
