/// A section marker of a kernel page-table dump: ptdump prints
/// `---[ name ]---` when the walk reaches `start`. `maxLines` caps the
/// lines printed inside the section (x86's ESPfix area prints 16, then
/// `... N entries skipped ...`).
public struct KernelAddressMarker: Hashable, Sendable, CustomStringConvertible {
    public var name: String
    public var start: UInt64
    public var maxLines: Int?
    public init(_ name: String, _ start: UInt64, maxLines: Int? = nil) {
        self.name = name; self.start = start; self.maxLines = maxLines
    }
    public var description: String { "0x" + String(start, radix: 16) + " \(name)" }
}

/// Whether and how a kernel mapping gets real KASAN shadow.
public enum KernelShadow: Hashable, Sendable {
    /// No shadow of its own (covered by the zero shadow, or unpopulated).
    case none
    /// 4K shadow pages (vmalloc-style, `kasan_populate_vmalloc()`).
    case pages
    /// 2M shadow blocks where a whole PMD is covered, 4K at the edges
    /// (boot-time `kasan_populate_shadow()` of the direct map and image).
    case blocks
}

/// One range of a kernel layout: what is mapped where, with which
/// protection and leaf sizes.
public struct KernelMapping: Hashable, Sendable, CustomStringConvertible {
    /// What it is ("direct map", "kernel text", "vmalloc", …).
    public var name: String
    public var virtualAddress: UInt64
    public var size: UInt64
    /// First raw frame mapped.
    public var pfn: UInt64
    public var protection: KernelProtection
    public var policy: KernelLeafPolicy
    public var shadow: KernelShadow

    public init(_ name: String, _ virtualAddress: UInt64, size: UInt64, pfn: UInt64,
                _ protection: KernelProtection, policy: KernelLeafPolicy, shadow: KernelShadow = .none) {
        self.name = name; self.virtualAddress = virtualAddress; self.size = size; self.pfn = pfn
        self.protection = protection; self.policy = policy; self.shadow = shadow
    }

    /// One past the last byte (0 when the mapping reaches the top).
    public var end: UInt64 { virtualAddress &+ size }
    public func contains(_ address: UInt64) -> Bool { address >= virtualAddress && address - virtualAddress < size }

    public var description: String {
        "\(name) 0x\(String(virtualAddress, radix: 16))-0x\(String(end, radix: 16)) \(protection) \(policy)"
    }
}

/// The KASAN (generic, 1 shadow byte per 8 bytes) shadow of a layout.
public struct KasanShadowLayout: Hashable, Sendable {
    /// `KASAN_SHADOW_START` / `KASAN_SHADOW_END`.
    public var start: UInt64
    public var end: UInt64
    /// `KASAN_SHADOW_OFFSET`.
    public var offset: UInt64
    /// Shadow ranges left unmapped rather than pointed at the zero page
    /// (`CONFIG_KASAN_VMALLOC`: vmalloc and module shadow is populated on
    /// demand).
    public var unpopulated: [Range<UInt64>]

    /// `kasan_mem_to_shadow()`.
    public func shadow(of address: UInt64) -> UInt64 { (address >> 3) &+ offset }

    /// The page-aligned shadow of `[start, start + size)`.
    public func shadowRange(of start: UInt64, size: UInt64) -> (start: UInt64, size: UInt64) {
        let s = shadow(of: start) & ~Geometry.pageOffsetMask
        let e = (shadow(of: start &+ size &- 1) + Geometry.pageSize) & ~Geometry.pageOffsetMask
        return (s, e &- s)
    }

    /// The parts of `[start, end)` the zero shadow fills.
    public var zeroRanges: [Range<UInt64>] {
        var out: [Range<UInt64>] = []
        var a = start
        for u in unpopulated.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            let lo = max(u.lowerBound, start), hi = min(u.upperBound, end)
            guard lo < hi else { continue }
            if a < lo { out.append(a..<lo) }
            a = max(a, hi)
        }
        if a < end { out.append(a..<end) }
        return out
    }
}

/// x86-64's ESPfix area: per-CPU 64-byte IRET stacks, one page per 64 CPUs,
/// mapped read-only at every 16th PTE of a PTE table that every entry of a
/// PMD table points at, and that PMD table pointed at from several PUD
/// entries, so that the stack is found whatever bits 16…31 of the stack
/// pointer hold.
public struct EspfixLayout: Hashable, Sendable {
    /// `ESPFIX_BASE_ADDR`.
    public var base: UInt64
    /// The frame holding the stacks.
    public var stackPFN: UInt64
    /// Every `pteStride`-th PTE maps the stack page (64K / 4K = 16).
    public var pteStride: Int
    /// PUD entries pointing at the one PMD table.
    public var pudClones: Int
}

/// A description of a kernel address space (`init_mm`): its geometry, the
/// section markers its ptdump prints, the mappings, the KASAN shadow and
/// the ESPfix area, and the symbols (kernel constants) they were computed
/// from. Build it with `build(on:)`.
public struct KernelLayout: Hashable, Sendable {
    public var name: String
    public var geometry: Geometry
    /// Section markers in address order, as the architecture's ptdump
    /// defines them.
    public var markers: [KernelAddressMarker]
    /// Where a dump of this layout starts (x86: 0, the whole pgd; arm64:
    /// `PAGE_OFFSET`).
    public var dumpStart: UInt64
    public var mappings: [KernelMapping]
    public var kasan: KasanShadowLayout?
    public var espfix: EspfixLayout?
    /// Physical RAM ranges (bytes).
    public var ram: [Range<UInt64>]
    /// Raw frames the builder may use for backing pages (shadow, …).
    public var framePool: Range<UInt64>
    /// Named kernel constants and section symbols (`PAGE_OFFSET`,
    /// `VMALLOC_START`, `_text`, `_etext`, …).
    public var symbols: [String: UInt64]

    /// The value of a named symbol; traps on an unknown name (a programming error in a test).
    public subscript(symbol name: String) -> UInt64 {
        guard let v = symbols[name] else { preconditionFailure("no symbol \(name) in layout \(self.name)") }
        return v
    }

    /// The mapping covering `address`, if any.
    public func mapping(containing address: UInt64) -> KernelMapping? {
        mappings.first { $0.contains(address) }
    }

    /// The marker whose section contains `address`.
    public func marker(for address: UInt64) -> KernelAddressMarker? {
        markers.last { $0.start <= address }
    }
}

/// A built kernel address space: the `AddressSpace` (`init_mm`), the
/// layout it was built from, and the shared tables a ptdump recognises
/// (KASAN zero shadow).
public struct KernelAddressSpace: Sendable {
    public let mm: AddressSpace
    public let layout: KernelLayout
    /// The shared zero-shadow tables, when the layout has KASAN.
    public let zeroShadow: ZeroShadowTables?
    /// The ESPfix PMD and PTE tables (shared), when the layout has ESPfix.
    public let espfixTables: [TableID]

    public var markers: [KernelAddressMarker] { layout.markers }
    public var geometry: Geometry { mm.geometry }

    /// Builds `layout` in a new kernel address space on `memory`. On any
    /// error nothing is left behind: every table made is freed.
    public static func build(_ layout: KernelLayout, on memory: PhysicalMemory,
                             options: AddressSpaceOptions = .init(softDirty: false, pid: 0, name: "swapper")) throws(ModelError) -> KernelAddressSpace {
        let mm = try AddressSpace(geometry: layout.geometry, memory: memory, options: options, kernel: true)
        let b: KernelLayoutBuilder
        do {
            b = try KernelLayoutBuilder(mm, framePool: layout.framePool)
        } catch {
            try? mm.tearDown()
            throw error
        }
        do {
            for m in layout.mappings {
                try b.map(m.virtualAddress, size: m.size, pfn: m.pfn, policy: m.policy, m.protection)
            }
            var espfixTables: [TableID] = []
            if let e = layout.espfix { espfixTables = try buildEspfix(e, b) }
            var zero: ZeroShadowTables? = nil
            if let k = layout.kasan {
                // Real shadow per run of adjacent mappings (as the kernel
                // populates it per mapped memory range).
                var runs: [(start: UInt64, size: UInt64, kind: KernelShadow)] = []
                for m in layout.mappings.filter({ $0.shadow != .none }).sorted(by: { $0.virtualAddress < $1.virtualAddress }) {
                    if let last = runs.last, last.kind == m.shadow, last.start &+ last.size == m.virtualAddress {
                        runs[runs.count - 1].size += m.size
                    } else {
                        runs.append((m.virtualAddress, m.size, m.shadow))
                    }
                }
                for run in runs {
                    let r = k.shadowRange(of: run.start, size: run.size)
                    try b.populate(r.start, size: r.size, allowPMD: run.kind == .blocks, .kernel)
                }
                let z = try b.makeZeroShadow(pagePFN: memory.zeroPage.pfn, .kernelRO)
                for r in k.zeroRanges { try b.mapZeroShadow(r.lowerBound, r.upperBound, using: z) }
                zero = z
            }
            b.discardUnlinkedSharedTables()
            return KernelAddressSpace(mm: mm, layout: layout, zeroShadow: zero, espfixTables: espfixTables)
        } catch {
            b.discardUnlinkedSharedTables()
            try? mm.tearDown()
            throw error
        }
    }

    private static func buildEspfix(_ e: EspfixLayout, _ b: KernelLayoutBuilder) throws(ModelError) -> [TableID] {
        guard e.pteStride > 0, Geometry.entriesPerTable % e.pteStride == 0, e.pudClones > 0 else {
            throw .invalidArgument(name: "espfix", reason: "stride \(e.pteStride) / clones \(e.pudClones)")
        }
        let pte = try b.makeSharedTable(holding: .pte)
        let leaf = KernelProtection.kernelRO.encode(pfn: e.stackPFN, level: .pte, layout: b.layout)
        for i in stride(from: 0, to: Geometry.entriesPerTable, by: e.pteStride) { try b.setEntry(pte, i, leaf) }
        let pmd = try b.makeSharedTable(holding: .pmd)
        for i in 0..<Geometry.entriesPerTable { try b.link(sharedTable: pmd, index: i, to: pte) }
        let pudSize = b.geometry.entrySize(.pud)
        for k in 0..<e.pudClones { try b.link(e.base &+ UInt64(k) * pudSize, at: .pud, to: pmd) }
        return [pmd, pte]
    }

    // MARK: Queries

    /// Whether the table in frame `pfn` is one of the shared zero-shadow
    /// tables (what ptdump compares against `kasan_early_shadow_*`).
    public func isZeroShadowTable(pfn: UInt64) -> Bool {
        guard let z = zeroShadow, let t = mm.memory.tables.table(atPFN: pfn) else { return false }
        return z.contains(t)
    }

    /// The protection of the leaf mapping `address`, from the kernel's side.
    public func protection(at address: UInt64) -> (level: PageTableLevel, protection: KernelProtection, pfn: UInt64)? {
        guard case .present(let level, let raw, let pfn) = mm.translate(address) else { return nil }
        return (level, KernelProtection(decoding: raw, layout: mm.geometry.layout), pfn)
    }

    /// Addresses of leaves that are writable and executable at once, with
    /// the effective permissions down the levels (x86: RW needed at every
    /// level, NX at any level forbids execution; arm64 leaf PXN and
    /// RDONLY), as `ptdump_check_wx()` counts them; at most `limit`.
    /// Shared tables found clean are not walked again.
    public func writableExecutableLeaves(limit: Int = 16) -> [UInt64] {
        var clean = Set<TableID>()
        var out: [UInt64] = []
        let levels = mm.tableLevels
        let l = mm.geometry.layout
        let g = mm.geometry
        func baseOfRootEntry(_ i: Int) -> UInt64 {
            let shift = UInt64(g.shift(levels[0]))
            if g.architecture == .arm64 { return g.kernelAddressStart &+ (UInt64(i) << shift) }
            return i >= Geometry.entriesPerTable / 2 ? g.kernelAddressStart &+ (UInt64(i - 256) << shift) : UInt64(i) << shift
        }
        func visit(_ t: TableID, _ depth: Int, _ base: UInt64, writable: Bool, executable: Bool) -> Bool {
            if writable && executable && clean.contains(t) { return true }
            let level = levels[depth]
            let e = mm.memory.tables.entries(t)
            var ok = true
            for i in 0..<Geometry.entriesPerTable {
                if out.count >= limit { return false }
                let w = e[i].load(ordering: .acquiring)
                guard l.isPresent(w, level) else { continue }
                let a = depth == 0 ? baseOfRootEntry(i) : base &+ UInt64(i) << UInt64(g.shift(level))
                if level != .pte && l.isTable(w, level) {
                    var wr = writable, ex = executable
                    if l.architecture == .x86_64 {
                        wr = wr && w & l.write != 0
                        ex = ex && w & l.noExecute == 0
                    }
                    let child = mm.memory.tables.uncheckedTable(atPFN: l.pfn(w))
                    if !visit(child, depth + 1, a, writable: wr, executable: ex) { ok = false }
                } else {
                    let p = KernelProtection(decoding: w, layout: l)
                    if writable && executable && p.isWX {
                        out.append(a)
                        ok = false
                    }
                }
            }
            if ok && writable && executable { clean.insert(t) }
            return ok
        }
        _ = visit(mm.root, 0, 0, writable: true, executable: true)
        return out
    }

    /// Frees every table (shared ones once) and marks the space torn down.
    public func tearDown() throws(ModelError) { try mm.tearDown() }
}

extension KernelLayout {
    /// Builds this layout's `init_mm` on `memory`.
    public func build(on memory: PhysicalMemory) throws(ModelError) -> KernelAddressSpace {
        try KernelAddressSpace.build(self, on: memory)
    }
}
