import Testing
import MemoryModel
@testable import PageWalk

/// arm64's `split_to_ptes_ops` (`range_split_to_ptes()`, arch/arm64/mm/mmu.c)
/// on both walkers, on arm64 kernel tables: a 1G PUD block, a contiguous
/// run of 16 PMD blocks (32M), a contiguous run of 16 PTEs (64K) and four
/// plain PTEs. Both leave the same words and report the same splits; every
/// page keeps its frame and attributes, now as a PTE with no contiguous bit.
@Suite struct LinearMapSplitTests {
    static let base: UInt64 = 0xffff_0000_0000_0000
    let layout = Geometry.arm64.layout
    var contPMDAt: UInt64 { Self.base + gb1 }
    var contPTEAt: UInt64 { contPMDAt + 32 * mb2 / 2 }
    var end: UInt64 { contPTEAt + 20 * page }

    func kernelSpace() throws -> AddressSpace {
        let memory = try PhysicalMemory(budgetBytes: 64 << 20)
        let mm = try AddressSpace(geometry: .arm64, memory: memory,
                                  options: .init(softDirty: false, pid: 0, name: "swapper"), kernel: true)
        let b = try KernelLayoutBuilder(mm)
        try b.map(Self.base, size: gb1, pfn: 0x40000, level: .pud, .kernel)
        try b.map(contPMDAt, size: 32 << 20, pfn: 0x80000, level: .pmd, contiguous: true, .kernel)
        try b.map(contPTEAt, size: 64 << 10, pfn: 0x90000, level: .pte, contiguous: true, .kernelRO)
        try b.map(contPTEAt + 16 * page, size: 4 * page, pfn: 0x90010, level: .pte, .kernel)
        return mm
    }

    /// Addresses to compare: pages through the PUD block at a stride, and
    /// every page after it.
    var samples: [UInt64] {
        Array(stride(from: Self.base, to: contPMDAt, by: 0x3_3000)) + Array(stride(from: contPMDAt, to: end, by: Int(page)))
    }

    /// Level, frame and attribute bits (contiguous and type bits masked)
    /// of each sample.
    func pages(_ mm: AddressSpace) -> [String] {
        samples.map { a in
            guard case .present(let level, let raw, let pfn) = mm.translate(a) else { return "\(a) -" }
            let attrs = raw & ~layout.pfnMask & ~layout.contiguous & ~layout.tableBit
            return "\(String(a, radix: 16)) \(level) pfn \(String(pfn, radix: 16)) attrs \(String(attrs, radix: 16)) cont \(raw & layout.contiguous != 0)"
        }
    }

    @Test func everyBlockBecomesPagesWithoutContiguousBits() throws {
        let before = try kernelSpace()
        var out: [(AddressSpace, LinearMapSplitResult, [String])] = []
        for w in [WalkerKind.callback, .range] {
            let mm = try kernelSpace()
            let r = try LinearMapSplit.splitToPTEs(mm, Self.base..<end, walker: w)
            out.append((mm, r, pages(mm)))
        }
        #expect(out[0].1 == out[1].1)
        #expect(out[0].2 == out[1].2)
        let r = out[1].1
        #expect(r.pudSplits == [Self.base])
        #expect(r.pmdSplits == (0..<512).map { Self.base + $0 * mb2 } + (0..<16).map { contPMDAt + $0 * mb2 })
        // The PMD run's bit cleared once, at its first block; the PTE run's at its first page.
        #expect(r.contiguousRuns == [contPMDAt, contPTEAt])
        let mm = out[1].0
        let expected = pages(before).map { line -> String in
            var parts = line.split(separator: " ").map(String.init)
            parts[1] = "pte"
            parts[parts.count - 1] = "false"
            return parts.joined(separator: " ")
        }
        #expect(pages(mm) == expected)
        // One PMD table and 512 + 16 PTE tables more.
        #expect(mm.counterSnapshot != before.counterSnapshot)
        // Again: nothing left to split.
        for w in WalkerKind.allCases {
            #expect(try LinearMapSplit.splitToPTEs(mm, Self.base..<end, walker: w) == LinearMapSplitResult())
        }
    }

    @Test func aBlockCoveredInPartIsSplitWhole() throws {
        for w in WalkerKind.allCases {
            let mm = try kernelSpace()
            let r = try LinearMapSplit.splitToPTEs(mm, contPMDAt + mb2 + page..<contPMDAt + mb2 + 2 * page, walker: w)
            // The second block of the PMD run: the run's bit cleared, that block split.
            #expect(r == { var x = LinearMapSplitResult(); x.pmdSplits = [contPMDAt + mb2 + page]
                           x.contiguousRuns = [contPMDAt + mb2 + page]; return x }())
            guard case .present(let level, let raw, let pfn) = mm.translate(contPMDAt + mb2 + 5 * page) else {
                Issue.record("unmapped"); continue
            }
            #expect(level == .pte && pfn == 0x80000 + 512 + 5 && raw & layout.contiguous == 0)
            // Its neighbours are still blocks, no longer contiguous.
            guard case .present(let l0, let raw0, _) = mm.translate(contPMDAt) else { continue }
            #expect(l0 == .pmd && raw0 & layout.contiguous == 0)
        }
        #expect(throws: KernelPageAttrError.notArm64(.x86_64)) {
            let x86 = try AddressSpace(geometry: .x86_64, memory: PhysicalMemory(budgetBytes: 16 << 20), kernel: true)
            _ = try LinearMapSplit.splitToPTEs(x86, Self.base..<Self.base + page)
        }
    }
}
