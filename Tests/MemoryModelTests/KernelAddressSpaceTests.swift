import Testing
@testable import MemoryModel

@Suite struct KernelAddressSpaceTests {
    static let mib: UInt64 = 1 << 20
    static let gib: UInt64 = 1 << 30

    func memory() throws -> PhysicalMemory { try PhysicalMemory(budgetBytes: 64 << 20) }

    /// Checks that `address` translates to a present leaf at `level` with the
    /// given kernel-side permissions (and frame, when given).
    @discardableResult
    func expectLeaf(_ k: KernelAddressSpace, _ address: UInt64, _ level: PageTableLevel,
                    writable: Bool, executable: Bool, pfn: UInt64? = nil,
                    sourceLocation: SourceLocation = #_sourceLocation) -> UInt64? {
        guard case .present(let lv, let raw, let pagePFN) = k.mm.translate(address) else {
            Issue.record("0x\(String(address, radix: 16)) is not mapped: \(k.mm.translate(address))", sourceLocation: sourceLocation)
            return nil
        }
        let p = KernelProtection(decoding: raw, layout: k.geometry.layout)
        #expect(lv == level, "0x\(String(address, radix: 16)) leaf level", sourceLocation: sourceLocation)
        #expect(p.isWritable == writable, "0x\(String(address, radix: 16)) writable", sourceLocation: sourceLocation)
        #expect(p.isExecutable == executable, "0x\(String(address, radix: 16)) executable", sourceLocation: sourceLocation)
        #expect(p.attributes.contains(.young), sourceLocation: sourceLocation)
        #expect(!p.attributes.contains(.user), sourceLocation: sourceLocation)
        if let pfn { #expect(pagePFN == pfn, "0x\(String(address, radix: 16)) frame", sourceLocation: sourceLocation) }
        return raw
    }

    func expectUnmapped(_ k: KernelAddressSpace, _ address: UInt64, sourceLocation: SourceLocation = #_sourceLocation) {
        if case .present = k.mm.translate(address) {
            Issue.record("0x\(String(address, radix: 16)) should not be mapped", sourceLocation: sourceLocation)
        }
    }

    /// For every table reachable from the root (each visited once), the
    /// number of entries pointing at it.
    func tableReferences(_ mm: AddressSpace) -> [TableID: Int] {
        var refs: [TableID: Int] = [:]
        var queue: [(TableID, Int)] = [(mm.root, 0)]
        var seen: Set<TableID> = [mm.root]
        let l = mm.geometry.layout
        while let (t, depth) = queue.popLast() {
            let level = mm.tableLevels[depth]
            guard level != .pte else { continue }
            for i in 0..<512 {
                let w = mm.entry(at: EntrySlot(t, i, level))
                guard l.isTable(w, level) else { continue }
                let child = mm.memory.tables.uncheckedTable(atPFN: l.pfn(w))
                refs[child, default: 0] += 1
                if seen.insert(child).inserted { queue.append((child, depth + 1)) }
            }
        }
        return refs
    }

    // MARK: x86-64

    @Test func x86FourLevelLeavesAndPermissions() throws {
        let layout = try KernelLayout.x86_64(levels: 4)
        let k = try layout.build(on: memory())
        let po = layout[symbol: "PAGE_OFFSET"]
        #expect(po == 0xffff_8880_0000_0000)
        // Direct map: 4K at the bottom, 2M, 1G, 2M and 4K tail; image alias read-only.
        expectLeaf(k, po + 0x10_0000, .pte, writable: true, executable: false, pfn: 0x100)
        expectLeaf(k, po + 0x20_0000, .pmd, writable: true, executable: false, pfn: 0x200)
        let gb = try #require(expectLeaf(k, po + Self.gib + 0x1234_5000, .pud, writable: true, executable: false,
                                         pfn: (Self.gib + 0x1234_5000) >> 12))
        let gbEntry = PUD(rawValue: gb, architecture: .x86_64)
        #expect(gbEntry.isLeaf && gbEntry.rawValue & EntryLayout.x86_64.huge != 0)
        #expect(gb & EntryLayout.x86_64.global != 0 && gb & EntryLayout.x86_64.noExecute != 0)
        expectLeaf(k, po + 0x8000_0000, .pmd, writable: true, executable: false)
        expectLeaf(k, po + 0xbfe0_0000, .pte, writable: true, executable: false)
        expectUnmapped(k, po + 0xbffd_f000)
        expectLeaf(k, po + 0x1_0000_0000, .pud, writable: true, executable: false, pfn: 0x10_0000)
        expectLeaf(k, po + 0x100_0000, .pmd, writable: false, executable: false, pfn: 0x1000)   // text alias
        expectLeaf(k, po + 0x240_6000, .pte, writable: true, executable: false)

        // High kernel mapping.
        let text = layout[symbol: "_text"], etext = layout[symbol: "_etext"]
        let rawText = try #require(expectLeaf(k, text, .pmd, writable: false, executable: true, pfn: 0x1000))
        #expect(rawText & EntryLayout.x86_64.huge != 0 && rawText & EntryLayout.x86_64.global != 0)
        expectLeaf(k, etext - 0x1000, .pte, writable: false, executable: true)
        expectUnmapped(k, etext)
        expectLeaf(k, layout[symbol: "__start_rodata"], .pmd, writable: false, executable: false)
        expectLeaf(k, layout[symbol: "__end_rodata"] - 0x1000, .pte, writable: false, executable: false)
        expectUnmapped(k, layout[symbol: "__end_rodata"])
        expectLeaf(k, layout[symbol: "_sdata"], .pmd, writable: true, executable: false)
        expectLeaf(k, layout[symbol: "__bss_start"], .pte, writable: true, executable: false)
        expectLeaf(k, layout[symbol: "_end"] - 0x1000, .pte, writable: true, executable: false)
        expectUnmapped(k, layout[symbol: "_end"])
        expectUnmapped(k, layout[symbol: "__START_KERNEL_map"])

        // vmalloc with guard gaps, ioremap uncached, one huge area.
        let vm = layout[symbol: "VMALLOC_START"]
        #expect(vm == 0xffff_c900_0000_0000)
        expectLeaf(k, vm, .pte, writable: true, executable: false)
        expectUnmapped(k, vm + 0x4000)
        let io = try #require(expectLeaf(k, vm + 0x5000, .pte, writable: true, executable: false))
        #expect(io & EntryLayout.x86_64.cacheDisable != 0)
        let uc = try #require(expectLeaf(k, vm + 0x40_9000, .pte, writable: true, executable: false))
        #expect(uc & EntryLayout.x86_64.cacheDisable != 0 && uc & EntryLayout.x86_64.writeThrough != 0)
        expectLeaf(k, vm + 0x20_0000, .pmd, writable: true, executable: false)

        // vmemmap in 2M leaves; no struct pages for the 3G–4G hole.
        let vmemmap = layout[symbol: "VMEMMAP_START"]
        expectLeaf(k, vmemmap, .pmd, writable: true, executable: false)
        expectUnmapped(k, vmemmap + 48 * Self.mib)
        expectLeaf(k, vmemmap + 64 * Self.mib, .pmd, writable: true, executable: false)

        // cpu_entry_area, modules, fixmap.
        expectLeaf(k, 0xffff_fe00_0000_0000, .pte, writable: false, executable: false)
        expectLeaf(k, 0xffff_fe00_0000_2000, .pte, writable: true, executable: false)
        let mods = layout[symbol: "MODULES_VADDR"]
        #expect(mods == 0xffff_ffff_a000_0000)
        expectLeaf(k, mods, .pte, writable: false, executable: true)
        expectUnmapped(k, mods + 0x4000)
        expectLeaf(k, mods + 0x5000, .pte, writable: false, executable: false)
        expectLeaf(k, mods + 0x8000, .pte, writable: true, executable: false)
        let apic = try #require(expectLeaf(k, 0xffff_ffff_ff5f_c000, .pte, writable: true, executable: false, pfn: 0xfee00))
        #expect(apic & EntryLayout.x86_64.cacheDisable != 0)

        // User space and the LDT remap are empty.
        expectUnmapped(k, 0x40_0000)
        expectUnmapped(k, layout[symbol: "LDT_BASE_ADDR"])
        try k.tearDown()
    }

    @Test func x86KasanZeroShadowIsSharedTables() throws {
        let mem = try memory()
        let k = try KernelLayout.x86_64(levels: 4).build(on: mem)
        let kasan = try #require(k.layout.kasan)
        #expect(kasan.start == 0xffff_ec00_0000_0000 && kasan.end == 0xffff_fc00_0000_0000)
        let z = try #require(k.zeroShadow)
        // The whole region reads as the zero page, read-only, at PTE level.
        for a in [kasan.start, kasan.start + 0x123_4567_8000, kasan.end - 0x1000] {
            expectLeaf(k, a, .pte, writable: false, executable: false, pfn: mem.zeroPage.pfn)
        }
        // Real shadow for the direct map, in 2M blocks.
        let dmShadow = kasan.shadow(of: k.layout[symbol: "PAGE_OFFSET"])
        #expect(dmShadow == 0xffff_ed10_0000_0000)
        let real = try #require(expectLeaf(k, dmShadow, .pmd, writable: true, executable: false))
        #expect(PMD(rawValue: real, architecture: .x86_64).pfn != mem.zeroPage.pfn)
        // Kernel image shadow is real, vmalloc shadow is unpopulated except
        // where vmalloc pages exist.
        expectLeaf(k, kasan.shadow(of: k.layout[symbol: "_text"]), .pmd, writable: true, executable: false)
        let vmShadow = kasan.shadow(of: k.layout[symbol: "VMALLOC_START"])
        expectLeaf(k, vmShadow, .pte, writable: true, executable: false)
        expectUnmapped(k, kasan.shadow(of: k.layout[symbol: "VMALLOC_START"] + Self.gib))

        // Root entries wholly inside the shadow all point at one PUD table.
        let rootShift = UInt64(k.geometry.shift(.p4d))
        let first = EntrySlot(k.mm.root, Int((kasan.start >> rootShift) & 511), .p4d)
        let second = EntrySlot(k.mm.root, first.index + 1, .p4d)
        #expect(k.mm.entry(at: first) == k.mm.entry(at: second))
        let pudTable = try #require(z.tables[.pud])
        #expect(k.mm.entry(at: first) == k.geometry.layout.table(pfn: mem.tables.pfn(of: pudTable), user: false))
        #expect(k.isZeroShadowTable(pfn: mem.tables.pfn(of: pudTable)))

        // Every shared table: one table, many references, share count = references − 1.
        let refs = tableReferences(k.mm)
        for level in [PageTableLevel.pud, .pmd, .pte] {
            let t = try #require(z.tables[level])
            let n = refs[t] ?? 0
            #expect(n > 16, "\(level) zero table referenced \(n) times")
            #expect(mem.tables.shareCount(t) == n - 1)
        }
        #expect(mem.tables.usedEntries(z.tables[.pte]!) == 512)
        // All other tables are referenced once and not shared.
        let shared = Set(z.tables.values).union(k.espfixTables)
        for (t, n) in refs where !shared.contains(t) {
            #expect(n == 1 && mem.tables.shareCount(t) == 0)
        }
        try k.tearDown()
    }

    @Test func x86EspfixClonesShareTables() throws {
        let mem = try memory()
        let k = try KernelLayout.x86_64(levels: 4, kasan: false).build(on: mem)
        let e = try #require(k.layout.espfix)
        #expect(e.base == 0xffff_ff00_0000_0000)
        for off: UInt64 in [0, 16 << 12, 0x1f0 << 12, 5 * Self.mib, 3 * Self.gib + 0x10000] {
            expectLeaf(k, e.base + off, .pte, writable: false, executable: false, pfn: e.stackPFN)
        }
        expectUnmapped(k, e.base + 0x1000)
        expectUnmapped(k, e.base + 4 * Self.gib)
        #expect(k.espfixTables.count == 2)
        let pmd = k.espfixTables[0], pte = k.espfixTables[1]
        #expect(mem.tables.shareCount(pmd) == e.pudClones - 1)
        #expect(mem.tables.shareCount(pte) == 511)
        #expect(mem.tables.usedEntries(pte) == 512 / e.pteStride)
        #expect(k.zeroShadow == nil)
        try k.tearDown()
    }

    @Test func fiveLevelDiffersInTheP4DLevel() throws {
        let mem = try memory()
        let four = try KernelLayout.x86_64(levels: 4).build(on: mem)
        let five = try KernelLayout.x86_64(levels: 5).build(on: mem)
        #expect(four.mm.counterSnapshot.p4dTables == 0)
        #expect(five.mm.counterSnapshot.p4dTables > 0)
        #expect(four.mm.tableLevels == [.p4d, .pud, .pmd, .pte])
        #expect(five.mm.tableLevels == [.pgd, .p4d, .pud, .pmd, .pte])
        let po5 = five.layout[symbol: "PAGE_OFFSET"]
        #expect(po5 == 0xff11_0000_0000_0000)
        #expect(five.layout[symbol: "VMALLOC_START"] == 0xffa0_0000_0000_0000)
        #expect(five.layout[symbol: "VMEMMAP_START"] == 0xffd4_0000_0000_0000)
        #expect(five.layout[symbol: "KASAN_SHADOW_START"] == 0xffdf_fc00_0000_0000)
        // The root entry for the direct map points at a real P4D table.
        let rootSlot = EntrySlot(five.mm.root, Int((po5 >> 48) & 511), .pgd)
        let w = five.mm.entry(at: rootSlot)
        let l = five.geometry.layout
        #expect(l.isTable(w, .pgd))
        #expect(mem.tables.level(mem.tables.uncheckedTable(atPFN: l.pfn(w))) == .p4d)
        // Same leaves relative to the base.
        expectLeaf(five, po5 + Self.gib, .pud, writable: true, executable: false, pfn: Self.gib >> 12)
        expectLeaf(five, five.layout[symbol: "_text"], .pmd, writable: false, executable: true, pfn: 0x1000)
        // The 5-level zero shadow adds a shared P4D table.
        let z5 = try #require(five.zeroShadow), z4 = try #require(four.zeroShadow)
        #expect(z4.tables[.p4d] == nil)
        let p4d = try #require(z5.tables[.p4d])
        #expect(mem.tables.level(p4d) == .p4d && mem.tables.shareCount(p4d) > 0)
        expectLeaf(five, five.layout.kasan!.start, .pte, writable: false, executable: false, pfn: mem.zeroPage.pfn)
        try four.tearDown()
        try five.tearDown()
    }

    // MARK: arm64

    @Test func arm64LinearMapAndImage() throws {
        let layout = KernelLayout.arm64
        let k = try layout.build(on: memory())
        let l = EntryLayout.arm64
        func lm(_ pa: UInt64) -> UInt64 { 0xffff_0000_0000_0000 + pa - 0x4000_0000 }
        // 1G block where a whole aligned GiB is RAM.
        expectLeaf(k, lm(0xc000_0000), .pud, writable: true, executable: false, pfn: 0xc0000)
        // Contiguous 2M runs (32M) elsewhere.
        let cont = try #require(expectLeaf(k, lm(0x4400_0000), .pmd, writable: true, executable: false))
        #expect(cont & l.contiguous != 0 && cont & l.tableBit == 0)
        // The 30M after the last 32M run: plain 2M blocks; then 64K runs and a 4K tail.
        let plain = try #require(expectLeaf(k, lm(0x1_3e00_0000), .pmd, writable: true, executable: false))
        #expect(plain & l.contiguous == 0)
        let contPTE = try #require(expectLeaf(k, lm(0x1_3fe0_0000), .pte, writable: true, executable: false))
        #expect(contPTE & l.contiguous != 0)
        let tail = try #require(expectLeaf(k, lm(0x1_3ffd_a000), .pte, writable: true, executable: false))
        #expect(tail & l.contiguous == 0)
        expectUnmapped(k, lm(0x1_3ffd_b000))
        // Kernel image alias in the linear map: read-only, no contiguous hint.
        let alias = try #require(expectLeaf(k, lm(0x4020_0000), .pmd, writable: false, executable: false))
        #expect(alias & l.contiguous == 0)

        // Kernel image at KIMAGE_VADDR: UXN always, PXN clear only on text.
        let text = layout[symbol: "_text"]
        #expect(text == 0xffff_8000_8000_0000)
        let t = try #require(expectLeaf(k, text, .pmd, writable: false, executable: true, pfn: 0x40200))
        #expect(t & l.noExecute != 0 && t & l.privilegedNoExecute == 0 && t & l.readOnly != 0)
        let tcont = try #require(expectLeaf(k, text + 0x160_0000, .pte, writable: false, executable: true))
        #expect(tcont & l.contiguous != 0)
        let ttail = try #require(expectLeaf(k, layout[symbol: "_etext"] - 0x1000, .pte, writable: false, executable: true))
        #expect(ttail & l.contiguous == 0)
        let ro = try #require(expectLeaf(k, layout[symbol: "__start_rodata"], .pte, writable: false, executable: false))
        #expect(ro & l.contiguous == 0 && ro & l.privilegedNoExecute != 0)
        expectLeaf(k, text + 0x180_0000, .pmd, writable: false, executable: false)
        expectUnmapped(k, layout[symbol: "__inittext_begin"])
        let data = try #require(expectLeaf(k, layout[symbol: "_data"], .pte, writable: true, executable: false))
        #expect(data & l.contiguous != 0 && data & l.readOnly == 0 && data & l.write != 0)
        expectUnmapped(k, layout[symbol: "_end"])

        // vmemmap, PCI I/O (device memory), modules.
        expectLeaf(k, layout[symbol: "VMEMMAP_START"], .pmd, writable: true, executable: false)
        let pci = try #require(expectLeaf(k, layout[symbol: "PCI_IO_START"], .pte, writable: true, executable: false))
        #expect(KernelProtection(decoding: pci, layout: l).memoryType == .deviceNGnRE)
        expectLeaf(k, layout[symbol: "MODULES_VADDR"] + 0x1_0000, .pte, writable: false, executable: true)
        #expect(layout[symbol: "VMEMMAP_START"] == 0xffff_fdff_c000_0000)
        #expect(layout[symbol: "VMALLOC_END"] == 0xffff_fdff_b000_0000)
        #expect(layout[symbol: "PCI_IO_START"] == 0xffff_ffff_c080_0000)
        try k.tearDown()
    }

    @Test func arm64WithKasanSharesZeroShadow() throws {
        let mem = try memory()
        let k = try KernelLayout.arm64(kasan: true).build(on: mem)
        let kasan = try #require(k.layout.kasan)
        #expect(kasan.start == 0xffff_6000_0000_0000 && kasan.end == 0xffff_8000_0000_0000)
        #expect(k.markers.contains { $0.name == "Linear Mapping end" && $0.start == kasan.start })
        expectLeaf(k, kasan.shadow(of: 0xffff_4000_0000_0000), .pte, writable: false, executable: false, pfn: mem.zeroPage.pfn)
        // The shadow of a 1G linear block is real, in 2M blocks.
        expectLeaf(k, kasan.shadow(of: 0xffff_0000_8000_0000), .pmd, writable: true, executable: false)
        let z = try #require(k.zeroShadow)
        let refs = tableReferences(k.mm)
        for (_, t) in z.tables { #expect(mem.tables.shareCount(t) == (refs[t] ?? 0) - 1) }
        #expect(k.writableExecutableLeaves().isEmpty)
        try k.tearDown()
    }

    // MARK: Layout-wide properties

    func allLayouts() throws -> [KernelLayout] {
        [try .x86_64(levels: 4), try .x86_64(levels: 5), try .x86_64(levels: 4, kasan: false, efiRuntime: false),
         .arm64, .arm64(kasan: true)]
    }

    @Test func writeXorExecuteHoldsForStandardLayouts() throws {
        let mem = try memory()
        for layout in try allLayouts() {
            #expect(!layout.mappings.contains { $0.protection.isWX }, "\(layout.name)")
            let k = try layout.build(on: mem)
            #expect(k.writableExecutableLeaves().isEmpty, "\(layout.name)")
            try k.tearDown()
        }
    }

    @Test func writeXorExecuteViolationIsFound() throws {
        let mem = try memory()
        let mm = try AddressSpace(geometry: .x86_64, memory: mem, kernel: true)
        let b = try KernelLayoutBuilder(mm)
        try b.map(0xffff_c900_0000_0000, size: 0x2000, pfn: 0x1234, level: .pte,
                  KernelProtection([.writable, .dirty, .young, .global, .executable]))
        let k = KernelAddressSpace(mm: mm, layout: try .x86_64(), zeroShadow: nil, espfixTables: [])
        #expect(k.writableExecutableLeaves() == [0xffff_c900_0000_0000, 0xffff_c900_0000_1000])
        try mm.tearDown()
    }

    @Test func markersAreOrderedWithTheDumpNames() throws {
        for layout in try allLayouts() {
            let starts = layout.markers.map(\.start)
            #expect(starts == starts.sorted(), "\(layout.name): \(layout.markers)")
        }
        let x86 = try KernelLayout.x86_64(levels: 4).markers.map(\.name)
        #expect(x86 == ["User Space", "Kernel Space", "LDT remap", "Low Kernel Mapping", "vmalloc() Area", "Vmemmap",
                        "KASAN shadow", "KASAN shadow end", "CPU entry Area", "ESPfix Area", "EFI Runtime Services",
                        "High Kernel Mapping", "Modules", "End Modules", "Fixmap Area"])
        #expect(try KernelLayout.x86_64().markers.first { $0.name == "ESPfix Area" }?.maxLines == 16)
        let arm = KernelLayout.arm64.markers.map(\.name)
        #expect(arm == ["Linear Mapping start", "Linear Mapping end", "Modules start", "Modules end", "vmalloc() area",
                        "vmalloc() end", "vmemmap start", "vmemmap end", "PCI I/O start", "PCI I/O end",
                        "Fixmap start", "Fixmap end"])
        #expect(KernelLayout.arm64.dumpStart == 0xffff_0000_0000_0000)
        // Every mapping lies in the section its name says.
        let l4 = try KernelLayout.x86_64()
        #expect(l4.marker(for: l4[symbol: "_text"])?.name == "High Kernel Mapping")
        #expect(l4.marker(for: l4[symbol: "PAGE_OFFSET"] + 1)?.name == "Low Kernel Mapping")
        #expect(KernelLayout.arm64.marker(for: KernelLayout.arm64[symbol: "_text"])?.name == "vmalloc() area")
    }

    @Test func teardownFreesEveryTableOnce() throws {
        let mem = try memory()
        let before = mem.tables.liveTables
        for layout in try allLayouts() {
            let k = try layout.build(on: mem)
            let c = k.mm.counterSnapshot
            // Tables counted once each, shared ones included; the root is not counted.
            #expect(mem.tables.liveTables - before == c.pteTables + c.pmdTables + c.pudTables + c.p4dTables + 1)
            #expect(tableReferences(k.mm).count + 1 == mem.tables.liveTables - before)
            try k.tearDown()
            #expect(mem.tables.liveTables == before, "\(layout.name)")
            #expect(k.mm.counterSnapshot.pageTableBytes == 0)
            #expect(throws: ModelError.tornDown) { try k.tearDown() }
        }
    }

    @Test func failedBuildLeavesNothingBehind() throws {
        let mem = try memory()
        let before = mem.tables.liveTables
        let full = try KernelLayout.x86_64(levels: 5).build(on: mem)
        let total = mem.tables.liveTables - before
        try full.tearDown()
        for n in [1, 2, 7, total / 2, total - 1, total] {
            mem.tables.injectAllocationFailure(after: n)
            #expect(throws: ModelError.self) { _ = try KernelLayout.x86_64(levels: 5).build(on: mem) }
            #expect(mem.tables.liveTables == before, "failure at allocation \(n)")
        }
        mem.tables.injectAllocationFailure(after: 0)
    }

    // MARK: Builder

    @Test func builderMapsAtChosenLevelsAndRejectsMisuse() throws {
        let mem = try memory()
        let user = try AddressSpace(geometry: .x86_64, memory: mem)
        #expect(throws: ModelError.self) { _ = try KernelLayoutBuilder(user) }
        let before = mem.tables.liveTables
        let mm = try AddressSpace(geometry: .x86_64, memory: mem, kernel: true)
        let b = try KernelLayoutBuilder(mm)
        let base: UInt64 = 0xffff_c900_0000_0000
        try b.map(base, size: Self.gib, pfn: 0x40000, level: .pud, .kernel)
        try b.map(base + Self.gib, size: 4 * Self.mib, pfn: 0x400, level: .pmd, .kernelRO)
        try b.map(base + Self.gib + 4 * Self.mib, size: 0x3000, pfn: 0x77, level: .pte, .kernelROX)
        guard case .none = mm.translate(base + Self.gib + 4 * Self.mib + 0x3000) else { Issue.record("past the PTEs"); return }
        guard case .present(.pud, _, 0x40001) = mm.translate(base + 0x1000) else { Issue.record("pud leaf"); return }
        guard case .present(.pmd, _, 0x401) = mm.translate(base + Self.gib + 0x1000) else { Issue.record("pmd leaf"); return }
        guard case .present(.pte, let raw, 0x78) = mm.translate(base + Self.gib + 4 * Self.mib + 0x1000) else {
            Issue.record("pte leaf"); return
        }
        #expect(PTE(rawValue: raw, architecture: .x86_64).isExecutable && !PTE(rawValue: raw, architecture: .x86_64).isUser)
        // Kernel tables carry no user bit.
        #expect(mm.entry(at: EntrySlot(mm.root, Int((base >> 39) & 511), .p4d)) & EntryLayout.x86_64.user == 0)

        let live = mem.tables.liveTables
        // Misaligned, overlapping, user-half and contiguous-on-x86 requests fail before writing.
        #expect(throws: ModelError.self) { try b.map(base + 0x1000, size: 2 * Self.mib, pfn: 0, level: .pmd, .kernel) }
        #expect(throws: ModelError.self) { try b.map(base + 2 * Self.gib, size: 2 * Self.mib, pfn: 1, level: .pmd, .kernel) }
        #expect(throws: ModelError.self) { try b.map(base + 0x20_0000, size: 0x1000, pfn: 1, level: .pte, .kernel) }
        #expect(throws: ModelError.self) { try b.map(base + Self.gib + 4 * Self.mib, size: 0x1000, pfn: 1, level: .pte, .kernel) }
        #expect(throws: ModelError.self) { try b.map(0x40_0000, size: 0x1000, pfn: 1, level: .pte, .kernel) }
        #expect(throws: ModelError.self) { try b.map(base + 3 * Self.gib, size: 0x10000, pfn: 0, level: .pte, contiguous: true, .kernel) }
        #expect(throws: ModelError.self) { try b.map(base + 3 * Self.gib, size: 0x1000, pfn: 0, level: .pgd, .kernel) }
        #expect(mem.tables.liveTables == live)

        // The largest-leaf planner.
        let runs = try b.plan(base + 4 * Self.gib - 0x1000, size: Self.gib + 2 * Self.mib + 0x2000, pfn: 0x3ffff,
                              policy: .largest(upTo: .pud, contiguous: false))
        #expect(runs.map(\.level) == [.pte, .pud, .pmd, .pte])
        #expect(runs.map(\.size) == [0x1000, Self.gib, 2 * Self.mib, 0x1000])
        try mm.tearDown()
        #expect(mem.tables.liveTables == before)
    }

    @Test func arm64ContiguousRuns() throws {
        let mem = try memory()
        let mm = try AddressSpace(geometry: .arm64, memory: mem, kernel: true)
        let b = try KernelLayoutBuilder(mm)
        let base: UInt64 = 0xffff_8000_9000_0000
        let runs = try b.map(base, size: 0x2_3000, pfn: 0x50000, policy: .largest(upTo: .pmd, contiguous: true), .kernel)
        #expect(runs.count == 2 && runs[0].contiguous && runs[0].size == 0x2_0000 && !runs[1].contiguous)
        for i in 0..<0x23 {
            guard case .present(.pte, let raw, let pfn) = mm.translate(base + UInt64(i) << 12) else {
                Issue.record("page \(i)"); continue
            }
            #expect(pfn == 0x50000 + UInt64(i))
            #expect((raw & EntryLayout.arm64.contiguous != 0) == (i < 0x20))
        }
        // Contiguous PMD runs must be 32M aligned.
        #expect(throws: ModelError.self) {
            try b.map(base + 0x20_0000, size: 32 * Self.mib, pfn: 0x60200, level: .pmd, contiguous: true, .kernel)
        }
        try b.map(base + 0x200_0000, size: 32 * Self.mib, pfn: 0x62000, level: .pmd, contiguous: true, .kernelRO)
        guard case .present(.pmd, let raw, _) = mm.translate(base + 0x200_0000 + 0x30_0000) else { Issue.record("cont pmd"); return }
        let p = KernelProtection(decoding: raw, layout: .arm64)
        #expect(p.attributes.contains(.contiguous) && !p.isWritable && !p.isExecutable)
        try mm.tearDown()
    }

    @Test func sharedTableLinksCountShares() throws {
        let mem = try memory()
        let before = mem.tables.liveTables
        let mm = try AddressSpace(geometry: .x86_64, memory: mem, kernel: true)
        let b = try KernelLayoutBuilder(mm)
        let z = try b.makeZeroShadow(pagePFN: mem.zeroPage.pfn)
        let base: UInt64 = 0xffff_ec00_0000_0000
        // A range covering two whole PUD entries and part of a third.
        try b.mapZeroShadow(base, base + 2 * Self.gib + 6 * Self.mib, using: z)
        #expect(b.references(to: z.tables[.pmd]!) == 512 + 2)
        #expect(mem.tables.shareCount(z.tables[.pmd]!) == 513)
        #expect(b.references(to: z.tables[.pte]!) == 512 + 3)
        #expect(mem.tables.shareCount(z.tables[.pte]!) == 514)
        // Linking a table of the wrong level, or into a used entry, fails.
        #expect(throws: ModelError.self) { try b.link(base + 8 * Self.gib, at: .pmd, to: z.tables[.pmd]!) }
        #expect(throws: ModelError.self) { try b.link(base, at: .pud, to: z.tables[.pmd]!) }
        // The unused shared PUD table is discarded; teardown frees the rest once.
        b.discardUnlinkedSharedTables()
        try mm.tearDown()
        #expect(mem.tables.liveTables == before)
    }
}
