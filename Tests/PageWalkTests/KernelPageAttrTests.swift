import Testing
import MemoryModel
@testable import PageWalk

/// The kernel-table writers on `init_mm` (riscv and LoongArch
/// `pageattr_ops`, OpenRISC's `set_nocache`/`clear_nocache` walk ops) on
/// both walkers, on the model's x86-64 and arm64 kernel tables: the words
/// left, the counts and the flushes agree, and the bits are the ones asked.
@Suite struct KernelPageAttrTests {
    static let base: UInt64 = 0xffff_8880_0000_0000

    /// A 1G PUD leaf at `base`, a 2M PMD leaf after it, then four PTEs
    /// (pfn 0x1000…), all writable, not executable.
    func kernelSpace(_ geometry: Geometry = .x86_64) throws -> AddressSpace {
        let memory = try PhysicalMemory(budgetBytes: 64 << 20)
        let mm = try AddressSpace(geometry: geometry, memory: memory,
                                  options: .init(softDirty: false, pid: 0, name: "swapper"), kernel: true)
        let b = try KernelLayoutBuilder(mm)
        try b.map(Self.base, size: gb1, pfn: 0x40000, level: .pud, .kernel)
        try b.map(Self.base + gb1, size: mb2, pfn: 0x200, level: .pmd, .kernel)
        try b.map(Self.base + gb1 + mb2, size: 4 * page, pfn: 0x1000, level: .pte, .kernel)
        return mm
    }

    /// Every present word of the kernel tables, by address and level.
    func words(_ mm: AddressSpace) throws -> [String] {
        try mm.withMmapReadLock { (t) throws(PageWalkError) -> [String] in
            try mm.walk(Self.base..<Self.base + 2 * gb1, lock: t, options: RangeWalkOptions(batching: false)).compactMap { e in
                guard case .pfn = e.content else { return nil }
                return "\(String(e.start, radix: 16)) \(e.level) \(String(e.raw, radix: 16))"
            }
        }
    }

    func raw(_ mm: AddressSpace, _ address: UInt64) -> UInt64 {
        guard case .present(_, let raw, _) = mm.translate(address) else { return 0 }
        return raw
    }

    /// Runs `op` on each walker, each on its own kernel space; records an
    /// issue when the results or the words left differ.
    func twin(_ geometry: Geometry = .x86_64, sourceLocation: SourceLocation = #_sourceLocation,
              _ op: (AddressSpace, WalkerKind) throws -> KernelPageAttrResult) throws -> (AddressSpace, KernelPageAttrResult) {
        var out: [(AddressSpace, KernelPageAttrResult, [String])] = []
        for w in [WalkerKind.callback, .range] {
            let mm = try kernelSpace(geometry)
            let r = try op(mm, w)
            out.append((mm, r, try words(mm)))
        }
        #expect(out[0].1 == out[1].1, "walkers disagree: \(out[0].1) vs \(out[1].1)", sourceLocation: sourceLocation)
        #expect(out[0].2 == out[1].2, sourceLocation: sourceLocation)
        return (out[1].0, out[1].1)
    }

    @Test func setMemoryReadOnlyRewritesBlockLeavesAndPTEs() throws {
        for g in [Geometry.x86_64, .arm64] {
            let layout = g.layout
            let pmdAt = Self.base + gb1, ptesAt = Self.base + gb1 + mb2
            // From inside the PMD leaf to the second PTE: the whole leaf is
            // rewritten (the walker splits nothing), and PTEs 0 and 1.
            let (mm, r) = try twin(g) { mm, w in
                try KernelPageAttr.setMemory(mm, pmdAt + 0x1234, pages: 511 + 2, .readOnly(layout), walker: w)
            }
            #expect(r.changed == 3)
            // Met from the range's start, inside the leaf.
            #expect(r.blockLeaves == [pmdAt + page])
            #expect(r.tlbFlushes == [pmdAt + page..<ptesAt + 2 * page])
            #expect(r.dcacheFlushes.isEmpty)
            for a in [pmdAt, ptesAt, ptesAt + page] {
                #expect(raw(mm, a) & layout.write == 0)
                #expect(!PTE(rawValue: raw(mm, a), architecture: g.architecture).isWritable)
            }
            // Outside the range: still writable.
            #expect(raw(mm, Self.base) & layout.write != 0 && raw(mm, ptesAt + 2 * page) & layout.write != 0)
            // Again: nothing changes, the flush is still made.
            for w in WalkerKind.allCases {
                let again = try KernelPageAttr.setMemory(mm, pmdAt, pages: 514, .readOnly(layout), walker: w)
                #expect(again.changed == 0 && again.tlbFlushes == [pmdAt..<ptesAt + 2 * page])
            }
            // Back to writable, and no-execute cleared then set on the PUD leaf.
            let (mm2, rw) = try twin(g) { mm, w in
                _ = try KernelPageAttr.setMemory(mm, pmdAt, pages: 514, .readOnly(layout), walker: w)
                return try KernelPageAttr.setMemory(mm, pmdAt, pages: 514, .readWrite(layout), walker: w)
            }
            #expect(rw.changed == 3)
            #expect(try words(mm2) == (try words(kernelSpace(g))))
            let (mm3, x) = try twin(g) { mm, w in
                try KernelPageAttr.setMemory(mm, Self.base, pages: 1, .executable(layout), walker: w)
            }
            #expect(x.changed == 1 && x.blockLeaves == [Self.base])
            #expect(raw(mm3, Self.base) & layout.noExecute == 0)
        }
    }

    @Test func flavorsDifferOnlyAboveTheP4D() throws {
        // Neither model layout has P4D or PGD leaves: riscv and LoongArch
        // walks leave the same words.
        var results: [KernelPageAttrResult] = []
        for flavor in KernelPageAttr.Flavor.allCases {
            let (_, r) = try twin { mm, w in
                try KernelPageAttr.setMemory(mm, Self.base, pages: (gb1 + mb2) / page + 4, .noExecute(mm.geometry.layout),
                                             flavor: flavor, walker: w)
            }
            results.append(r)
        }
        #expect(results[0] == results[1])
        // Already no-execute everywhere: nothing changed.
        #expect(results[0].changed == 0)
        #expect(!KernelPageAttr.rewrites(.masks(.noExecute(.x86_64), .riscv), level: .pgd))
        #expect(KernelPageAttr.rewrites(.masks(.noExecute(.x86_64), .loongarch), level: .pgd))
        #expect(KernelPageAttr.rewrites(.masks(.noExecute(.x86_64), .riscv), level: .p4d))
    }

    @Test func noCacheSetsTheBitPerPTEAndFlushesEachPage() throws {
        let pd = Geometry.x86_64.layout.cacheDisable
        let pmdAt = Self.base + gb1, ptesAt = Self.base + gb1 + mb2
        // Over the PMD leaf and three PTEs: the leaf has no pte_entry, so it
        // stays cacheable; each PTE gets PCD and a TLB and cache flush.
        let (mm, r) = try twin { mm, w in
            try KernelPageAttr.setNoCache(mm, pmdAt, size: mb2 + 3 * page, walker: w)
        }
        #expect(r.changed == 3 && r.blockLeaves.isEmpty)
        let pagesFlushed: [Range<UInt64>] = (0..<3).map { (i: UInt64) -> Range<UInt64> in
            ptesAt + i * page..<ptesAt + (i + 1) * page
        }
        let framesFlushed: [Range<UInt64>] = (0..<3).map { (i: UInt64) -> Range<UInt64> in
            (0x1000 + i) * page..<(0x1001 + i) * page
        }
        #expect(r.tlbFlushes == pagesFlushed)
        #expect(r.dcacheFlushes == framesFlushed)
        #expect(raw(mm, pmdAt) & pd == 0)
        #expect((0..<3).allSatisfy { raw(mm, ptesAt + UInt64($0) * page) & pd != 0 })
        #expect(raw(mm, ptesAt + 3 * page) & pd == 0)
        // Cleared again: the original words, one TLB flush per page, no
        // cache flush.
        let (mm2, c) = try twin { mm, w in
            _ = try KernelPageAttr.setNoCache(mm, pmdAt, size: mb2 + 3 * page, walker: w)
            return try KernelPageAttr.clearNoCache(mm, pmdAt, size: mb2 + 3 * page, walker: w)
        }
        #expect(c.changed == 3 && c.tlbFlushes.count == 3 && c.dcacheFlushes.isEmpty)
        #expect(try words(mm2) == (try words(kernelSpace())))
    }

    @Test func refusals() throws {
        let arm = try kernelSpace(.arm64)
        for w in WalkerKind.allCases {
            #expect(throws: KernelPageAttrError.noCacheInhibitBit(.arm64)) {
                try KernelPageAttr.setNoCache(arm, Self.base, size: page, walker: w)
            }
            let user = try makeSpace()
            #expect(throws: KernelPageAttrError.self) {
                try KernelPageAttr.setMemory(user, 0, pages: 1, .readOnly(.x86_64), walker: w)
            }
            #expect(try KernelPageAttr.setMemory(arm, Self.base, pages: 0, .readOnly(.arm64), walker: w) == KernelPageAttrResult())
        }
        #expect(KernelPageAttrError.noCacheInhibitBit(.arm64).errno == -22)
    }
}
