import Testing
import Dispatch
@testable import MemoryModel
import PageWalk
@testable import ProcFS
import TestKit

/// The callback and range-walker dumps are the same bytes, and the
/// shortcuts (zero shadow stepped over, shared tables replayed) give the
/// bytes of the kernel's full walk.
@Suite struct PTDumpDifferentialTests {
    static let protections: [KernelProtection] = [
        .kernel, .kernelRO, .kernelROX, .kernelNoCache, .kernelUncachedStrong,
        KernelProtection([.writable, .dirty, .young, .global, .executable]),
        KernelProtection([.writable, .young]),
    ]

    struct RandomKernel {
        let mm: AddressSpace
        let markers: [KernelAddressMarker]
        let zeroShadow: ZeroShadowTables?
    }

    /// A random kernel address space: leaves at every level (contiguous on
    /// arm64), shared PTE and PMD tables linked from several entries, a
    /// zero shadow over a few upper entries, random markers (some capped).
    func randomKernel(seed: UInt64) throws -> RandomKernel {
        var rng = SeededRandom(seed: seed)
        let geometries: [Geometry] = [.x86_64, .x86_64FiveLevel, .arm64, try Geometry(.arm64, levels: 3)]
        let g = geometries[Int(rng.next() % UInt64(geometries.count))]
        let memory = try PhysicalMemory(budgetBytes: 128 << 20)
        let mm = try AddressSpace(geometry: g, memory: memory,
                                  options: .init(softDirty: false, pid: 0, name: "swapper"), kernel: true)
        let b = try KernelLayoutBuilder(mm)
        let k = g.kernelAddressStart
        // A window of a few root entries (and of its first PUD/P4D entries)
        // where everything happens, so that ranges meet.
        let rootSize = g.entrySize(.pgd)
        let window = k &+ UInt64(16 + rng.next() % 8) &* rootSize
        func addr(_ span: UInt64, align: UInt64) -> UInt64 {
            let off = (rng.next() % span) & ~(align - 1)
            return window &+ off
        }
        let span = min(rootSize * 2, 8 << 30)
        for _ in 0..<(8 + rng.next() % 20) {
            let prot = Self.protections[Int(rng.next() % UInt64(Self.protections.count))]
            let r = rng.next() % 10
            let level: PageTableLevel = r < 6 ? .pte : (r < 9 ? .pmd : .pud)
            if level == .pud && g.isFolded(.pud) { continue }
            let cont = g.architecture == .arm64 && level != .pud && rng.next() % 3 == 0
            let unit = g.entrySize(level) * (cont ? 16 : 1)
            let count = 1 + rng.next() % (level == .pte ? 40 : 3)
            let va = addr(span, align: unit)
            _ = try? b.map(va, size: unit * count, pfn: (va >> 12) & 0xf_ffff & ~((unit >> 12) - 1), level: level,
                           contiguous: cont, prot)
        }
        // A shared PTE table under several PMD entries, a shared PMD table
        // under several PUD entries (ESPfix-like).
        if rng.next() % 2 == 0 {
            let pte = try b.makeSharedTable(holding: .pte)
            for i in stride(from: Int(rng.next() % 8), to: 512, by: 1 + Int(rng.next() % 40)) {
                let p = Self.protections[Int(rng.next() % 3)]
                try b.setEntry(pte, i, p.encode(pfn: 0x7000 + UInt64(i), level: .pte, layout: g.layout))
            }
            for _ in 0..<(2 + rng.next() % 6) {
                try? b.link(addr(span, align: 2 << 20), at: .pmd, to: pte)
            }
            if !g.isFolded(.pud) && rng.next() % 2 == 0 {
                let pmd = try b.makeSharedTable(holding: .pmd)
                for i in stride(from: 0, to: 512, by: 1 + Int(rng.next() % 64)) {
                    try b.link(sharedTable: pmd, index: i, to: pte)
                }
                for _ in 0..<(2 + rng.next() % 3) {
                    try? b.link(addr(span, align: 1 << 30), at: .pud, to: pmd)
                }
            }
        }
        var zero: ZeroShadowTables? = nil
        if rng.next() % 2 == 0 {
            let z = try b.makeZeroShadow(pagePFN: memory.zeroPage.pfn, .kernelRO)
            // A few whole upper entries and ragged edges, away from the window.
            let upper = g.levels == 5 ? g.entrySize(.p4d) : rootSize
            let zs = k &+ 4 &* rootSize &+ (rng.next() % 4) * (2 << 20) + (rng.next() % 8) * 4096
            let ze = zs &+ (1 + rng.next() % 3) * upper &+ (rng.next() % 5) * (1 << 30) &+ (rng.next() % 9) * 4096
            try b.mapZeroShadow(zs, ze, using: z)
            zero = z
        }
        b.discardUnlinkedSharedTables()
        // Markers: the start of the dump, then random ones, some capped.
        var starts: Set<UInt64> = [g.architecture == .arm64 ? k : 0]
        if g.architecture == .x86_64 { starts.insert(1 << 63) }
        for _ in 0..<(2 + rng.next() % 6) {
            let choice = rng.next() % 3
            let a: UInt64 = choice == 0 ? addr(span, align: 4096)
                : (choice == 1 ? k &+ (rng.next() % 512) * rootSize : k &+ 4 &* rootSize &+ (rng.next() % 64) * (1 << 30))
            starts.insert(a)
        }
        let markers = starts.sorted().enumerated().map { i, s in
            KernelAddressMarker("marker \(i)", s, maxLines: rng.next() % 4 == 0 ? Int(1 + rng.next() % 5) : nil)
        }
        return RandomKernel(mm: mm, markers: markers, zeroShadow: zero)
    }

    @Test(arguments: 0..<40)
    func randomLayoutsCallbackEqualsRange(seed: Int) throws {
        let k = try randomKernel(seed: 0x5eed_0000 + UInt64(seed))
        var results: [(String, PTDump.Report)] = []
        for walker in PTDump.Walker.allCases {
            for exact in [false, true] {
                results.append(try PTDump.render(mm: k.mm, markers: k.markers, zeroShadow: k.zeroShadow, dumpStart: nil,
                                                 style: nil, walker: walker, checkWX: true, exact: exact))
            }
        }
        let reference = results[1]   // callback, exact: the kernel's walk
        for (i, r) in results.enumerated() {
            #expect(r.0 == reference.0, "variant \(i) differs (seed \(seed), \(k.mm.geometry))")
            #expect(r.1.wxPages == reference.1.wxPages && r.1.nonUXNPages == reference.1.nonUXNPages)
            #expect(r.1.lines == reference.1.lines)
        }
        for walker in PTDump.Walker.allCases {
            let check = try PTDump.checkWX(mm: k.mm, markers: k.markers, zeroShadow: k.zeroShadow, walker: walker)
            // Markers only split runs: the counts are those of the dump.
            #expect(check.wxPages == reference.1.wxPages && check.nonUXNPages == reference.1.nonUXNPages)
        }
    }

    // MARK: Standard layouts

    static func standardLayouts() throws -> [(String, KernelLayout)] {
        [("x86_64 4-level", try KernelLayout.x86_64(levels: 4)), ("x86_64 5-level", try KernelLayout.x86_64(levels: 5)),
         ("arm64", KernelLayout.arm64(kasan: false)), ("arm64 KASAN", KernelLayout.arm64(kasan: true))]
    }

    /// Speed is the benchmark's business; here the shortcuts must be taken,
    /// which is what keeps the dump of the 16 TiB zero shadow cheap.
    @Test func standardLayoutsIdenticalWithShortcuts() throws {
        for (name, layout) in try Self.standardLayouts() {
            let k = try layout.build(on: PhysicalMemory(budgetBytes: 256 << 20))
            var texts: [String] = []
            for walker in PTDump.Walker.allCases {
                var w = ProcWriter(ByteCollector())
                let report = try PTDump.write(kernel: k, walker: walker, to: &w)
                texts.append(w.finish().text)
                if layout.kasan != nil { #expect(report.zeroShadowShortcuts > 0, "\(name): zero shadow noted, not walked") }
                if layout.espfix != nil { #expect(report.replayedTables > 0, "\(name): ESPfix tables replayed") }
                let check = try PTDump.checkWX(kernel: k, walker: walker)
                #expect(check.passed, "\(name): \(check.message) \(check.wxRanges)")
            }
            #expect(texts[0] == texts[1], "\(name): callback and range dumps differ")
            let lines = texts[0].split(separator: "\n")
            #expect(lines.first.map(String.init) == "---[ \(layout.markers[0].name) ]---")
            // Every marker is printed, in order.
            let markerLines = lines.filter { $0.hasPrefix("---[ ") }.map(String.init)
            #expect(markerLines == layout.markers.map { "---[ \($0.name) ]---" }, "\(name) markers")
            try k.tearDown()
        }
    }

    /// The x86 4-level standard layout walked as the kernel does (every
    /// ESPfix table entered, zero-shadow PGD entries descended): the same
    /// bytes as with the shortcuts.
    @Test func standardX86ShortcutsExact() throws {
        let k = try KernelLayout.x86_64(levels: 4).build(on: PhysicalMemory(budgetBytes: 256 << 20))
        let fast = try PTDump.render(mm: k.mm, markers: k.markers, zeroShadow: k.zeroShadow, dumpStart: nil,
                                     style: nil, walker: .range, checkWX: true, exact: false)
        let exact = try PTDump.render(mm: k.mm, markers: k.markers, zeroShadow: k.zeroShadow, dumpStart: nil,
                                      style: nil, walker: .callback, checkWX: true, exact: true)
        #expect(fast.text == exact.text)
        #expect(fast.report.wxPages == exact.report.wxPages)
        #expect(exact.report.replayedTables == 0 && fast.report.replayedTables > 0)
        #expect(fast.text.contains("... 131057 entries skipped ... \n---[ EFI Runtime Services ]---"))
    }

    /// A W+X page in a standard layout is found by both walkers.
    @Test func standardLayoutWXDetected() throws {
        var layout = try KernelLayout.x86_64(levels: 4)
        let wx = KernelProtection([.writable, .dirty, .young, .global, .executable])
        let at = layout[symbol: "MODULES_VADDR"] + 0x10_0000
        layout.mappings.append(KernelMapping("bad module", at, size: 3 * 4096, pfn: 0x1234, wx, policy: .pte))
        let k = try layout.build(on: PhysicalMemory(budgetBytes: 256 << 20))
        for walker in PTDump.Walker.allCases {
            let check = try PTDump.checkWX(kernel: k, walker: walker)
            #expect(check.wxPages == 3)
            #expect(check.wxRanges == [at..<(at + 3 * 4096)])
            #expect(check.message == "x86/mm: Checked W+X mappings: FAILED, 3 W+X pages found.")
        }
        let text = try PTDump.text(kernel: k)
        #expect(text.contains("0xffffffffa0100000-0xffffffffa0103000          12K     RW                 GLB x  pte\n"))
    }
}
