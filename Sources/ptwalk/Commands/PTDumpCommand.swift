import MemoryModel
import ProcFS

enum PTDumpCommand: Command {
    static let name = "ptdump"
    static let summary = "Dump an embedded kernel page-table layout (init_mm) as the kernel's ptdump prints it."
    static let synopsis = ["ptdump [--arch x86_64|arm64] [--levels 4|5] [--kasan on|off] [--walker range|callback] [--check-wx]"]
    static let options = [
        OptionSpec("--arch", value: "x86_64|arm64", "the layout and the dump style (default: x86_64)"),
        OptionSpec("--levels", value: "4|5", "x86_64 page-table depth (default: 4; arm64 has 4)"),
        OptionSpec("--kasan", value: "on|off", "include the KASAN shadow (default: on for x86_64, off for arm64)"),
        OptionSpec("--walker", value: "range|callback", "range walker or walk_kernel_page_table_range callbacks (same output)"),
        OptionSpec("--check-wx", "print the W+X check's verdict (ptdump_check_wx) instead of the dump"),
    ]
    static let discussion = """
    x86_64 prints in the style of /sys/kernel/debug/page_tables/kernel (section
    markers, sizes, USR/RW/PWT/PCD/PSE/GLB/NX columns, level names); arm64 in the
    style of arch/arm64/mm/ptdump.c. The layouts are MemoryModel's
    KernelLayout.x86_64(levels:) and KernelLayout.arm64: the direct map, vmalloc,
    vmemmap, the kernel image with its permissions, modules, fixmap, and the
    shared KASAN zero shadow (noted once, not walked again).
    """

    static func run(_ args: ParsedArguments) throws(CLIError) {
        let arch = try args.value("--arch").map { v throws(CLIError) in
            try parseChoice(v, option: "--arch", ["x86_64", "arm64"], args: args)
        } ?? "x86_64"
        let levels = try args.value("--levels").map { v throws(CLIError) in
            Int(try parseChoice(v, option: "--levels", ["4", "5"], args: args))!
        }
        if arch == "arm64", let levels, levels != 4 {
            throw args.usage("--levels \(levels): the arm64 layout has 4 levels (48-bit VA, 4K granule)")
        }
        let kasanChoice = try args.value("--kasan").map { v throws(CLIError) in
            try parseChoice(v, option: "--kasan", ["on", "off"], args: args) == "on"
        }
        let walker: PTDump.Walker
        switch try args.value("--walker").map({ v throws(CLIError) in
            try parseChoice(v, option: "--walker", ["range", "callback"], args: args)
        }) ?? "range" {
        case "callback": walker = .callback
        default: walker = .range
        }

        let kernel: KernelAddressSpace
        do {
            let layout = arch == "arm64" ? KernelLayout.arm64(kasan: kasanChoice ?? false)
                : try KernelLayout.x86_64(levels: levels ?? 4, kasan: kasanChoice ?? true)
            let memory = try PhysicalMemory(budgetBytes: 64 << 20)
            kernel = try layout.build(on: memory)
        } catch {
            throw .input("cannot build the \(arch) kernel layout: \(error.description)")
        }
        var w = stdoutWriter()
        if args.has("--check-wx") {
            let check = try producing("ptdump W+X check") { try PTDump.checkWX(kernel: kernel, walker: walker) }
            w.write(check.message + "\n")
            for r in check.wxRanges { w.write("W+X: 0x\(hex(r.lowerBound, width: 16))-0x\(hex(r.upperBound, width: 16))\n") }
        } else {
            try producing("ptdump") { _ = try PTDump.write(kernel: kernel, walker: walker, to: &w) }
        }
        _ = w.finish()
    }
}
