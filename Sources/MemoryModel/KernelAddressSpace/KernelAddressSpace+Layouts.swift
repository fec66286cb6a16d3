/// Hands out raw frames while a layout is described (vmemmap, vmalloc and
/// module backing), so that distinct mappings get distinct frames.
struct LayoutFrames {
    var next: UInt64
    let limit: UInt64
    init(_ pool: Range<UInt64>) { next = pool.lowerBound; limit = pool.upperBound }
    mutating func take(_ count: UInt64, alignment: UInt64 = 1) -> UInt64 {
        let first = (next + alignment - 1) & ~(alignment - 1)
        precondition(first + count <= limit, "layout frame pool exhausted")
        next = first + count
        return first
    }
    var remaining: Range<UInt64> { next..<limit }
}

private let KiB: UInt64 = 1 << 10
private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30
private let TiB: UInt64 = 1 << 40

extension KernelLayout {
    /// Cuts `[start, end)` of physical memory into pieces, applying the
    /// protection of the override covering each piece (kernel image aliases)
    /// or `base` elsewhere.
    static func pieces(_ start: UInt64, _ end: UInt64, base: (KernelProtection, KernelLeafPolicy),
                       overrides: [(Range<UInt64>, KernelProtection, KernelLeafPolicy)])
        -> [(Range<UInt64>, KernelProtection, KernelLeafPolicy)] {
        var out: [(Range<UInt64>, KernelProtection, KernelLeafPolicy)] = []
        var a = start
        for (r, p, pol) in overrides.sorted(by: { $0.0.lowerBound < $1.0.lowerBound }) {
            let lo = max(r.lowerBound, a), hi = min(r.upperBound, end)
            guard lo < hi else { continue }
            if a < lo { out.append((a..<lo, base.0, base.1)) }
            out.append((lo..<hi, p, pol))
            a = hi
        }
        if a < end { out.append((a..<end, base.0, base.1)) }
        return out
    }

    /// Runs of 128M memory sections that hold RAM, as section index ranges
    /// counted from `physBase`.
    static func presentSections(_ ram: [Range<UInt64>], physBase: UInt64) -> [Range<UInt64>] {
        let sectionSize: UInt64 = 128 * MiB
        var sections = Set<UInt64>()
        for r in ram {
            var s = (r.lowerBound - physBase) / sectionSize
            while s * sectionSize + physBase < r.upperBound { sections.insert(s); s += 1 }
        }
        var runs: [Range<UInt64>] = []
        for s in sections.sorted() {
            if let last = runs.last, last.upperBound == s { runs[runs.count - 1] = last.lowerBound..<(s + 1) } else { runs.append(s..<(s + 1)) }
        }
        return runs
    }

    // MARK: x86-64

    /// An x86-64 `init_mm` as a 6.x kernel without KASLR lays it out
    /// (Documentation/arch/x86/x86_64/mm.rst), 4- or 5-level:
    /// - user space empty; the LDT remap area empty (LDTs are mapped per mm);
    /// - the direct map at `page_offset_base` (0xffff888000000000, 5-level
    ///   0xff11000000000000) of ~8 GiB of RAM in 1G leaves with 2M and 4K
    ///   edges, the kernel image's alias read-only;
    /// - vmalloc (0xffffc90000000000 / 0xffa0000000000000): a few 4K areas
    ///   (vmalloc, ioremap uncached, a vmap stack) with guard pages and one
    ///   2M huge-vmalloc area;
    /// - vmemmap (0xffffea0000000000 / 0xffd4000000000000) in 2M leaves for
    ///   the present memory sections;
    /// - with `kasan`, the shadow (0xffffec0000000000 4-level): real shadow
    ///   for the direct map, image, vmalloc and module pages, the rest one
    ///   shared zero page through shared tables, vmalloc shadow unpopulated;
    /// - cpu_entry_area (0xfffffe0000000000): read-only IDT and per-CPU GDT,
    ///   entry stack, TSS and exception stacks with guard pages;
    /// - ESPfix (0xffffff0000000000) with its cloned tables;
    /// - with `efiRuntime`, a few EFI runtime regions below EFI_VA_START
    ///   (a 6.x kernel keeps these in `efi_mm`, so a real `init_mm` dump shows
    ///   the section empty: pass `efiRuntime: false` for that);
    /// - the high kernel mapping (0xffffffff80000000, image at 16M): text RO
    ///   executable in 2M leaves and a 4K tail, rodata RO NX, data and bss
    ///   RW NX, freed gaps not present;
    /// - modules (0xffffffffa0000000): 4K text RO executable, rodata RO NX,
    ///   data RW NX, each with a guard page;
    /// - fixmap: a few 4K pages (local APIC and I/O APIC uncached).
    public static func x86_64(levels: Int = 4, kasan: Bool = true, efiRuntime: Bool = true,
                              cpus: Int = 4) throws(ModelError) -> KernelLayout {
        guard levels == 4 || levels == 5 else {
            throw .invalidGeometry("the x86-64 kernel layout has 4 or 5 levels, not \(levels)")
        }
        guard (1...64).contains(cpus) else { throw .invalidArgument(name: "cpus", reason: "\(cpus) is not in 1…64") }
        let geometry = try Geometry(.x86_64, levels: levels)
        let five = levels == 5
        let pageOffset: UInt64 = five ? 0xff11_0000_0000_0000 : 0xffff_8880_0000_0000
        let ldtBase: UInt64 = five ? 0xff10_0000_0000_0000 : 0xffff_8800_0000_0000
        let vmallocStart: UInt64 = five ? 0xffa0_0000_0000_0000 : 0xffff_c900_0000_0000
        let vmallocEnd: UInt64 = vmallocStart + (five ? 12800 : 32) * TiB - 1
        let vmemmapStart: UInt64 = five ? 0xffd4_0000_0000_0000 : 0xffff_ea00_0000_0000
        let kasanOffset: UInt64 = 0xdfff_fc00_0000_0000
        let kernelHalf: UInt64 = five ? 0xff00_0000_0000_0000 : 0xffff_8000_0000_0000
        let kasanStart = (kernelHalf >> 3) &+ kasanOffset
        let kasanEnd: UInt64 = 0xffff_fc00_0000_0000
        let cpuEntryArea: UInt64 = 0xffff_fe00_0000_0000
        let espfixBase: UInt64 = 0xffff_ff00_0000_0000
        let efiVAEnd: UInt64 = 0xffff_ffef_0000_0000
        let efiVAStart: UInt64 = 0xffff_ffff_0000_0000
        let startKernelMap: UInt64 = 0xffff_ffff_8000_0000
        let modulesVaddr: UInt64 = 0xffff_ffff_a000_0000
        let modulesEnd: UInt64 = 0xffff_ffff_ff00_0000
        let fixaddrTop: UInt64 = 0xffff_ffff_ff7f_f000
        let fixaddrStart: UInt64 = 0xffff_ffff_ff57_9000

        // Physical RAM (e820-like): low memory up to just below 3G, 5G above
        // 4G. The first MiB (ISA range) is mapped on its own, so the direct
        // map's first 2M are 4K pages.
        let ram: [Range<UInt64>] = [0..<0x10_0000, 0x10_0000..<0xbffd_f000, 0x1_0000_0000..<0x2_4000_0000]
        var frames = LayoutFrames(0x14_0000..<0x24_0000)   // the top 4 GiB of RAM

        // Kernel image (linked at 0xffffffff81000000, loaded at 16M).
        let text: UInt64 = 0xffff_ffff_8100_0000
        let etext: UInt64 = 0xffff_ffff_8240_6000
        let rodata: UInt64 = 0xffff_ffff_8260_0000
        let erodata: UInt64 = 0xffff_ffff_82d1_c000
        let sdata: UInt64 = 0xffff_ffff_82e0_0000
        let edata: UInt64 = 0xffff_ffff_832a_6000
        let end: UInt64 = 0xffff_ffff_8348_c000
        func pa(_ kva: UInt64) -> UInt64 { kva - startKernelMap }

        var maps: [KernelMapping] = []
        // Direct map.
        let largest = KernelLeafPolicy.largest(upTo: .pud, contiguous: false)
        let overrides: [(Range<UInt64>, KernelProtection, KernelLeafPolicy)] = [
            (pa(text)..<pa(etext), .kernelRO, largest),
            (pa(rodata)..<pa(erodata), .kernelRO, largest),
        ]
        for r in ram {
            for (piece, prot, pol) in pieces(r.lowerBound, r.upperBound, base: (.kernel, largest), overrides: overrides) {
                let alias = prot == .kernel ? "direct map" : "direct map (kernel image alias)"
                maps.append(KernelMapping(alias, pageOffset + piece.lowerBound, size: UInt64(piece.count),
                                          pfn: piece.lowerBound >> Geometry.pageShift, prot, policy: pol, shadow: .blocks))
            }
        }
        // vmalloc area: 4K areas with a guard page after each, one 2M area.
        let vmallocAreas: [(String, UInt64, UInt64, KernelProtection, KernelLeafPolicy)] = [
            ("vmalloc", 0x0, 4, .kernel, .pte),
            ("ioremap", 0x5000, 1, .kernelNoCache, .pte),
            ("vmalloc", 0x7000, 2, .kernel, .pte),
            ("vmap stack", 0x10000, 4, .kernel, .pte),
            ("vmalloc huge", 0x20_0000, 512, .kernel, .pmd),
            ("vmalloc", 0x40_0000, 8, .kernel, .pte),
            ("ioremap", 0x40_9000, 1, .kernelUncachedStrong, .pte),
            ("vmap stack", 0x41_0000, 4, .kernel, .pte),
        ]
        for (name, off, pages, prot, pol) in vmallocAreas {
            let f = frames.take(pages, alignment: pol == .pmd ? 512 : 1)
            let pfn = prot.attributes.contains(.uncached) ? 0xfe00_0 + off >> Geometry.pageShift : f
            maps.append(KernelMapping(name, vmallocStart + off, size: pages << Geometry.pageShift, pfn: pfn, prot, policy: pol, shadow: .pages))
        }
        // vmemmap: 2M of struct pages per present 128M section.
        for run in presentSections(ram, physBase: 0) {
            let size = UInt64(run.count) * 2 * MiB
            maps.append(KernelMapping("vmemmap", vmemmapStart + run.lowerBound * 2 * MiB, size: size,
                                      pfn: frames.take(size >> Geometry.pageShift, alignment: 512), .kernel, policy: .pmd))
        }
        // cpu_entry_area: the read-only IDT, then per CPU the GDT, entry
        // stack, TSS (read-only on 64-bit) and exception stacks with guards.
        maps.append(KernelMapping("cpu_entry_area IDT", cpuEntryArea, size: 4 * KiB, pfn: frames.take(1), .kernelRO, policy: .pte))
        let perCPU = cpuEntryArea + 4 * KiB
        let ceaStride: UInt64 = 0x3b000
        for cpu in 0..<UInt64(cpus) {
            let b = perCPU + cpu * ceaStride
            maps.append(KernelMapping("cpu_entry_area GDT", b, size: 4 * KiB, pfn: frames.take(1), .kernelRO, policy: .pte))
            maps.append(KernelMapping("cpu_entry_area entry stack", b + 0x1000, size: 4 * KiB, pfn: frames.take(1), .kernel, policy: .pte))
            maps.append(KernelMapping("cpu_entry_area TSS", b + 0x2000, size: 12 * KiB, pfn: frames.take(3), .kernelRO, policy: .pte))
            for (k, _) in ["DF", "NMI", "DB", "MCE"].enumerated() {
                let stack = b + 0x5000 + UInt64(k) * 0x3000 + 0x1000   // guard page first
                maps.append(KernelMapping("cpu_entry_area exception stack", stack, size: 8 * KiB,
                                          pfn: frames.take(2), .kernel, policy: .pte))
            }
        }
        // EFI runtime services, allocated downwards from EFI_VA_START.
        if efiRuntime {
            maps.append(KernelMapping("EFI runtime code", efiVAStart - 6 * MiB, size: 64 * KiB, pfn: 0xbe80_0, .kernelROX, policy: .pte))
            maps.append(KernelMapping("EFI runtime data", efiVAStart - 6 * MiB + 64 * KiB, size: 128 * KiB, pfn: 0xbe81_0, .kernel, policy: .pte))
            maps.append(KernelMapping("EFI MMIO", efiVAStart - 2 * MiB, size: 4 * KiB, pfn: 0xffc0_0, .kernelNoCache, policy: .pte))
        }
        // High kernel mapping.
        let image = KernelLeafPolicy.largest(upTo: .pmd, contiguous: false)
        maps.append(KernelMapping("kernel text", text, size: etext - text, pfn: pa(text) >> Geometry.pageShift, .kernelROX, policy: image, shadow: .blocks))
        maps.append(KernelMapping("kernel rodata", rodata, size: erodata - rodata, pfn: pa(rodata) >> Geometry.pageShift, .kernelRO, policy: image, shadow: .blocks))
        maps.append(KernelMapping("kernel data", sdata, size: edata - sdata, pfn: pa(sdata) >> Geometry.pageShift, .kernel, policy: image, shadow: .blocks))
        maps.append(KernelMapping("kernel bss", edata, size: end - edata, pfn: pa(edata) >> Geometry.pageShift, .kernel, policy: image, shadow: .blocks))
        // Modules: text, rodata, data each in its own area with a guard page.
        let modules: [(UInt64, UInt64, UInt64, UInt64)] = [   // offset, text, rodata, data pages
            (0x0, 4, 2, 3), (0xc000, 9, 1, 2), (0x1b000, 2, 0, 1),
        ]
        for (off, t, r, d) in modules {
            var a = modulesVaddr + off
            maps.append(KernelMapping("module text", a, size: t << Geometry.pageShift, pfn: frames.take(t), .kernelROX, policy: .pte, shadow: .pages))
            a += (t + 1) << Geometry.pageShift
            if r > 0 {
                maps.append(KernelMapping("module rodata", a, size: r << Geometry.pageShift, pfn: frames.take(r), .kernelRO, policy: .pte, shadow: .pages))
                a += (r + 1) << Geometry.pageShift
            }
            maps.append(KernelMapping("module data", a, size: d << Geometry.pageShift, pfn: frames.take(d), .kernel, policy: .pte, shadow: .pages))
        }
        // Fixmap: firmware table (RO), local APIC and I/O APIC (uncached).
        maps.append(KernelMapping("fixmap I/O APIC", 0xffff_ffff_ff5f_b000, size: 4 * KiB, pfn: 0xfec0_0, .kernelNoCache, policy: .pte))
        maps.append(KernelMapping("fixmap local APIC", 0xffff_ffff_ff5f_c000, size: 4 * KiB, pfn: 0xfee0_0, .kernelNoCache, policy: .pte))
        maps.append(KernelMapping("fixmap firmware table", 0xffff_ffff_ff5f_d000, size: 4 * KiB, pfn: 0x9f, .kernelRO, policy: .pte))

        var markers: [KernelAddressMarker] = [
            .init("User Space", 0),
            .init("Kernel Space", 1 << 63),
            .init("LDT remap", ldtBase),
            .init("Low Kernel Mapping", pageOffset),
            .init("vmalloc() Area", vmallocStart),
            .init("Vmemmap", vmemmapStart),
        ]
        var kasanLayout: KasanShadowLayout? = nil
        if kasan {
            markers.append(.init("KASAN shadow", kasanStart))
            markers.append(.init("KASAN shadow end", kasanEnd))
            func sh(_ a: UInt64) -> UInt64 { ((a >> 3) &+ kasanOffset + Geometry.pageOffsetMask) & ~Geometry.pageOffsetMask }
            kasanLayout = KasanShadowLayout(start: kasanStart, end: kasanEnd, offset: kasanOffset, unpopulated: [
                sh(vmallocStart)..<sh(vmallocEnd &+ 1),
                sh(startKernelMap)..<sh(text),
                sh(end)..<sh(modulesEnd),
            ])
        }
        markers += [
            .init("CPU entry Area", cpuEntryArea),
            .init("ESPfix Area", espfixBase, maxLines: 16),
            .init("EFI Runtime Services", efiVAEnd),
            .init("High Kernel Mapping", startKernelMap),
            .init("Modules", modulesVaddr),
            .init("End Modules", modulesEnd),
            .init("Fixmap Area", fixaddrStart),
        ]
        let espfix = EspfixLayout(base: espfixBase, stackPFN: frames.take(1), pteStride: 16, pudClones: 4)

        let symbols: [String: UInt64] = [
            "PAGE_OFFSET": pageOffset, "LDT_BASE_ADDR": ldtBase,
            "VMALLOC_START": vmallocStart, "VMALLOC_END": vmallocEnd, "VMEMMAP_START": vmemmapStart,
            "KASAN_SHADOW_OFFSET": kasanOffset, "KASAN_SHADOW_START": kasanStart, "KASAN_SHADOW_END": kasanEnd,
            "CPU_ENTRY_AREA_BASE": cpuEntryArea, "ESPFIX_BASE_ADDR": espfixBase,
            "EFI_VA_START": efiVAStart, "EFI_VA_END": efiVAEnd,
            "__START_KERNEL_map": startKernelMap, "_text": text, "_etext": etext,
            "__start_rodata": rodata, "__end_rodata": erodata, "_sdata": sdata, "_edata": edata,
            "__bss_start": edata, "_end": end,
            "MODULES_VADDR": modulesVaddr, "MODULES_END": modulesEnd,
            "FIXADDR_START": fixaddrStart, "FIXADDR_TOP": fixaddrTop,
        ]
        return KernelLayout(name: "x86_64 \(levels)-level", geometry: geometry, markers: markers, dumpStart: 0,
                            mappings: maps, kasan: kasanLayout, espfix: espfix, ram: ram,
                            framePool: frames.remaining, symbols: symbols)
    }

    // MARK: arm64

    /// The arm64 layout without KASAN (see `arm64(kasan:)`).
    public static var arm64: KernelLayout { arm64(kasan: false) }

    /// The arm64 `init_mm` (4K granule, 48-bit VA, 4 levels) as a 6.x
    /// kernel without KASLR lays it out (arch/arm64/include/asm/memory.h),
    /// RAM at 1 GiB as on QEMU's virt machine:
    /// - the linear map at 0xffff000000000000 in block mappings (1G where a
    ///   whole aligned GiB is RAM, else 2M with contiguous 32M runs where
    ///   aligned, 4K with contiguous 64K runs at the edge), the kernel
    ///   image alias without contiguous hints and its text/rodata
    ///   read-only (as with `rodata=on`, or BBML2 block splitting);
    /// - modules (0xffff800000000000, 2G): 4K text RO executable, rodata RO,
    ///   data RW;
    /// - the kernel image at 0xffff800080000000 (start of vmalloc): text RO
    ///   executable in 2M blocks then contiguous 64K runs and a 4K tail,
    ///   rodata RO without contiguous hints, init sections freed, data and
    ///   bss RW with contiguous PTEs where aligned;
    /// - vmalloc areas after the image, device ioremap included;
    /// - vmemmap (0xfffffdffc0000000) in 2M blocks; PCI I/O
    ///   (0xffffffffc0800000) as Device-nGnRE; fixmap (FDT read-only,
    ///   earlycon UART);
    /// - with `kasan`, the generic KASAN shadow at 0xffff600000000000 (the
    ///   linear map then ends there), zero shadow shared as on x86.
    public static func arm64(kasan: Bool) -> KernelLayout {
        let geometry = Geometry.arm64
        let pageOffset: UInt64 = 0xffff_0000_0000_0000
        let kasanOffset: UInt64 = 0xdfff_8000_0000_0000
        let kasanStart = (pageOffset >> 3) &+ kasanOffset          // 0xffff600000000000
        let kasanEnd: UInt64 = 0xffff_8000_0000_0000
        let pageEnd = kasan ? kasanStart : 0xffff_8000_0000_0000
        let modulesVaddr: UInt64 = 0xffff_8000_0000_0000
        let modulesEnd = modulesVaddr + 2 * GiB
        let kimage = modulesEnd
        let vmemmapEnd: UInt64 = 0xffff_ffff_c000_0000           // -1G
        let vmemmapSize = ((UInt64(1) << 47) >> Geometry.pageShift) * 64          // struct page per linear page
        let vmemmapStart = vmemmapEnd - vmemmapSize
        let vmallocStart = modulesEnd
        let vmallocEnd = vmemmapStart - 256 * MiB
        let pciIOStart = vmemmapEnd + 8 * MiB
        let pciIOEnd = pciIOStart + 16 * MiB
        let fixaddrTop: UInt64 = 0xffff_ffff_ff80_0000           // -8M
        let fixaddrTotStart: UInt64 = fixaddrTop - 979 * 4 * KiB  // __end_of_fixed_addresses pages

        let memstart: UInt64 = 0x4000_0000
        let ram: [Range<UInt64>] = [0x4000_0000..<0xbe00_0000, 0xc000_0000..<0x1_3ffd_b000]
        var frames = LayoutFrames(0x10_0000..<0x13_c000)          // [4G, 5G - 64M) of RAM

        // Kernel image, loaded at 0x40200000.
        let loadPA: UInt64 = 0x4020_0000
        let text = kimage
        let etext = kimage + 0x165_7000
        let rodata = kimage + 0x166_0000
        let initBegin = kimage + 0x1f1_0000
        let sdata = kimage + 0x208_0000
        let edata = kimage + 0x22a_0000
        let end = kimage + 0x233_7000
        func pa(_ kva: UInt64) -> UInt64 { kva - kimage + loadPA }
        func lm(_ p: UInt64) -> UInt64 { pageOffset + (p - memstart) }

        var maps: [KernelMapping] = []
        let linear = KernelLeafPolicy.largest(upTo: .pud, contiguous: true)
        let noCont = KernelLeafPolicy.largest(upTo: .pud, contiguous: false)
        let overrides: [(Range<UInt64>, KernelProtection, KernelLeafPolicy)] = [
            (pa(text)..<pa(initBegin), .kernelRO, noCont),
            (pa(initBegin)..<pa(end), .kernel, noCont),
        ]
        for r in ram {
            for (piece, prot, pol) in pieces(r.lowerBound, r.upperBound, base: (.kernel, linear), overrides: overrides) {
                let name = pol == linear ? "linear map" : "linear map (kernel image alias)"
                maps.append(KernelMapping(name, lm(piece.lowerBound), size: UInt64(piece.count),
                                          pfn: piece.lowerBound >> Geometry.pageShift, prot, policy: pol, shadow: .blocks))
            }
        }
        // Modules.
        for (off, t, r, d) in [(UInt64(0x1_0000), UInt64(4), UInt64(2), UInt64(3)), (0x2_0000, 9, 1, 2)] {
            var a = modulesVaddr + off
            maps.append(KernelMapping("module text", a, size: t << Geometry.pageShift, pfn: frames.take(t), .kernelROX, policy: .pte, shadow: .pages))
            a += (t + 1) << Geometry.pageShift
            maps.append(KernelMapping("module rodata", a, size: r << Geometry.pageShift, pfn: frames.take(r), .kernelRO, policy: .pte, shadow: .pages))
            a += (r + 1) << Geometry.pageShift
            maps.append(KernelMapping("module data", a, size: d << Geometry.pageShift, pfn: frames.take(d), .kernel, policy: .pte, shadow: .pages))
        }
        // Kernel image.
        let contImage = KernelLeafPolicy.largest(upTo: .pmd, contiguous: true)
        let plainImage = KernelLeafPolicy.largest(upTo: .pmd, contiguous: false)
        maps.append(KernelMapping("kernel text", text, size: etext - text, pfn: pa(text) >> Geometry.pageShift, .kernelROX, policy: contImage, shadow: .blocks))
        maps.append(KernelMapping("kernel rodata", rodata, size: initBegin - rodata, pfn: pa(rodata) >> Geometry.pageShift, .kernelRO, policy: plainImage, shadow: .blocks))
        maps.append(KernelMapping("kernel data", sdata, size: edata - sdata, pfn: pa(sdata) >> Geometry.pageShift, .kernel, policy: contImage, shadow: .blocks))
        maps.append(KernelMapping("kernel bss", edata, size: end - edata, pfn: pa(edata) >> Geometry.pageShift, .kernel, policy: contImage, shadow: .blocks))
        // vmalloc areas after the image.
        let vbase = kimage + 0x240_0000
        maps.append(KernelMapping("vmalloc", vbase, size: 16 * KiB, pfn: frames.take(4), .kernel, policy: .pte, shadow: .pages))
        maps.append(KernelMapping("vmap stack", vbase + 0x8000, size: 16 * KiB, pfn: frames.take(4), .kernel, policy: .pte, shadow: .pages))
        maps.append(KernelMapping("ioremap", vbase + 0x1_0000, size: 4 * KiB, pfn: 0x0800_0, .kernelNoCache, policy: .pte, shadow: .pages))
        maps.append(KernelMapping("vmalloc", vbase + 0x2_0000, size: 8 * KiB, pfn: frames.take(2), .kernel, policy: .pte, shadow: .pages))
        // vmemmap: 2M of struct pages per present 128M section.
        for run in presentSections(ram, physBase: memstart) {
            let size = UInt64(run.count) * 2 * MiB
            maps.append(KernelMapping("vmemmap", vmemmapStart + run.lowerBound * 2 * MiB, size: size,
                                      pfn: frames.take(size >> Geometry.pageShift, alignment: 512), .kernel, policy: .pmd))
        }
        // PCI I/O space (QEMU virt's window at 0x3eff0000).
        maps.append(KernelMapping("PCI I/O", pciIOStart, size: 64 * KiB, pfn: 0x3eff_0, .kernelNoCache, policy: .pte))
        // Fixmap: the FDT read-only, the earlycon UART.
        maps.append(KernelMapping("fixmap earlycon", fixaddrTop - 515 * 4 * KiB, size: 4 * KiB, pfn: 0x0900_0, .kernelNoCache, policy: .pte))
        maps.append(KernelMapping("fixmap FDT", fixaddrTop - 514 * 4 * KiB, size: 64 * KiB, pfn: 0x4800_0, .kernelRO, policy: .pte))

        var markers: [KernelAddressMarker] = [
            .init("Linear Mapping start", pageOffset),
            .init("Linear Mapping end", pageEnd),
        ]
        var kasanLayout: KasanShadowLayout? = nil
        if kasan {
            markers.append(.init("Kasan shadow start", kasanStart))
            markers.append(.init("Kasan shadow end", kasanEnd))
            func sh(_ a: UInt64) -> UInt64 { ((a >> 3) &+ kasanOffset + Geometry.pageOffsetMask) & ~Geometry.pageOffsetMask }
            kasanLayout = KasanShadowLayout(start: kasanStart, end: kasanEnd, offset: kasanOffset, unpopulated: [
                sh(modulesVaddr)..<sh(vmallocEnd),
            ])
            // The linear map ends where the shadow starts.
            maps.removeAll { $0.virtualAddress >= pageEnd && $0.virtualAddress < kasanEnd }
        }
        markers += [
            .init("Modules start", modulesVaddr),
            .init("Modules end", modulesEnd),
            .init("vmalloc() area", vmallocStart),
            .init("vmalloc() end", vmallocEnd),
            .init("vmemmap start", vmemmapStart),
            .init("vmemmap end", vmemmapEnd),
            .init("PCI I/O start", pciIOStart),
            .init("PCI I/O end", pciIOEnd),
            .init("Fixmap start", fixaddrTotStart),
            .init("Fixmap end", fixaddrTop),
        ]
        let symbols: [String: UInt64] = [
            "PAGE_OFFSET": pageOffset, "PAGE_END": pageEnd, "PHYS_OFFSET": memstart,
            "KASAN_SHADOW_OFFSET": kasanOffset, "KASAN_SHADOW_START": kasanStart, "KASAN_SHADOW_END": kasanEnd,
            "MODULES_VADDR": modulesVaddr, "MODULES_END": modulesEnd, "KIMAGE_VADDR": kimage,
            "VMALLOC_START": vmallocStart, "VMALLOC_END": vmallocEnd,
            "VMEMMAP_START": vmemmapStart, "VMEMMAP_END": vmemmapEnd,
            "PCI_IO_START": pciIOStart, "PCI_IO_END": pciIOEnd,
            "FIXADDR_TOT_START": fixaddrTotStart, "FIXADDR_TOP": fixaddrTop,
            "_text": text, "_etext": etext, "__start_rodata": rodata, "__inittext_begin": initBegin,
            "_data": sdata, "_edata": edata, "__bss_start": edata, "_end": end,
        ]
        return KernelLayout(name: "arm64 4K 48-bit", geometry: geometry, markers: markers, dumpStart: pageOffset,
                            mappings: maps, kasan: kasanLayout, espfix: nil, ram: ram,
                            framePool: frames.remaining, symbols: symbols)
    }
}
