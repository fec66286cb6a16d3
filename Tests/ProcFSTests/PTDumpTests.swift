import Testing
@testable import MemoryModel
import PageWalk
@testable import ProcFS

/// Hand-checked dumps of small kernel layouts. The expected text was written
/// line by line from the kernels' format rules (x86 dump_pagetables.c,
/// arm64 ptdump.c, mm/ptdump.c), not taken from this code's output.
@Suite struct PTDumpTests {
    static let wx = KernelProtection([.writable, .dirty, .young, .global, .executable])

    func kernelSpace(_ geometry: Geometry) throws -> (AddressSpace, KernelLayoutBuilder) {
        let memory = try PhysicalMemory(budgetBytes: 64 << 20)
        let mm = try AddressSpace(geometry: geometry, memory: memory,
                                  options: .init(softDirty: false, pid: 0, name: "swapper"), kernel: true)
        return (mm, try KernelLayoutBuilder(mm))
    }

    func dump(_ mm: AddressSpace, _ markers: [KernelAddressMarker], zeroShadow: ZeroShadowTables? = nil,
              dumpStart: UInt64? = nil) throws -> String {
        var texts: [String] = []
        for walker in PTDump.Walker.allCases {
            var w = ProcWriter(ByteCollector(), capacity: 64)   // small pages: many flushes
            try PTDump.write(mm: mm, markers: markers, zeroShadow: zeroShadow, dumpStart: dumpStart,
                             walker: walker, to: &w)
            texts.append(w.finish().text)
        }
        #expect(texts[0] == texts[1], "callback and range dumps differ")
        return texts[0]
    }

    func expectLines(_ got: String, _ expected: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let g = got.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let e = expected.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for i in 0..<max(g.count, e.count) {
            let a = i < g.count ? g[i] : "<none>", b = i < e.count ? e[i] : "<none>"
            if a != b { Issue.record("line \(i + 1):\n got: \(a)\nwant: \(b)", sourceLocation: sourceLocation) }
        }
    }

    // MARK: x86-64

    /// PUD, PMD and PTE leaves, holes at the PTE, PMD, PUD and PGD levels,
    /// one W+X page; markers including the "Kernel Space" that x86 prints
    /// one break late (one marker per break).
    @Test func x86FourLevelSmall() throws {
        let (mm, b) = try kernelSpace(.x86_64)
        let base: UInt64 = 0xffff_8880_0000_0000
        try b.map(base, size: 1 << 30, pfn: 0x40000, level: .pud, .kernel)
        try b.map(base + 0x4000_0000, size: 2 << 20, pfn: 0x200, level: .pmd, .kernelRO)
        try b.map(base + 0x4020_0000, size: 4096, pfn: 0x1000, level: .pte, .kernelROX)
        try b.map(base + 0x4020_1000, size: 4096, pfn: 0x1001, level: .pte, Self.wx)
        let markers = [KernelAddressMarker("User Space", 0), KernelAddressMarker("Kernel Space", 1 << 63),
                       KernelAddressMarker("Low Kernel Mapping", base)]
        let expected = """
        ---[ User Space ]---
        0x0000000000000000-0xffff880000000000    16777096T                               pgd
        ---[ Kernel Space ]---
        0xffff880000000000-0xffff888000000000         512G                               pgd
        ---[ Low Kernel Mapping ]---
        0xffff888000000000-0xffff888040000000           1G     RW         PSE     GLB NX pud
        0xffff888040000000-0xffff888040200000           2M     ro         PSE     GLB NX pmd
        0xffff888040200000-0xffff888040201000           4K     ro                 GLB x  pte
        0xffff888040201000-0xffff888040202000           4K     RW                 GLB x  pte
        0xffff888040202000-0xffff888040400000        2040K                               pte
        0xffff888040400000-0xffff888080000000        1020M                               pmd
        0xffff888080000000-0xffff890000000000         510G                               pud
        0xffff890000000000-0x0000000000000000         119T                               pgd

        """
        expectLines(try dump(mm, markers), expected)

        for walker in PTDump.Walker.allCases {
            let check = try PTDump.checkWX(mm: mm, markers: markers, walker: walker)
            #expect(check.wxPages == 1)
            #expect(check.wxRanges == [(base + 0x4020_1000)..<(base + 0x4020_2000)])
            #expect(!check.passed)
            #expect(check.message == "x86/mm: Checked W+X mappings: FAILED, 1 W+X pages found.")
        }
    }

    /// A P4D hole (5 levels), the "P" unit, and the effective permissions:
    /// a PTE that is RW under a read-only PMD table entry is not W+X.
    @Test func x86FiveLevelP4DHoleAndEffectivePermissions() throws {
        let (mm, b) = try kernelSpace(.x86_64FiveLevel)
        let base: UInt64 = 0xff11_0000_0000_0000
        try b.map(base, size: 4096, pfn: 0x10, level: .pte, .kernel)
        try b.map(base + 0x20_0000, size: 4096, pfn: 0x11, level: .pte, Self.wx)
        let markers = [KernelAddressMarker("User Space", 0), KernelAddressMarker("Kernel Space", 1 << 63),
                       KernelAddressMarker("Low Kernel Mapping", base)]
        // Before: the W+X page counts.
        #expect(try PTDump.checkWX(mm: mm, markers: markers).wxPages == 1)
        // Clear RW in the PMD entry above the second PTE table.
        guard case .slot(let s) = try mm.slot(base + 0x20_0000, at: .pmd, allocate: false) else {
            Issue.record("no PMD slot"); return
        }
        mm.setEntry(at: s, mm.entry(at: s) & ~EntryLayout.x86_64.write)
        let expected = """
        ---[ User Space ]---
        0x0000000000000000-0xff10000000000000       16324P                               pgd
        ---[ Kernel Space ]---
        0xff10000000000000-0xff11000000000000         256T                               pgd
        ---[ Low Kernel Mapping ]---
        0xff11000000000000-0xff11000000001000           4K     RW                 GLB NX pte
        0xff11000000001000-0xff11000000200000        2044K                               pte
        0xff11000000200000-0xff11000000201000           4K     RW                 GLB x  pte
        0xff11000000201000-0xff11000000400000        2044K                               pte
        0xff11000000400000-0xff11000040000000        1020M                               pmd
        0xff11000040000000-0xff11008000000000         511G                               pud
        0xff11008000000000-0xff12000000000000      261632G                               p4d
        0xff12000000000000-0x0000000000000000       60928T                               pgd

        """
        expectLines(try dump(mm, markers), expected)
        for walker in PTDump.Walker.allCases {
            let check = try PTDump.checkWX(mm: mm, markers: markers, walker: walker)
            #expect(check.passed, "RW cleared above: effective permissions are read-only")
            #expect(check.message == "x86/mm: Checked W+X mappings: passed, no W+X pages found.")
        }
    }

    /// The ESPfix-style cap: at most `maxLines` lines in a section, then the
    /// count of the rest; the next marker ends the section.
    @Test func x86MaxLinesAndSkippedEntries() throws {
        let (mm, b) = try kernelSpace(.x86_64)
        let base: UInt64 = 0xffff_ff00_0000_0000
        for i in 0..<4 { try b.map(base + UInt64(i) * 0x2000, size: 4096, pfn: 0x50 + UInt64(i), level: .pte, .kernelRO) }
        let markers = [KernelAddressMarker("User Space", 0), KernelAddressMarker("Kernel Space", 1 << 63),
                       KernelAddressMarker("ESPfix Area", base, maxLines: 3),
                       KernelAddressMarker("EFI Runtime Services", base + 0x10_0000)]
        // After the marker's own late line, the section holds: 4K ro, 4K
        // hole, 4K ro, 4K hole, 4K ro, 4K hole, 4K ro, hole to the next
        // marker = 8 lines; 3 printed, 5 skipped. The line at the marker
        // ends a run started in the section, so it is counted there.
        let expected = """
        ---[ User Space ]---
        0x0000000000000000-0xffff880000000000    16777096T                               pgd
        ---[ Kernel Space ]---
        0xffff880000000000-0xffffff0000000000         119T                               pgd
        ---[ ESPfix Area ]---
        0xffffff0000000000-0xffffff0000001000           4K     ro                 GLB NX pte
        0xffffff0000001000-0xffffff0000002000           4K                               pte
        0xffffff0000002000-0xffffff0000003000           4K     ro                 GLB NX pte
        ... 5 entries skipped ... 
        ---[ EFI Runtime Services ]---
        0xffffff0000100000-0xffffff0000200000           1M                               pte
        0xffffff0000200000-0xffffff0040000000        1022M                               pmd
        0xffffff0040000000-0xffffff8000000000         511G                               pud
        0xffffff8000000000-0x0000000000000000         512G                               pgd

        """
        expectLines(try dump(mm, markers), expected)
    }

    // MARK: arm64

    /// PUD, PMD, contiguous PTE and PTE leaves, holes at every depth, a W+X
    /// page; two markers reached by one note are both printed.
    @Test func arm64Small() throws {
        let (mm, b) = try kernelSpace(.arm64)
        let base: UInt64 = 0xffff_0000_0000_0000
        try b.map(base, size: 1 << 30, pfn: 0x40000, level: .pud, .kernel)
        try b.map(base + 0x4000_0000, size: 2 << 20, pfn: 0x80000, level: .pmd, .kernelRO)
        try b.map(base + 0x4020_0000, size: 64 << 10, pfn: 0x90000, level: .pte, contiguous: true, .kernelROX)
        try b.map(base + 0x4021_0000, size: 4096, pfn: 0x90010, level: .pte, Self.wx)
        let markers = [KernelAddressMarker("Linear Mapping start", base),
                       KernelAddressMarker("Linear Mapping end", base + 0x1_0000_0000)]
        let expected = """
        ---[ Linear Mapping start ]---
        0xffff000000000000-0xffff000040000000           1G PUD       RW NX SHD AF        BLK UXN    MEM/NORMAL
        0xffff000040000000-0xffff000040200000           2M PMD       ro NX SHD AF        BLK UXN    MEM/NORMAL
        0xffff000040200000-0xffff000040210000          64K PTE       ro x  SHD AF    CON     UXN    MEM/NORMAL
        0xffff000040210000-0xffff000040211000           4K PTE       RW x  SHD AF            UXN    MEM/NORMAL
        0xffff000040211000-0xffff000040400000        1980K PTE
        0xffff000040400000-0xffff000080000000        1020M PMD
        0xffff000080000000-0xffff000100000000           2G PUD
        ---[ Linear Mapping end ]---
        0xffff000100000000-0xffff008000000000         508G PUD
        0xffff008000000000-0x0000000000000000      261632G PGD

        """
        expectLines(try dump(mm, markers), expected)
        for walker in PTDump.Walker.allCases {
            let check = try PTDump.checkWX(mm: mm, markers: markers, walker: walker)
            #expect(check.wxPages == 1 && check.nonUXNPages == 0)
            #expect(check.message == "Checked W+X mappings: FAILED, 1 W+X pages found, 0 non-UXN pages found")
        }
    }

    /// Device memory types and the first-marker rule for arm64 (every marker
    /// the first note passes is printed).
    @Test func arm64MemoryTypesAndMarkers() throws {
        let (mm, b) = try kernelSpace(.arm64)
        let io: UInt64 = 0xffff_ffff_c080_0000
        try b.map(io, size: 4096, pfn: 0x3eff0, level: .pte, .kernelNoCache)
        try b.map(io + 0x1000, size: 4096, pfn: 0x3eff1, level: .pte, .kernelUncachedStrong)
        let markers = [KernelAddressMarker("Linear Mapping start", 0xffff_0000_0000_0000),
                       KernelAddressMarker("Linear Mapping end", 0xffff_8000_0000_0000),
                       KernelAddressMarker("PCI I/O start", io),
                       KernelAddressMarker("PCI I/O end", io + 0x100_0000)]
        let expected = """
        ---[ Linear Mapping start ]---
        0xffff000000000000-0xffff800000000000         128T PGD
        ---[ Linear Mapping end ]---
        0xffff800000000000-0xffffff8000000000      130560G PGD
        0xffffff8000000000-0xffffffffc0000000         511G PUD
        0xffffffffc0000000-0xffffffffc0800000           8M PMD
        ---[ PCI I/O start ]---
        0xffffffffc0800000-0xffffffffc0801000           4K PTE       RW NX SHD AF            UXN    DEVICE/nGnRE
        0xffffffffc0801000-0xffffffffc0802000           4K PTE       RW NX SHD AF            UXN    DEVICE/nGnRnE
        0xffffffffc0802000-0xffffffffc0a00000        2040K PTE
        0xffffffffc0a00000-0xffffffffc1800000          14M PMD
        ---[ PCI I/O end ]---
        0xffffffffc1800000-0x0000000000000000        1000M PMD

        """
        expectLines(try dump(mm, markers), expected)
        #expect(try PTDump.checkWX(mm: mm, markers: markers).message == "Checked W+X mappings: passed, no W+X pages found")
    }

    // MARK: Errors

    @Test func styleMustMatchArchitecture() throws {
        let (mm, _) = try kernelSpace(.arm64)
        var w = ProcWriter(ByteCollector())
        #expect(throws: PTDumpError.self) {
            try PTDump.write(mm: mm, markers: [], style: .x86, to: &w)
        }
        let user = try AddressSpace(geometry: .x86_64, memory: PhysicalMemory(budgetBytes: 16 << 20))
        #expect(throws: PTDumpError.self) { try PTDump.checkWX(mm: user, markers: []) }
    }
}
