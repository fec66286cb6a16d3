import Testing
import Glibc
import MemoryModel
@testable import PageWalk
import TestKit
import Scenario

/// s390's zero-page unsharing for protected KVM guests
/// (`find_zeropage_ops`, arch/s390/mm/gmap_helpers.c) on both walkers: the
/// same zero pages found in the same order, the same error outside COW
/// mappings, and the same end state (THPs split by the walker).
@Suite struct GmapZeroPagesTests {
    /// `body` on a space from `build`, once per walker; records an issue
    /// when the outcomes or end states differ.
    func twins<R: Equatable>(_ build: () throws -> AddressSpace, sourceLocation: SourceLocation = #_sourceLocation,
                             _ body: (AddressSpace, WalkerKind) throws(GmapError) -> R) throws -> Result<R, GmapError> {
        var results: [Result<R, GmapError>] = []
        var states: [[String]] = []
        for w in WalkerKind.allCases {
            let mm = try build()
            do throws(GmapError) { results.append(.success(try body(mm, w))) } catch { results.append(.failure(error)) }
            states.append(endState(mm))
        }
        #expect(results[0] == results[1], "walkers disagree: \(results)", sourceLocation: sourceLocation)
        #expect(states[0] == states[1], "\(endStateDifferences(states[0], states[1]).joined(separator: "\n"))",
                sourceLocation: sourceLocation)
        return results[0]
    }

    func anonymous() throws -> AddressSpace {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + 16 * page, access: [.read, .write])
        try mm.fault(mb2 + 2 * page, mb2 + 4 * page, write: false)      // zero pages
        try mm.fault(mb2 + 5 * page, mb2 + 6 * page, write: true)
        try mm.fault(mb2 + 10 * page, mb2 + 11 * page, write: false)
        return mm
    }

    @Test func findsEachZeroPageInOrder() throws {
        for (from, expected) in [(mb2, mb2 + 2 * page), (mb2 + 3 * page, mb2 + 3 * page), (mb2 + 4 * page, mb2 + 10 * page),
                                 (mb2 + 11 * page, nil)] as [(UInt64, UInt64?)] {
            let r = try twins(anonymous) { (mm, w) throws(GmapError) in
                try GmapZeroPages.findZeroPage(mm, mm.vma(containing: mb2)!, from: from, walker: w)
            }
            #expect(r == .success(expected), "from 0x\(String(from, radix: 16))")
        }
    }

    @Test func unshareReplacesEveryZeroPage() throws {
        let r = try twins(anonymous) { (mm, w) throws(GmapError) -> [UInt64] in
            let done = try GmapZeroPages.unshareZeroPages(mm, walker: w)
            // Nothing is left to find.
            #expect(try GmapZeroPages.findZeroPage(mm, mm.vma(containing: mb2)!, from: mb2, walker: w) == nil)
            return done
        }
        #expect(r == .success([mb2 + 2 * page, mb2 + 3 * page, mb2 + 10 * page]))
        let mm = try anonymous()
        try GmapZeroPages.unshareZeroPages(mm)
        guard case .present(_, _, let pfn) = mm.translate(mb2 + 2 * page) else { Issue.record("unmapped"); return }
        #expect(pfn != mm.memory.zeroPage.pfn && mm.memory.folio(containing: pfn)?.isAnon == true)
    }

    /// The walk has only a `pte_entry`: the huge zero PMD is split and its
    /// first PTE found.
    @Test func hugeZeroPMDIsSplitAndFound() throws {
        let build = { () throws -> AddressSpace in
            let mm = try makeSpace()
            try mm.mmap(start: 2 * mb2, end: 4 * mb2, access: [.read, .write], extraFlags: [.hugePage])
            try mm.populateTHP(2 * mb2, 3 * mb2)
            try mm.populateTHP(3 * mb2, 4 * mb2, write: false)
            return mm
        }
        let r = try twins(build) { (mm, w) throws(GmapError) in
            try GmapZeroPages.findZeroPage(mm, mm.vma(containing: 2 * mb2)!, from: 2 * mb2, walker: w)
        }
        #expect(r == .success(3 * mb2))
        let mm = try build()
        _ = try GmapZeroPages.findZeroPage(mm, try #require(mm.vma(containing: 2 * mb2)), from: 2 * mb2)
        guard case .present(.pte, _, _) = mm.translate(2 * mb2), case .present(.pte, _, let pfn) = mm.translate(3 * mb2 + page) else {
            Issue.record("not split: \(mm.translate(2 * mb2)) \(mm.translate(3 * mb2))"); return
        }
        #expect(pfn == mm.memory.zeroPage.pfn)
    }

    @Test func zeroPageOutsideCOWFailsAndPFNMapsAndHugetlbAreSkipped() throws {
        let shared = { () throws -> AddressSpace in
            let mm = try makeSpace(budget: 64 << 20)
            try mm.mmap(start: mb2, end: mb2 + 8 * page, access: [.read, .write], shared: true, kind: .mixedMap(firstPFN: 0x6000))
            try mm.remapPFN(mb2 + 4 * page, mb2 + 5 * page, pfn: mm.memory.zeroPage.pfn)
            return mm
        }
        let r = try twins(shared) { (mm, w) throws(GmapError) in try GmapZeroPages.unshareZeroPages(mm, walker: w) }
        #expect(r == .failure(.zeroPageOutsideCOW(address: mb2 + 4 * page)))
        #expect(GmapError.zeroPageOutsideCOW(address: 0).errno == -EFAULT)
        // A private mixed map is a COW mapping: its zero page is found.
        let priv = { () throws -> AddressSpace in
            let mm = try makeSpace()
            try mm.mmap(start: mb2, end: mb2 + 8 * page, access: [.read, .write], kind: .mixedMap(firstPFN: 0x6000))
            try mm.remapPFN(mb2 + 6 * page, mb2 + 7 * page, pfn: mm.memory.zeroPage.pfn)
            return mm
        }
        #expect(try twins(priv) { (mm, w) throws(GmapError) in
            try GmapZeroPages.findZeroPage(mm, mm.vma(containing: mb2)!, from: mb2, walker: w)
        } == .success(mb2 + 6 * page))
        // A shared PFN map mapping the zero frame, and hugetlb: passed over.
        let skipped = { () throws -> AddressSpace in
            let mm = try makeSpace(budget: 64 << 20)
            try mm.mmap(start: mb2, end: mb2 + 8 * page, access: [.read, .write], shared: true, kind: .pfnMap(firstPFN: 0x6000))
            try mm.remapPFN(mb2, mb2 + page, pfn: mm.memory.zeroPage.pfn)
            try mm.mmap(start: gb1, end: gb1 + mb2, access: [.read, .write], kind: .hugetlb(pageSize: mb2, file: nil))
            try mm.populateHugetlb(gb1, gb1 + mb2)
            return mm
        }
        #expect(try twins(skipped) { (mm, w) throws(GmapError) in try GmapZeroPages.unshareZeroPages(mm, walker: w) } == .success([]))
    }

    /// A failing unshare action is reported with the address.
    @Test func unshareFailureIsENOMEM() throws {
        let mm = try anonymous()
        let refuse: (AddressSpace, UInt64) throws(ModelError) -> Void = { (_, _) throws(ModelError) in
            throw .allocationFailed("no memory")
        }
        for w in WalkerKind.allCases {
            #expect(throws: GmapError.unshareFailed(address: mb2 + 2 * page, .allocationFailed("no memory"))) {
                try GmapZeroPages.unshareZeroPages(mm, walker: w, unshare: refuse)
            }
        }
        #expect(GmapError.unshareFailed(address: 0, .allocationFailed("")).errno == -ENOMEM)
        // An action that leaves the zero page mapped is found again at the
        // same address: a failure, not an endless retry.
        let nothing: (AddressSpace, UInt64) throws(ModelError) -> Void = { (_, _) throws(ModelError) in }
        for w in WalkerKind.allCases {
            #expect(throws: GmapError.unshareFailed(address: mb2 + 2 * page,
                                                    .invalidArgument(name: "unshare", reason: "the zero page is still mapped"))) {
                try GmapZeroPages.unshareZeroPages(mm, walker: w, unshare: nothing)
            }
        }
    }
    /// The default scenario's processes, with read faults added on two
    /// anonymous regions (zero pages): both walkers find the same zero
    /// pages, which are the pages of VMAs other than PFN maps and hugetlb
    /// that translate to the zero page, worked out page by page.
    @Test func defaultScenarioFindsEveryZeroPage() throws {
        for index in 0..<2 {
            let build = { () throws -> AddressSpace in
                let mm = try ScenarioBuilder.buildDefault().processes[index].addressSpace
                try mm.fault(0x7fff_f620_0000, 0x7fff_f620_8000, write: false)
                try mm.fault(0x7fff_f670_0000 + UInt64(index) * page, 0x7fff_f670_3000, write: false)
                return mm
            }
            let mm0 = try build()
            var expected: [UInt64] = []
            for vma in mm0.vmas where !vma.flags.contains(.pfnMap) && !vma.isHugetlb {
                for a in stride(from: vma.start, to: vma.end, by: Int(page)) {
                    if case .present(_, _, let pfn) = mm0.translate(a), pfn == mm0.memory.zeroPage.pfn { expected.append(a) }
                }
            }
            #expect(expected.count == 8 + 3 - index, "process \(index)")
            let r = try twins(build) { (mm, w) throws(GmapError) in try GmapZeroPages.unshareZeroPages(mm, walker: w) }
            #expect(r == .success(expected), "process \(index)")
        }
    }
}
