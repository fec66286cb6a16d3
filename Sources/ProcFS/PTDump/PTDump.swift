import MemoryModel
import PageWalk

/// The kernel page-table dump (`/sys/kernel/debug/page_tables/kernel`,
/// `kernel_page_tables`) and the W+X check (`ptdump_check_wx()`), on the
/// kernel-table walk.
///
/// Two styles, as the two architectures print them:
/// - `.x86`: `arch/x86/mm/dump_pagetables.c` — section markers
///   `---[ name ]---` (at most one per break, `max_lines` and
///   `... N entries skipped ...` for the ESPfix area), lines
///   `0x%016lx-0x%016lx   %9lu%c ` with the size in B/K/M/G/T/P/E, the
///   flags in fixed columns (`USR`, `RW`/`ro`, `PWT`, `PCD`, `PSE`, `PAT`,
///   `GLB`, `NX`/`x`; 30 blanks when not present) and the level name
///   (`pgd` … `pte`); effective permissions (USR and RW from every level,
///   NX from any) separate runs and decide W+X. It walks `[0, half)` and
///   from the end of the hypervisor guard hole to the top.
/// - `.arm64`: `arch/arm64/mm/ptdump.c` — the size in K/M/G/T/P/E, the
///   level name (`PGD` … `PTE`), then for present runs the attribute
///   columns (`F`, `USR`, `RW`/`ro`, `NX`/`x`, `SHD`, `AF`, `NG`, `CON`,
///   `BLK`, `UXN`, `GP`, memory type); every marker reached is printed.
///   It walks from `PAGE_OFFSET` to the top.
///
/// Both walkers give the same bytes: `.callback` drives
/// `walkKernelPageTableRange` with `pte_hole` and the level handlers (as
/// mm/ptdump.c does), `.range` the range walker over kernel tables.
/// Tables shared by many entries are not walked again: the KASAN zero
/// shadow is noted as its one page (as the kernel does), and any other
/// shared table (ESPfix) is walked once, recorded, and replayed where it
/// is referenced again.
public enum PTDump {
    /// The output format (and the flag bits it reads).
    public enum Style: String, Sendable, Hashable, CaseIterable {
        case x86
        case arm64

        /// The style of `architecture`'s own ptdump.
        public static func `default`(for architecture: Architecture) -> Style {
            architecture == .x86_64 ? .x86 : .arm64
        }
        var architecture: Architecture { self == .x86 ? .x86_64 : .arm64 }
    }

    /// Which walker drives the dump.
    public enum Walker: String, Sendable, Hashable, CaseIterable {
        /// `walkKernelPageTableRange` with handlers (mm/ptdump.c).
        case callback
        /// The range walker (`mm.walk(_:lock:options:)`).
        case range
    }

    /// What a dump or a check found besides its text.
    public struct Report: Sendable, Hashable {
        /// Lines of ranges printed (markers and skip notes not counted).
        public var lines: Int = 0
        /// Pages in runs that are writable and executable (x86: by the
        /// effective permissions; arm64: neither RDONLY nor PXN).
        public var wxPages: UInt64 = 0
        /// arm64: present pages without UXN (kernel mappings must have it).
        public var nonUXNPages: UInt64 = 0
        /// The first W+X runs found (at most 16), as `start..<end`.
        public var wxRanges: [Range<UInt64>] = []
        /// Upper entries noted as the KASAN zero shadow without a walk.
        public var zeroShadowShortcuts: Int = 0
        /// Shared tables replayed from a recording instead of walked again.
        public var replayedTables: Int = 0
    }

    /// The outcome of `checkWX`.
    public struct WXCheck: Sendable, Hashable {
        public var style: Style
        public var wxPages: UInt64
        /// arm64 only (0 on x86).
        public var nonUXNPages: UInt64
        public var wxRanges: [Range<UInt64>]
        public var passed: Bool { wxPages == 0 && nonUXNPages == 0 }
        /// The line the kernel logs.
        public var message: String {
            switch style {
            case .x86:
                return passed ? "x86/mm: Checked W+X mappings: passed, no W+X pages found."
                    : "x86/mm: Checked W+X mappings: FAILED, \(wxPages) W+X pages found."
            case .arm64:
                return passed ? "Checked W+X mappings: passed, no W+X pages found"
                    : "Checked W+X mappings: FAILED, \(wxPages) W+X pages found, \(nonUXNPages) non-UXN pages found"
            }
        }
    }

    // MARK: Kernel address spaces

    /// Dumps `kernel` (its markers, its zero shadow) to `writer`.
    @discardableResult
    public static func write<S: ProcSink>(kernel: KernelAddressSpace, style: Style? = nil, walker: Walker = .range,
                                          to writer: inout ProcWriter<S>) throws(PTDumpError) -> Report {
        try write(mm: kernel.mm, markers: kernel.markers, zeroShadow: kernel.zeroShadow,
                  dumpStart: kernel.layout.dumpStart, style: style, walker: walker, to: &writer)
    }

    /// The dump of `kernel` as text.
    public static func text(kernel: KernelAddressSpace, style: Style? = nil, walker: Walker = .range) throws(PTDumpError) -> String {
        var w = ProcWriter(ByteCollector())
        try write(kernel: kernel, style: style, walker: walker, to: &w)
        return w.finish().text
    }

    /// `ptdump_check_wx()` on `kernel`.
    public static func checkWX(kernel: KernelAddressSpace, style: Style? = nil,
                               walker: Walker = .range) throws(PTDumpError) -> WXCheck {
        try checkWX(mm: kernel.mm, markers: kernel.markers, zeroShadow: kernel.zeroShadow,
                    dumpStart: kernel.layout.dumpStart, style: style, walker: walker)
    }

    // MARK: Any kernel page tables

    /// Dumps the tables of the kernel address space `mm` (built with
    /// `KernelLayoutBuilder`, say) with `markers` (in address order; the
    /// first is printed before anything else). `zeroShadow` names the
    /// shared KASAN tables; `dumpStart` is where an arm64 dump starts
    /// (default: the start of the kernel half).
    @discardableResult
    public static func write<S: ProcSink>(mm: AddressSpace, markers: [KernelAddressMarker],
                                          zeroShadow: ZeroShadowTables? = nil, dumpStart: UInt64? = nil,
                                          style: Style? = nil, walker: Walker = .range,
                                          to writer: inout ProcWriter<S>) throws(PTDumpError) -> Report {
        let style = try checkedStyle(mm, style)
        let ranges = walkRanges(mm.geometry, style: style, dumpStart: dumpStart)
        let sink = WriterBox(writer)
        let dumper = PTDumper(mm: mm, style: style, markers: markers, zeroShadow: zeroShadow,
                              print: true, checkWX: false, output: sink.emit)
        try run(dumper, ranges: ranges, walker: walker)
        writer = sink.writer
        return dumper.report
    }

    /// `ptdump_check_wx()`: walks as the dump does (x86 over the same
    /// ranges and markers, arm64 from `dumpStart` with no markers) and
    /// counts the W+X (and, arm64, non-UXN) pages, printing nothing.
    public static func checkWX(mm: AddressSpace, markers: [KernelAddressMarker], zeroShadow: ZeroShadowTables? = nil,
                               dumpStart: UInt64? = nil, style: Style? = nil,
                               walker: Walker = .range) throws(PTDumpError) -> WXCheck {
        let style = try checkedStyle(mm, style)
        let ranges = walkRanges(mm.geometry, style: style, dumpStart: dumpStart)
        let m = style == .x86 ? markers : [KernelAddressMarker("", 0)]
        let dumper = PTDumper(mm: mm, style: style, markers: m, zeroShadow: zeroShadow,
                              print: false, checkWX: true, output: { _ in })
        try run(dumper, ranges: ranges, walker: walker)
        let r = dumper.report
        return WXCheck(style: style, wxPages: r.wxPages, nonUXNPages: r.nonUXNPages, wxRanges: r.wxRanges)
    }

    // MARK: Internals

    /// The dump and its report; `exact` walks as the kernel does (every
    /// shared table entered), the reference for the shortcuts.
    static func render(mm: AddressSpace, markers: [KernelAddressMarker], zeroShadow: ZeroShadowTables?,
                       dumpStart: UInt64?, style: Style?, walker: Walker, checkWX: Bool = false,
                       exact: Bool) throws(PTDumpError) -> (text: String, report: Report) {
        let style = try checkedStyle(mm, style)
        let ranges = walkRanges(mm.geometry, style: style, dumpStart: dumpStart)
        var bytes: [UInt8] = []
        let dumper = PTDumper(mm: mm, style: style, markers: markers, zeroShadow: zeroShadow,
                              print: true, checkWX: checkWX, output: { bytes.append(contentsOf: $0) })
        dumper.exactKernelWalk = exact
        try run(dumper, ranges: ranges, walker: walker)
        return (String(decoding: bytes, as: UTF8.self), dumper.report)
    }

    static func checkedStyle(_ mm: AddressSpace, _ style: Style?) throws(PTDumpError) -> Style {
        guard mm.isKernel else { throw .notKernel("\(mm) is not a kernel address space") }
        guard !mm.isTornDown else { throw .walk(.model(.tornDown)) }
        let s = style ?? .default(for: mm.geometry.architecture)
        guard s.architecture == mm.geometry.architecture else {
            throw .styleMismatch(style: s, architecture: mm.geometry.architecture)
        }
        return s
    }

    /// The ranges the architecture's dump walks (`ptdump_range`s); the
    /// last ends at 2^64 - 1 (`~0UL`).
    static func walkRanges(_ g: Geometry, style: Style, dumpStart: UInt64?) -> [(UInt64, UInt64)] {
        switch style {
        case .x86:
            let half = UInt64(1) << UInt64(g.virtualAddressBits - 1)
            var kernelStart = g.kernelAddressStart
            // The hypervisor guard hole: the first 16 kernel PGD entries.
            if g.levels >= 4 { kernelStart &+= 16 &* g.entrySize(.pgd) }
            return [(0, half), (kernelStart, UInt64.max)]
        case .arm64:
            return [(dumpStart ?? g.kernelAddressStart, UInt64.max)]
        }
    }

    static func run(_ d: PTDumper, ranges: [(UInt64, UInt64)], walker: Walker) throws(PTDumpError) {
        do {
            try d.mm.withMmapReadLock { (lock) throws(PageWalkError) in
                for (s, e) in ranges {
                    switch walker {
                    case .callback: try d.walkCallback(s, e)
                    case .range: try d.walkRange(s, e, lock: lock)
                    }
                    d.endRange(e)
                }
            }
        } catch {
            throw .walk(error)
        }
        d.flush()
    }
}

/// Why a dump could not be made.
public enum PTDumpError: Error, CustomStringConvertible, Sendable {
    /// The style's architecture is not the address space's.
    case styleMismatch(style: PTDump.Style, architecture: Architecture)
    /// A user address space was given.
    case notKernel(String)
    /// The walk itself failed (lock, torn-down space).
    case walk(PageWalkError)

    public var description: String {
        switch self {
        case .styleMismatch(let s, let a): return "ptdump: the \(s.rawValue) style cannot read \(a) page tables"
        case .notKernel(let why): return "ptdump: \(why)"
        case .walk(let e): return "ptdump: \(e)"
        }
    }
}

/// Moves a `ProcWriter` into a reference the dumper can write through.
final class WriterBox<S: ProcSink> {
    var writer: ProcWriter<S>
    init(_ w: ProcWriter<S>) { writer = w }
    func emit(_ bytes: [UInt8]) { bytes.withUnsafeBytes { writer.write($0) } }
}
