import Testing
import Glibc
import MemoryModel
@testable import PageWalk
import TestKit
import Scenario

/// mprotect(PROT_NONE)'s PFN check (`prot_none_walk_ops`, mm/mprotect.c)
/// on both walkers: x86's `pfn_modify_allowed()` under the L1TF
/// mitigation refuses PFNs above the limit with no memmap, the walk stops
/// at the first, and both walkers give the same outcome and end state
/// (PMD THPs split, as the callback walker splits for a `pte_entry`).
@Suite struct ProtNoneTests {
    /// PFNs above `PFNModifyCheck.l1tfMitigated.pfnLimit` (46 cache bits:
    /// half of 2^46 bytes is 2^33 frames, so the limit is 2^33 - 1).
    let high: UInt64 = 1 << 34

    /// The outcome of the walk on both walkers, each on its own space built
    /// by `build`; records an issue when outcome or end state differ.
    func outcome(_ check: PFNModifyCheck, sourceLocation: SourceLocation = #_sourceLocation,
                 _ build: () throws -> AddressSpace,
                 walk: (AddressSpace, WalkerKind) throws(MprotectError) -> Void) throws -> MprotectError? {
        var results: [MprotectError?] = []
        var states: [[String]] = []
        for w in WalkerKind.allCases {
            let mm = try build()
            do throws(MprotectError) { try walk(mm, w); results.append(nil) } catch { results.append(error) }
            states.append(endState(mm))
        }
        #expect(results[0] == results[1], "walkers disagree: \(results)", sourceLocation: sourceLocation)
        #expect(states[0] == states[1], "\(endStateDifferences(states[0], states[1]).joined(separator: "\n"))",
                sourceLocation: sourceLocation)
        return results[0]
    }

    func pfnMap(mixed: Bool = false, highPages: Range<Int>? = nil) throws -> AddressSpace {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + 16 * page, access: [.read, .write], shared: true,
                    kind: mixed ? .mixedMap(firstPFN: 0x5000) : .pfnMap(firstPFN: 0x5000))
        try mm.remapPFN(mb2, mb2 + 2 * page)
        if let r = highPages {
            try mm.remapPFN(mb2 + UInt64(r.lowerBound) * page, mb2 + UInt64(r.upperBound) * page, pfn: high)
        }
        return mm
    }

    @Test func limitIsHalfTheCacheAddressSpace() {
        #expect(PFNModifyCheck.l1tfMitigated.pfnLimit == (1 << 33) - 1)
        #expect(PFNModifyCheck(l1tfMitigation: true, cacheBits: 52).pfnLimit == (1 << 39) - 1)
        #expect(PFNModifyCheck.defaultCacheBits == 46)
        #expect(MprotectError.pfnModifyRefused(address: 0, pfn: 0).errno == -EACCES)
    }

    @Test func lowPFNsAreAllowed() throws {
        for mixed in [false, true] {
            #expect(try outcome(.l1tfMitigated, { try pfnMap(mixed: mixed) }) { (mm, w) throws(MprotectError) in
                try ProtNone.walk(mm, mb2, mb2 + 16 * page, check: .l1tfMitigated, walker: w)
            } == nil)
        }
    }

    @Test func highPFNIsRefusedAtItsFirstPage() throws {
        for mixed in [false, true] {
            let r = try outcome(.l1tfMitigated, { try pfnMap(mixed: mixed, highPages: 5..<8) }) { (mm, w) throws(MprotectError) in
                try ProtNone.walk(mm, mb2, mb2 + 16 * page, check: .l1tfMitigated, walker: w)
            }
            #expect(r == .pfnModifyRefused(address: mb2 + 5 * page, pfn: high))
            // A range that ends before the high PFNs passes.
            #expect(try outcome(.l1tfMitigated, { try pfnMap(mixed: mixed, highPages: 5..<8) }) { (mm, w) throws(MprotectError) in
                try ProtNone.walk(mm, mb2, mb2 + 5 * page, check: .l1tfMitigated, walker: w)
            } == nil)
            // From the middle of the run: its own PFN.
            #expect(try outcome(.l1tfMitigated, { try pfnMap(mixed: mixed, highPages: 5..<8) }) { (mm, w) throws(MprotectError) in
                try ProtNone.walk(mm, mb2 + 6 * page, mb2 + 16 * page, check: .l1tfMitigated, walker: w)
            } == .pfnModifyRefused(address: mb2 + 6 * page, pfn: high + 1))
        }
    }

    @Test func noMitigationAdminOrWiderCacheAllow() throws {
        for check in [PFNModifyCheck.notAffected, PFNModifyCheck(l1tfMitigation: true, capSysAdmin: true),
                      PFNModifyCheck(l1tfMitigation: true, cacheBits: 52)] {
            #expect(try outcome(check, { try pfnMap(highPages: 5..<8) }) { (mm, w) throws(MprotectError) in
                try ProtNone.walk(mm, mb2, mb2 + 16 * page, check: check, walker: w)
            } == nil, "\(check)")
        }
    }

    /// `mprotect_fixup()` walks only PFN and mixed maps, and only for a
    /// protection with no access.
    @Test func fixupWalksOnlyPFNMapsGoingProtNone() throws {
        let mm = try pfnMap(highPages: 5..<8)
        let vma = try #require(mm.vma(containing: mb2))
        for w in WalkerKind.allCases {
            #expect(throws: MprotectError.pfnModifyRefused(address: mb2 + 5 * page, pfn: high)) {
                try ProtNone.fixupCheck(mm, vma, mb2, mb2 + 16 * page, newFlags: [], check: .l1tfMitigated, walker: w)
            }
            try ProtNone.fixupCheck(mm, vma, mb2, mb2 + 16 * page, newFlags: [.read], check: .l1tfMitigated, walker: w)
            try ProtNone.fixupCheck(mm, vma, mb2, mb2 + 16 * page, newFlags: [], check: .notAffected, walker: w)
        }
        try mm.mmap(start: 4 * mb2, end: 4 * mb2 + 4 * page, access: [.read, .write])
        let anon = try #require(mm.vma(containing: 4 * mb2))
        #expect(!ProtNone.needsWalk(anon, newFlags: [], check: .l1tfMitigated))
        #expect(ProtNone.needsWalk(vma, newFlags: [], check: .l1tfMitigated))
    }

    /// The walk itself over ordinary memory (test_walk accepts every VMA):
    /// real memory is always allowed; a THP is split first; a swap entry's
    /// `pte_pfn()` on x86 is its stored bits inverted back (the L1TF
    /// inversion undone), a low number from its offset, which is allowed.
    @Test func ordinaryMemoryTHPSplitAndSwapEntries() throws {
        func build() throws -> AddressSpace {
            let mm = try makeSpace(budget: 64 << 20)
            try mm.mmap(start: 2 * mb2, end: 4 * mb2, access: [.read, .write], extraFlags: [.hugePage])
            try mm.populateTHP(2 * mb2, 3 * mb2)
            try mm.populateTHP(3 * mb2, 4 * mb2, write: false)      // the huge zero page
            try mm.mmap(start: gb1, end: gb1 + 2 * mb2, access: [.read, .write], kind: .hugetlb(pageSize: mb2, file: nil))
            try mm.populateHugetlb(gb1, gb1 + mb2)
            try mm.mmap(start: 8 * mb2, end: 8 * mb2 + 8 * page, access: [.read, .write])
            try mm.fault(8 * mb2, 8 * mb2 + 8 * page, write: true)
            try mm.swapOut(8 * mb2 + 3 * page, 8 * mb2 + 4 * page)
            return mm
        }
        let r = try outcome(.l1tfMitigated, build) { (mm, w) throws(MprotectError) in
            try ProtNone.walk(mm, 2 * mb2, 4 * mb2, check: .l1tfMitigated, walker: w)
            try ProtNone.walk(mm, gb1, gb1 + 2 * mb2, check: .l1tfMitigated, walker: w)
            try ProtNone.walk(mm, 8 * mb2, 8 * mb2 + 8 * page, check: .l1tfMitigated, walker: w)
        }
        #expect(r == nil)
        let swapped = try makeSpace()
        try swapped.mmap(start: mb2, end: mb2 + page, access: [.read, .write])
        try swapped.fault(mb2, mb2 + page, write: true)
        try swapped.swapOut(mb2, mb2 + page)
        guard case .softLeaf(.pte, let raw, let e) = swapped.translate(mb2), case .swap(let slot) = e.leaf else {
            Issue.record("not swapped"); return
        }
        // Offset bits sit at bit 9 up, stored inverted: pte_pfn() reads them
        // back from bit 12, so the "frame" is the offset over 8.
        #expect(PTEEntryWalk.entryPFN(raw, level: .pte, swapped.geometry) == slot.offset >> 3)
        // Both THPs were split to PTE tables; hugetlb stays whole.
        let mm = try build()
        try ProtNone.walk(mm, 2 * mb2, 4 * mb2, check: .l1tfMitigated)
        try ProtNone.walk(mm, gb1, gb1 + 2 * mb2, check: .l1tfMitigated)
        guard case .present(.pte, _, _) = mm.translate(2 * mb2 + 5 * page), case .present(.pte, _, _) = mm.translate(3 * mb2),
              case .present(.pmd, _, _) = mm.translate(gb1) else {
            Issue.record("\(mm.translate(2 * mb2)) \(mm.translate(3 * mb2)) \(mm.translate(gb1))"); return
        }
    }
    /// Every VMA of the default scenario's first process checked (PFN map
    /// [vvar] included): all its frames are real memory or low PFNs, so
    /// nothing is refused, and both walkers leave the same tables (the
    /// heap's THP split).
    @Test func defaultScenarioEveryVMA() throws {
        let build = { () throws -> AddressSpace in try ScenarioBuilder.buildDefault().processes[0].addressSpace }
        let r = try outcome(.l1tfMitigated, build) { (mm, w) throws(MprotectError) in
            for vma in mm.vmas { try ProtNone.walk(mm, vma.start, vma.end, check: .l1tfMitigated, walker: w) }
        }
        #expect(r == nil)
    }
}
