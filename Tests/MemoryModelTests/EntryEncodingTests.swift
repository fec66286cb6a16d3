import Testing
import MemoryModel

/// Every subset of the three swap-PTE bits.
let allSwapBits: [SwapPTEBits] = (0..<8).map { SwapPTEBits(rawValue: UInt8($0)) }

/// What decoding gives back for `bits` on `layout`: arm64 has no soft-dirty
/// (no CONFIG_HAVE_ARCH_SOFT_DIRTY), so `pte_swp_mksoft_dirty()` is a no-op.
func expectedBits(_ bits: SwapPTEBits, _ l: EntryLayout) -> SwapPTEBits {
    l.supportsSoftDirty ? bits : bits.subtracting(.softDirty)
}

/// Boundary values below 2^bits: 1, 2^k - 1 and 2^k for every k, and the max.
func boundaries(bits: Int, includeZero: Bool) -> [UInt64] {
    var v: Set<UInt64> = includeZero ? [0, 1] : [1]
    for k in 1..<bits {
        v.insert((1 << UInt64(k)) - 1)
        v.insert(1 << UInt64(k))
    }
    v.insert((1 << UInt64(bits)) - 1)
    return v.sorted()
}

@Suite struct SoftLeafEncodingTests {
    func roundTrip(_ leaf: SoftLeaf, _ l: EntryLayout, _ bits: SwapPTEBits) throws {
        let raw = try SoftLeafEntry(leaf, bits: bits).encode(l)
        let pte = PTE(rawValue: raw, architecture: l.architecture)
        #expect(pte.isSwapFormat, "\(leaf) bits \(bits.rawValue) on \(l.architecture) encodes to a non-swap word \(raw)")
        let back = SoftLeafEntry(decoding: raw, layout: l)
        #expect(back.leaf == leaf && back.bits == expectedBits(bits, l),
                "\(leaf) bits \(bits.rawValue) on \(l.architecture): decoded \(back)")
    }

    @Test(arguments: Architecture.allCases)
    func swapEntriesRoundTrip(arch: Architecture) throws {
        let l = arch.layout
        let offsets = boundaries(bits: l.swapOffsetBits, includeZero: false)
        for type in 0..<SoftLeaf.maxSwapFiles {
            for offset in offsets {
                for bits in allSwapBits {
                    // x86: type 0, all-ones offset, no bits is the zero word (pte_none): refused.
                    if l.swapOffsetInverted && type == 0 && offset == offsets.last! && bits.isEmpty {
                        #expect(throws: ModelError.self) { try SoftLeafEntry(.swap(SwapEntry(type: 0, offset: offset))).encode(l) }
                        continue
                    }
                    try roundTrip(.swap(SwapEntry(type: type, offset: offset)), l, bits)
                }
            }
        }
    }

    @Test(arguments: Architecture.allCases)
    func pfnEntriesRoundTrip(arch: Architecture) throws {
        let l = arch.layout
        let maxPFN = Geometry(uncheckedArch: arch).maxPFN
        // The migration entry's PFN field is exactly the architecture's frame space.
        #expect(maxPFN == (1 << UInt64(l.swapPFNBits)) - 1)
        let pfns = boundaries(bits: l.swapPFNBits, includeZero: true)
        #expect(pfns.last == maxPFN)
        for pfn in pfns {
            for bits in allSwapBits {
                for kind in MigrationKind.allCases {
                    for young in [false, true] {
                        for dirty in [false, true] {
                            try roundTrip(.migration(kind, pfn: pfn, young: young, dirty: dirty), l, bits)
                        }
                    }
                }
                try roundTrip(.devicePrivate(writable: false, pfn: pfn), l, bits)
                try roundTrip(.devicePrivate(writable: true, pfn: pfn), l, bits)
                try roundTrip(.deviceExclusive(pfn: pfn), l, bits)
                try roundTrip(.hwpoison(pfn: pfn), l, bits)
            }
        }
    }

    @Test(arguments: Architecture.allCases)
    func markersRoundTrip(arch: Architecture) throws {
        let l = arch.layout
        for m in 1..<8 {
            for bits in allSwapBits { try roundTrip(.marker(PTEMarker(rawValue: UInt64(m))), l, bits) }
        }
    }

    @Test(arguments: Architecture.allCases)
    func softDirtyIsDroppedOnlyOnArm64(arch: Architecture) throws {
        let l = arch.layout
        let raw = try SoftLeafEntry(.swap(SwapEntry(type: 3, offset: 0x1234)), bits: [.softDirty]).encode(l)
        let back = SoftLeafEntry(decoding: raw, layout: l)
        if arch == .arm64 {
            #expect(!l.supportsSoftDirty && back.bits.isEmpty)
        } else {
            #expect(l.supportsSoftDirty && back.bits == [.softDirty])
        }
    }

    @Test(arguments: Architecture.allCases)
    func outOfRangeInputsAreTypedErrors(arch: Architecture) throws {
        let l = arch.layout
        func rejects(_ leaf: SoftLeaf, _ name: String) {
            do {
                _ = try SoftLeafEntry(leaf).encode(l)
                Issue.record("\(leaf) was accepted on \(arch)")
            } catch {
                if case .invalidArgument(let n, _) = error { #expect(n == name, "\(leaf): \(error)") }
                else { Issue.record("\(leaf): unexpected \(error)") }
            }
        }
        rejects(.swap(SwapEntry(type: SoftLeaf.maxSwapFiles, offset: 1)), "swap type")
        rejects(.swap(SwapEntry(type: -1, offset: 1)), "swap type")
        rejects(.swap(SwapEntry(type: 0, offset: 1 << UInt64(l.swapOffsetBits))), "swap offset")
        let tooBig: UInt64 = 1 << UInt64(l.swapPFNBits)
        rejects(.migration(.write, pfn: tooBig, young: false, dirty: false), "pfn")
        rejects(.devicePrivate(writable: true, pfn: tooBig), "pfn")
        rejects(.deviceExclusive(pfn: tooBig), "pfn")
        rejects(.hwpoison(pfn: tooBig), "pfn")
        rejects(.marker([]), "marker")
        rejects(.marker(PTEMarker(rawValue: 1 << 3)), "marker")
    }

    /// Hand-derived swap words. x86-64 (`pgtable_64.h`): type in bits 59–63,
    /// offset inverted in bits 9–58; `_PAGE_SWP_EXCLUSIVE` = `_PAGE_PWT`
    /// (bit 3), `_PAGE_SWP_SOFT_DIRTY` = `_PAGE_RW` (bit 1),
    /// `_PAGE_SWP_UFFD_WP` = `_PAGE_USER` (bit 2). arm64 (`pgtable.h`):
    /// `__SWP_TYPE_SHIFT` 6 (5 bits), `__SWP_OFFSET_SHIFT` 12, `PTE_SWP_EXCLUSIVE`
    /// bit 2, `PTE_SWP_UFFD_WP` bit 3. Migration/device/hwpoison/marker types
    /// are the top of the 5-bit space (`swap.h`: MAX_SWAPFILES = 24,
    /// SWP_HWPOISON 24, SWP_MIGRATION_READ/READ_EXCLUSIVE/WRITE 25–27,
    /// SWP_DEVICE_WRITE/READ/EXCLUSIVE 28–30, SWP_PTE_MARKER 31).
    @Test func handDerivedSwapWords() throws {
        let x = EntryLayout.x86_64, a = EntryLayout.arm64
        let offsetMask: UInt64 = (1 << 50) - 1
        let xw = try SoftLeafEntry(.swap(SwapEntry(type: 2, offset: 5)), bits: [.exclusive]).encode(x)
        #expect(xw == (2 << 59) | ((~UInt64(5) & offsetMask) << 9) | (1 << 3))
        let aw = try SoftLeafEntry(.swap(SwapEntry(type: 2, offset: 5)), bits: [.exclusive, .uffdWP]).encode(a)
        #expect(aw == (2 << 6) | (5 << 12) | (1 << 2) | (1 << 3))
        let am = try SoftLeafEntry(.migration(.write, pfn: 0x42, young: true, dirty: false)).encode(a)
        #expect(am == (27 << 6) | ((0x42 | 1 << 36) << 12))   // SWP_MIG_YOUNG_BIT just above the PFN bits
        let xm = try SoftLeafEntry(.marker(.guardRegion)).encode(x)
        #expect(xm >> 59 == 31)
        #expect(try SoftLeafEntry(.hwpoison(pfn: 7)).encode(a) == (24 << 6) | (7 << 12))
        #expect(try SoftLeafEntry(.swap(SwapEntry(type: 0, offset: 1)), bits: [.softDirty, .uffdWP]).encode(x) & 0xF == 0b0110)
    }
}

extension Geometry {
    init(uncheckedArch a: Architecture) { self = a == .x86_64 ? .x86_64 : .arm64 }
}

@Suite struct PresentEntryTests {
    static let core: [LeafAttributes] = [.writable, .dirty, .young, .special, .softDirty, .uffdWP, .user, .executable, .protNone]

    @Test(arguments: Architecture.allCases, [PageTableLevel.pte, .pmd, .pud])
    func leafAttributesRoundTrip(arch: Architecture, level: PageTableLevel) {
        let l = arch.layout
        let maxPFN = Geometry(uncheckedArch: arch).maxPFN
        var extras: [LeafAttributes] = [[], [.devmap]]
        if arch == .arm64 { extras.append(.contiguous) } else { extras += [[.global], [.uncached]] }
        for mask in 0..<(1 << Self.core.count) {
            var a: LeafAttributes = []
            for (i, f) in Self.core.enumerated() where mask & (1 << i) != 0 { a.insert(f) }
            for extra in extras {
                let attrs = a.union(extra)
                if attrs.contains(.global) && attrs.contains(.protNone) { continue }   // x86 PROT_NONE reuses the global bit
                for pfn in [UInt64(0), 1, 0x12345, maxPFN] {
                    let raw = l.leaf(pfn: pfn, level: level, attrs)
                    var expected = attrs
                    if !l.supportsSoftDirty { expected.remove(.softDirty) }
                    #expect(l.attributes(of: raw, level: level) == expected, "\(arch) \(level) \(attrs.rawValue)")
                    switch level {
                    case .pte: checkPredicates(PTE(rawValue: raw, architecture: arch), attrs, pfn)
                    case .pmd: checkPredicates(PMD(rawValue: raw, architecture: arch), attrs, pfn)
                    default: checkPredicates(PUD(rawValue: raw, architecture: arch), attrs, pfn)
                    }
                }
            }
        }
    }

    func checkPredicates<E: PageTableEntry>(_ e: E, _ a: LeafAttributes, _ pfn: UInt64) {
        #expect(e.isPresent && e.isLeaf && !e.isTable && !e.isNone && !e.isSwapFormat)
        #expect(e.pfn == pfn)
        #expect(e.isWritable == a.contains(.writable))
        #expect(e.isDirty == a.contains(.dirty))
        #expect(e.isYoung == a.contains(.young))
        #expect(e.isSpecial == a.contains(.special))
        #expect(e.isUffdWP == a.contains(.uffdWP))
        #expect(e.isSoftDirty == (a.contains(.softDirty) && e.layout.supportsSoftDirty))
        #expect(e.isValid == !a.contains(.protNone))
        #expect(e.isUser == a.contains(.user))
        #expect(e.isExecutable == a.contains(.executable))
    }

    /// x86-64 `pgtable_types.h`: _PAGE_BIT_PRESENT 0, RW 1, USER 2, PWT 3,
    /// PCD 4, ACCESSED 5, DIRTY 6, PSE 7, GLOBAL 8 (also _PAGE_PROTNONE),
    /// SOFTW1 9 = SPECIAL, SOFTW2 10 = UFFD_WP, SOFTW3 11 = SOFT_DIRTY,
    /// SOFTW5 57 = SAVED_DIRTY, NX 63; PFN in bits 12–51.
    @Test func x86HandDerivedPredicates() {
        let a: Architecture = .x86_64
        let pte = PTE(rawValue: 0x8000_0000_1234_5067, architecture: a)   // NX|pfn|D|A|U|RW|P
        #expect(pte.isPresent && pte.isWritable && pte.isDirty && pte.isYoung && pte.isUser)
        #expect(!pte.isSpecial && !pte.isExecutable && !pte.isSoftDirty && !pte.isUffdWP && pte.pfn == 0x12345)
        let special = PTE(rawValue: 0x0000_0000_0000_1A25, architecture: a)   // SOFTW3|SOFTW1|A|U|P, pfn 1
        #expect(special.isSpecial && special.isSoftDirty && !special.isWritable && !special.isDirty && special.pfn == 1)
        #expect(PTE(rawValue: 1 << 10 | 1, architecture: a).isUffdWP)
        #expect(PTE(rawValue: 1 << 57 | 1, architecture: a).isDirty)        // saved dirty
        let protNone = PTE(rawValue: 0x0000_0000_0004_2100, architecture: a)   // GLOBAL (PROTNONE), no PRESENT
        #expect(protNone.isPresent && !protNone.isValid && !protNone.isSwapFormat)
        let hugePMD = PMD(rawValue: 0x8000_0000_4020_00E7, architecture: a)   // PSE|D|A|U|RW|P
        #expect(hugePMD.isLeaf && !hugePMD.isTable && hugePMD.pfn == 0x40200)
        let tablePMD = PMD(rawValue: 0x0000_0008_0000_0067, architecture: a)
        #expect(tablePMD.isTable && !tablePMD.isLeaf)
        #expect(PGD(rawValue: 0x0000_0008_0000_0067, architecture: a).isTable)
        #expect(P4D(rawValue: 0x0000_0008_0000_00E7, architecture: a).isTable)  // p4d_leaf is never true
        #expect(PTE(rawValue: 0, architecture: a).isNone && !PTE(rawValue: 0, architecture: a).isPresent)
        #expect(PTE(rawValue: 1 << 9 | 1 << 59, architecture: a).isSwapFormat)
    }

    /// arm64 `pgtable-hwdef.h`: PTE_VALID 0, PTE_TABLE_BIT/PTE_TYPE_PAGE 1,
    /// PTE_USER (AP[1]) 6, PTE_RDONLY (AP[2]) 7, SH 8–9, PTE_AF 10, PTE_NG 11,
    /// PTE_DBM 51, PTE_CONT 52, PTE_PXN 53, PTE_UXN 54; `pgtable-prot.h`:
    /// PTE_WRITE = PTE_DBM, PTE_DIRTY 55, PTE_SPECIAL 56, PTE_PRESENT_INVALID
    /// = PTE_NG (valid clear); `pte_hw_dirty()` = DBM && !RDONLY.
    @Test func arm64HandDerivedPredicates() {
        let a: Architecture = .arm64
        let clean = PTE(rawValue: 0x0068_0000_1234_57C3, architecture: a)  // UXN|PXN|DBM|pfn|AF|SH|RDONLY|USER|PAGE|VALID
        #expect(clean.isPresent && clean.isWritable && !clean.isDirty && clean.isYoung && clean.isUser && clean.pfn == 0x12345)
        let hwDirty = PTE(rawValue: 0x0068_0000_1234_5743, architecture: a)  // RDONLY cleared
        #expect(hwDirty.isWritable && hwDirty.isDirty)
        let swDirtyRO = PTE(rawValue: 0x00E0_0000_1234_57C3, architecture: a) // PTE_DIRTY, no DBM
        #expect(!swDirtyRO.isWritable && swDirtyRO.isDirty)
        #expect(PTE(rawValue: 1 << 56 | 0x403, architecture: a).isSpecial)
        #expect(PTE(rawValue: 1 << 52 | 0x403, architecture: a).isContiguous)
        #expect(!PTE(rawValue: 1 << 11 | 1 << 1, architecture: a).isValid && PTE(rawValue: 1 << 11 | 1 << 1, architecture: a).isPresent)
        #expect(!PTE(rawValue: 0x403, architecture: a).isSoftDirty)   // no soft-dirty on arm64
        let block = PMD(rawValue: 0x0060_0000_4020_0701, architecture: a)     // bit 1 clear: block
        #expect(block.isLeaf && !block.isTable && block.pfn == 0x40200)
        let table = PMD(rawValue: 0x0000_0008_0000_0003, architecture: a)
        #expect(table.isTable && !table.isLeaf)
        #expect(PUD(rawValue: 0x0060_0000_4000_0701, architecture: a).isLeaf)
    }

    @Test(arguments: Architecture.allCases)
    func tableEntriesAreTables(arch: Architecture) {
        let l = arch.layout
        for user in [false, true] {
            let raw = l.table(pfn: 0x8_0000, user: user)
            #expect(PMD(rawValue: raw, architecture: arch).isTable)
            #expect(PUD(rawValue: raw, architecture: arch).isTable)
            #expect(PGD(rawValue: raw, architecture: arch).isTable)
            #expect(PMD(rawValue: raw, architecture: arch).pfn == 0x8_0000)
        }
    }
}

@Suite struct GeometryTests {
    @Test func foldingAndRealDepth() throws {
        let g5 = Geometry.x86_64FiveLevel, g4 = Geometry.x86_64
        let g3 = try Geometry(.arm64, levels: 3), g2 = try Geometry(.x86_64, levels: 2)
        #expect(PageTableLevel.allCases.allSatisfy { !g5.isFolded($0) })
        #expect(g4.isFolded(.p4d) && !g4.isFolded(.pud) && !g4.isFolded(.pmd))
        #expect(g3.isFolded(.p4d) && g3.isFolded(.pud) && !g3.isFolded(.pmd))
        #expect(g2.isFolded(.p4d) && g2.isFolded(.pud) && g2.isFolded(.pmd))
        // real_depth(): a hole at a folded level is reported at the real level above.
        #expect((0...4).map(g5.realDepth) == [0, 1, 2, 3, 4])
        #expect((0...4).map(g4.realDepth) == [0, 0, 2, 3, 4])
        #expect((0...4).map(g3.realDepth) == [0, 0, 0, 3, 4])
        #expect((0...4).map(g2.realDepth) == [0, 0, 0, 0, 4])
        #expect(g5.realLevels == [.pgd, .p4d, .pud, .pmd, .pte])
        #expect(g4.realLevels == [.pgd, .pud, .pmd, .pte])
        #expect(g3.realLevels == [.pgd, .pmd, .pte])
        #expect(g2.realLevels == [.pgd, .pte])
        #expect(g4.tableEntryLevels == [.p4d, .pud, .pmd, .pte])   // the root holds the folded p4d entries
        #expect(g2.tableEntryLevels == [.pmd, .pte])
        #expect(g4.entriesPerTable(.p4d) == 1 && g4.entriesPerTable(.pud) == 512)
        #expect(g4.hasTrivialEntries(.pgd) && !g5.hasTrivialEntries(.pgd))
        #expect(throws: ModelError.self) { try Geometry(.arm64, levels: 5) }
        #expect(throws: ModelError.self) { try Geometry(.x86_64, levels: 1) }
    }

    @Test func shiftsIndicesAndEnds() throws {
        let g5 = Geometry.x86_64FiveLevel, g4 = Geometry.x86_64, g2 = try Geometry(.arm64, levels: 2)
        #expect(g5.shift(.pgd) == 48 && g5.shift(.p4d) == 39 && g4.shift(.pgd) == 39 && g4.shift(.p4d) == 39)
        #expect(g2.shift(.pgd) == 21 && g2.shift(.pmd) == 21 && g2.shift(.pud) == 21)
        let a: UInt64 = 0x7F12_3456_7000
        #expect(g4.index(a, at: .pte) == Int((a >> 12) & 511))
        #expect(g4.index(a, at: .pmd) == Int((a >> 21) & 511))
        #expect(g4.index(a, at: .pud) == Int((a >> 30) & 511))
        #expect(g4.index(a, at: .p4d) == 0)                    // folded
        #expect(g4.index(a, at: .pgd) == Int((a >> 39) & 511))
        #expect(g4.entryEnd(0x20_1000, at: .pmd, limit: 0x100_0000) == 0x40_0000)
        #expect(g4.entryEnd(0x20_1000, at: .pmd, limit: 0x30_0000) == 0x30_0000)
        // pmd_addr_end() compares end-1, so an end of 0 (wrapped) means "no limit".
        #expect(g4.entryEnd(0xFFFF_FFFF_FFE0_1000, at: .pmd, limit: 0) == 0)
    }

    @Test func userLimitsAndHugetlbSizes() throws {
        // x86 TASK_SIZE_MAX is one page below the canonical boundary.
        #expect(Geometry.x86_64.userAddressLimit == (1 << 47) - 4096)
        #expect(Geometry.x86_64FiveLevel.userAddressLimit == (1 << 56) - 4096)
        #expect(Geometry.arm64.userAddressLimit == 1 << 48)
        #expect(try Geometry(.arm64, levels: 3).userAddressLimit == 1 << 39)
        #expect(try Geometry(.arm64, levels: 2).userAddressLimit == 1 << 30)
        #expect(Geometry.x86_64.kernelAddressStart == 0xFFFF_8000_0000_0000)
        #expect(Geometry.x86_64.isCanonical(0x7FFF_FFFF_F000) && !Geometry.x86_64.isCanonical(0x8000_0000_0000))
        #expect(Geometry.x86_64.hugetlbSizes == [2 << 20, 1 << 30])
        #expect(Geometry.arm64.hugetlbSizes == [64 << 10, 2 << 20, 32 << 20, 1 << 30])
        #expect(try Geometry(.arm64, levels: 3).hugetlbSizes == [64 << 10, 2 << 20, 32 << 20])
        #expect(Geometry.x86_64.maxPFN == (1 << 40) - 1 && Geometry.arm64.maxPFN == (1 << 36) - 1)
    }
}
