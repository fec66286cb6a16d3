import Testing
@testable import MemoryModel
import PageWalk
@testable import ProcFS

/// ptdump of kernel tables after the kernel-table writers of docs/USERS.md
/// rows 32–35 (`KernelPageAttr`): the permission and cache bits they
/// rewrite show in the dump's columns, on both walkers, and nothing else
/// moves.
@Suite struct KernelPageAttrPTDumpTests {
    static let base: UInt64 = 0xffff_8880_0000_0000
    static let markers = [KernelAddressMarker("User Space", 0), KernelAddressMarker("Kernel Space", 1 << 63),
                          KernelAddressMarker("Low Kernel Mapping", base)]

    /// The layout of `PTDumpTests.x86FourLevelSmall`: a 1G RW leaf, a 2M
    /// read-only leaf, a read-only executable PTE and a W+X PTE.
    func kernelSpace() throws -> AddressSpace {
        let memory = try PhysicalMemory(budgetBytes: 64 << 20)
        let mm = try AddressSpace(geometry: .x86_64, memory: memory,
                                  options: .init(softDirty: false, pid: 0, name: "swapper"), kernel: true)
        let b = try KernelLayoutBuilder(mm)
        let wx = KernelProtection([.writable, .dirty, .young, .global, .executable])
        try b.map(Self.base, size: 1 << 30, pfn: 0x40000, level: .pud, .kernel)
        try b.map(Self.base + 0x4000_0000, size: 2 << 20, pfn: 0x200, level: .pmd, .kernelRO)
        try b.map(Self.base + 0x4020_0000, size: 4096, pfn: 0x1000, level: .pte, .kernelROX)
        try b.map(Self.base + 0x4020_1000, size: 4096, pfn: 0x1001, level: .pte, wx)
        return mm
    }

    func dump(_ mm: AddressSpace, markers: [KernelAddressMarker] = markers) throws -> [String] {
        var texts: [String] = []
        for walker in PTDump.Walker.allCases {
            var w = ProcWriter(ByteCollector(), capacity: 4096)
            try PTDump.write(mm: mm, markers: markers, walker: walker, to: &w)
            texts.append(w.finish().text)
        }
        #expect(texts[0] == texts[1])
        return texts[0].split(separator: "\n").map(String.init)
    }

    @Test func readOnlyAndUncachedShowInTheDump() throws {
        let before = try dump(kernelSpace())
        let pudLine = "0xffff888000000000-0xffff888040000000           1G     RW         PSE     GLB NX pud"
        let wxLine = "0xffff888040201000-0xffff888040202000           4K     RW                 GLB x  pte"
        #expect(before.contains(pudLine) && before.contains(wxLine))
        for walker in WalkerKind.allCases {
            let mm = try kernelSpace()
            // set_memory_ro() over the 1G leaf; the W+X page made uncached.
            _ = try KernelPageAttr.setMemory(mm, Self.base, pages: (1 << 30) / 4096, .readOnly(mm.geometry.layout),
                                             walker: walker)
            _ = try KernelPageAttr.setNoCache(mm, Self.base + 0x4020_1000, size: 4096, walker: walker)
            var expected = before
            expected[expected.firstIndex(of: pudLine)!] =
                "0xffff888000000000-0xffff888040000000           1G     ro         PSE     GLB NX pud"
            expected[expected.firstIndex(of: wxLine)!] =
                "0xffff888040201000-0xffff888040202000           4K     RW     PCD         GLB x  pte"
            #expect(try dump(mm) == expected)
            // set_memory_x() then clear_nocache: the W+X page back as it was.
            _ = try KernelPageAttr.clearNoCache(mm, Self.base + 0x4020_1000, size: 4096, walker: walker)
            _ = try KernelPageAttr.setMemory(mm, Self.base, pages: (1 << 30) / 4096, .readWrite(mm.geometry.layout),
                                             walker: walker)
            #expect(try dump(mm) == before)
        }
    }

    static let arm64Base: UInt64 = 0xffff_0000_0000_0000
    static let arm64Markers = [KernelAddressMarker("Linear Mapping start", arm64Base),
                               KernelAddressMarker("Linear Mapping end", arm64Base + 0x1_0000_0000)]

    /// arm64 kernel tables with a 1G RW block at `arm64Base`, then what
    /// `map` adds.
    func arm64Space(_ map: (KernelLayoutBuilder) throws -> Void) throws -> AddressSpace {
        let (mm, b) = try PTDumpTests().kernelSpace(.arm64)
        try b.map(Self.arm64Base, size: 1 << 30, pfn: 0x40000, level: .pud, .kernel)
        try map(b)
        return mm
    }

    /// arm64's `pageattr_ops` (USERS.md row 30) on the layout of
    /// `PTDumpTests.arm64Small`: the 1G block and the W+X page made
    /// read-only show `ro` in the dump, and nothing else moves.
    @Test func arm64ReadOnlyShowsInTheDump() throws {
        let (base, markers) = (Self.arm64Base, Self.arm64Markers)
        func space() throws -> AddressSpace {
            try arm64Space { b in
                try b.map(base + 0x4000_0000, size: 2 << 20, pfn: 0x80000, level: .pmd, .kernelRO)
                try b.map(base + 0x4020_0000, size: 64 << 10, pfn: 0x90000, level: .pte, contiguous: true, .kernelROX)
                try b.map(base + 0x4021_0000, size: 4096, pfn: 0x90010, level: .pte, PTDumpTests.wx)
            }
        }
        let before = try dump(space(), markers: markers)
        let pudLine = "0xffff000000000000-0xffff000040000000           1G PUD       RW NX SHD AF        BLK UXN    MEM/NORMAL"
        let wxLine = "0xffff000040210000-0xffff000040211000           4K PTE       RW x  SHD AF            UXN    MEM/NORMAL"
        for walker in WalkerKind.allCases {
            let mm = try space()
            let ro = PageAttrMasks.readOnly(mm.geometry.layout)
            _ = try KernelPageAttr.arm64ChangeMemory(mm, base, size: 1 << 30, ro, walker: walker)
            _ = try KernelPageAttr.arm64ChangeMemory(mm, base + 0x4021_0000, size: 4096, ro, walker: walker)
            var expected = before
            expected[try #require(expected.firstIndex(of: pudLine))] =
                "0xffff000000000000-0xffff000040000000           1G PUD       ro NX SHD AF        BLK UXN    MEM/NORMAL"
            expected[try #require(expected.firstIndex(of: wxLine))] =
                "0xffff000040210000-0xffff000040211000           4K PTE       ro x  SHD AF            UXN    MEM/NORMAL"
            #expect(try dump(mm, markers: markers) == expected)
        }
    }

    /// arm64's `split_to_ptes_ops` (USERS.md row 31) on the tables of
    /// `LinearMapSplitTests`-like layout: the 1G block, the contiguous PMD
    /// run and the contiguous PTE run are dumped as pages, no `CON`, no `BLK`,
    /// the frames' attributes unchanged.
    @Test func arm64SplitToPTEsShowsInTheDump() throws {
        let (base, markers) = (Self.arm64Base, Self.arm64Markers)
        func space() throws -> AddressSpace {
            try arm64Space { b in
                try b.map(base + 0x4000_0000, size: 32 << 20, pfn: 0x80000, level: .pmd, contiguous: true, .kernel)
                try b.map(base + 0x4200_0000, size: 64 << 10, pfn: 0x90000, level: .pte, contiguous: true, .kernelRO)
            }
        }
        let before = try dump(space(), markers: markers)
        #expect(before.contains("0xffff000000000000-0xffff000040000000           1G PUD       RW NX SHD AF        BLK UXN    MEM/NORMAL"))
        for walker in WalkerKind.allCases {
            let mm = try space()
            _ = try LinearMapSplit.splitToPTEs(mm, base..<base + 0x4201_0000, walker: walker)
            let after = try dump(mm, markers: markers)
            // The 1G block and the 32M run merge into one run of pages with
            // the same attributes; the read-only run stays apart, no CON.
            #expect(Array(after.prefix(4)) == [
                "---[ Linear Mapping start ]---",
                "0xffff000000000000-0xffff000042000000        1056M PTE       RW NX SHD AF            UXN    MEM/NORMAL",
                "0xffff000042000000-0xffff000042010000          64K PTE       ro NX SHD AF            UXN    MEM/NORMAL",
                "0xffff000042010000-0xffff000042200000        1984K PTE",
            ])
            #expect(Array(after.dropFirst(4)) == Array(before.suffix(5)))
            #expect(!after.contains { $0.contains("CON") || $0.contains("BLK") })
        }
    }
}
