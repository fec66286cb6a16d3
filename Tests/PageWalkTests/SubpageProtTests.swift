import Testing
import MemoryModel
@testable import PageWalk
import TestKit
import Scenario

/// powerpc's subpage_prot(2) marking VMAs VM_NOHUGEPAGE and splitting
/// their PMD THPs (`subpage_walk_ops`) on both walkers: the same end state
/// (PTE tables where THPs, the huge zero page and PMD migration entries
/// were; mTHPs, hugetlb and VMAs outside the range untouched).
@Suite struct SubpageProtTests {
    func build() throws -> AddressSpace {
        let mm = try makeSpace(budget: 128 << 20)
        try mm.mmap(start: 2 * mb2, end: 6 * mb2, access: [.read, .write], extraFlags: [.hugePage])
        try mm.populateTHP(2 * mb2, 3 * mb2)
        try mm.populateTHP(3 * mb2, 4 * mb2, write: false)          // the huge zero page
        try mm.populateTHP(4 * mb2, 5 * mb2)
        try mm.startMigration(4 * mb2, 5 * mb2)                      // a PMD migration entry
        try mm.populateLargeFolios(5 * mb2, 5 * mb2 + 64 * page, order: 4)
        try mm.mmap(start: gb1, end: gb1 + 2 * mb2, access: [.read, .write], kind: .hugetlb(pageSize: mb2, file: nil))
        try mm.populateHugetlb(gb1, gb1 + mb2)
        try mm.mmap(start: gb1 + 4 * mb2, end: gb1 + 5 * mb2, access: [.read, .write], extraFlags: [.hugePage])
        try mm.populateTHP(gb1 + 4 * mb2, gb1 + 5 * mb2)                       // outside the range
        return mm
    }

    func level(_ mm: AddressSpace, _ a: UInt64) -> PageTableLevel? {
        switch mm.translate(a) {
        case .present(let l, _, _), .softLeaf(let l, _, _): return l
        case .none: return nil
        }
    }

    @Test func bothWalkersSplitTheSameTHPs() throws {
        var states: [[String]] = []
        for w in WalkerKind.allCases {
            let mm = try build()
            let n = try SubpageProt.markVMAsNoHuge(mm, 2 * mb2 + page, gb1 + mb2 - 2 * mb2, walker: w)
            #expect(n == 2, "\(w)")
            // Every PMD THP of the THP VMA is now PTE-mapped.
            #expect(level(mm, 2 * mb2) == .pte && level(mm, 3 * mb2 + 9 * page) == .pte && level(mm, 4 * mb2) == .pte, "\(w)")
            guard case .present(.pte, _, let zero) = mm.translate(3 * mb2 + 9 * page) else { Issue.record("\(w)"); continue }
            #expect(zero == mm.memory.zeroPage.pfn)
            // The migration entry became PTE migration entries.
            guard case .softLeaf(.pte, _, let e) = mm.translate(4 * mb2 + 7 * page), case .migration = e.leaf else {
                Issue.record("\(w): \(mm.translate(4 * mb2 + 7 * page))"); continue
            }
            // hugetlb and the VMA outside the range keep their PMDs.
            #expect(level(mm, gb1) == .pmd && level(mm, gb1 + 4 * mb2) == .pmd, "\(w)")
            #expect(mm.vma(containing: 2 * mb2)?.flags.contains(.noHugePage) == true)
            #expect(mm.vma(containing: gb1)?.flags.contains(.noHugePage) == true)
            #expect(mm.vma(containing: gb1 + 4 * mb2)?.flags.contains(.noHugePage) == false)
            states.append(endState(mm))
        }
        #expect(states[0] == states[1], "\(endStateDifferences(states[0], states[1]).joined(separator: "\n"))")
    }

    /// The pages stay mapped to the same frames after the split.
    @Test func splitKeepsTheFrames() throws {
        let mm = try build()
        guard case .present(.pmd, _, let head) = mm.translate(2 * mb2) else { Issue.record("no THP"); return }
        try SubpageProt.markVMAsNoHuge(mm, 2 * mb2, mb2, walker: .callback)
        guard case .present(.pte, _, let p) = mm.translate(2 * mb2 + 300 * page) else { Issue.record("not split"); return }
        #expect(p == head + 300)
        #expect(try SubpageProt.markVMAsNoHuge(mm, 8 * mb2, mb2) == 0)
    }
    /// The whole user range of the default scenario's first process: both
    /// walkers leave the same end state, with no PMD entry left outside
    /// hugetlb (checked page by page from the translations).
    @Test func defaultScenarioWholeRange() throws {
        var states: [[String]] = []
        for w in WalkerKind.allCases {
            let mm = try ScenarioBuilder.buildDefault().processes[0].addressSpace
            let before = mm.vmas.filter { vma in !vma.isHugetlb && stride(from: vma.start, to: vma.end, by: Int(page)).contains { level(mm, $0) == .pmd } }
            #expect(!before.isEmpty, "the scenario has a THP")
            try SubpageProt.markVMAsNoHuge(mm, 0, mm.geometry.userAddressLimit, walker: w)
            for vma in mm.vmas where !vma.isHugetlb {
                #expect(!stride(from: vma.start, to: vma.end, by: Int(page)).contains { level(mm, $0) == .pmd }, "\(w) \(vma)")
                #expect(vma.flags.contains(.noHugePage))
            }
            states.append(endState(mm))
        }
        #expect(states[0] == states[1], "\(endStateDifferences(states[0], states[1]).joined(separator: "\n"))")
    }
}
