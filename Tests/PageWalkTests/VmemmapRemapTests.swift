import Testing
import MemoryModel
@testable import PageWalk

/// The HugeTLB vmemmap walks (`vmemmap_remap_ops`, mm/hugetlb_vmemmap.c)
/// on both walkers, on kernel-table PTEs standing for a vmemmap: the 2M
/// PMD leaf of `KernelPageAttrTests.kernelSpace()` (frames 0x200…), its
/// first eight pages as one HugeTLB page's vmemmap (the reuse page, then
/// seven to remap).
@Suite struct VmemmapRemapTests {
    let t = KernelPageAttrTests()
    var reuse: UInt64 { KernelPageAttrTests.base + gb1 }
    var start: UInt64 { reuse + page }
    var end: UInt64 { reuse + 8 * page }

    func pfn(_ mm: AddressSpace, _ a: UInt64) -> UInt64? {
        guard case .present(.pte, _, let pfn) = mm.translate(a) else { return nil }
        return pfn
    }

    func writable(_ mm: AddressSpace, _ a: UInt64) -> Bool { t.raw(mm, a) & mm.geometry.layout.write != 0 }

    /// Runs `op` on both walkers, each on its own space; the results and
    /// the words left agree.
    func twin(_ prepare: (AddressSpace) throws -> Void = { _ in },
              _ op: (AddressSpace, WalkerKind) throws -> VmemmapRemapResult) throws -> (AddressSpace, VmemmapRemapResult) {
        var out: [(AddressSpace, VmemmapRemapResult, [String])] = []
        for w in [WalkerKind.callback, .range] {
            let mm = try t.kernelSpace()
            try prepare(mm)
            let r = try op(mm, w)
            out.append((mm, r, try t.words(mm)))
        }
        #expect(out[0].1 == out[1].1)
        #expect(out[0].2 == out[1].2)
        return (out[1].0, out[1].1)
    }

    @Test func remapFreeMapsTheTailsToTheNewHeadReadOnly() throws {
        let (mm, r) = try twin { mm, w in
            try VmemmapRemap.remapFree(mm, start: start, end: end, reuse: reuse, newHead: 0x5000, walker: w)
        }
        #expect(r.pmdSplits == [reuse] && r.walked == 8 && r.reusePFN == 0x5000)
        // Every old page of the range, the head's too, is left for the caller to free.
        #expect(r.pages == Array(0x200..<0x208))
        #expect(pfn(mm, reuse) == 0x5000 && writable(mm, reuse))
        for i in 1..<UInt64(8) { #expect(pfn(mm, reuse + i * page) == 0x5000 && !writable(mm, reuse + i * page)) }
        // The rest of the split leaf: pages of the old frames, untouched.
        #expect(pfn(mm, end) == 0x208 && writable(mm, end))
        #expect(pfn(mm, reuse + mb2 - page) == 0x3ff)
    }

    @Test func withoutANewHeadTheFirstPageIsReusedAndRestoreMapsFreshPages() throws {
        let (mm, r) = try twin { mm, w in
            try VmemmapRemap.remapFree(mm, start: start, end: end, reuse: reuse, newHead: nil, walker: w)
        }
        #expect(r.reusePFN == 0x200 && r.pages == Array(0x201..<0x208) && r.walked == 8)
        #expect(pfn(mm, reuse) == 0x200 && writable(mm, reuse))
        for i in 1..<UInt64(8) { #expect(pfn(mm, reuse + i * page) == 0x200 && !writable(mm, reuse + i * page)) }
        // Restore: fresh pages 0x301… in order, read-write; nothing split again.
        let fresh = Array(UInt64(0x301)..<0x308)
        let (mm2, back) = try twin({ mm in
            _ = try VmemmapRemap.remapFree(mm, start: start, end: end, reuse: reuse, newHead: nil)
        }) { mm, w in try VmemmapRemap.restore(mm, start: start, end: end, reuse: reuse, pages: fresh, walker: w) }
        #expect(back.pmdSplits.isEmpty && back.walked == 8 && back.pages.isEmpty && back.reusePFN == 0x200)
        for i in 1..<UInt64(8) { #expect(pfn(mm2, reuse + i * page) == 0x300 + i && writable(mm2, reuse + i * page)) }
        _ = mm
    }

    @Test func splitOnlyAndRefusals() throws {
        let (mm, r) = try twin { mm, w in try VmemmapRemap.split(mm, start: start, end: end, reuse: reuse, walker: w) }
        #expect(r.pmdSplits == [reuse] && r.walked == 0 && r.pages.isEmpty)
        #expect((0..<UInt64(512)).allSatisfy { pfn(mm, reuse + $0 * page) == 0x200 + $0 })
        for w in WalkerKind.allCases {
            let mm = try t.kernelSpace()
            // A range that was never remapped cannot be restored.
            #expect(throws: VmemmapRemapError.notRemapped(address: start)) {
                try VmemmapRemap.restore(mm, start: start, end: end, reuse: reuse, pages: Array(0x301..<0x308), walker: w)
            }
            #expect(throws: VmemmapRemapError.noMemory) {
                try VmemmapRemap.restore(mm, start: start, end: end, reuse: reuse, pages: [0x301], walker: w)
            }
            #expect(throws: VmemmapRemapError.reuseNotBeforeStart) {
                try VmemmapRemap.split(mm, start: start + page, end: end, reuse: reuse, walker: w)
            }
        }
    }
}
