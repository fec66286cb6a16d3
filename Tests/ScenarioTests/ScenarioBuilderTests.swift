import Testing
import MemoryModel
@testable import Scenario

@Suite struct ScenarioBuilderTests {
    @Test func defaultScenarioBuildsRealisticProcesses() throws {
        let built = try ScenarioBuilder.buildDefault()
        let parent = try #require(built.addressSpace(pid: 1000))
        let child = try #require(built.addressSpace(pid: 1001))
        #expect(parent.vmas.count == 18 && child.vmas.count == 18)

        // The heap THP stays PMD-mapped in the parent; the child's write
        // split its PMD and copied only the written page.
        guard case .present(.pmd, _, let thpPFN) = parent.translate(0x5555_55c0_0000) else {
            Issue.record("parent heap THP is not PMD-mapped"); return
        }
        guard case .present(.pte, _, let copied) = child.translate(0x5555_55c0_0000),
              case .present(.pte, _, let shared) = child.translate(0x5555_55c0_1000) else {
            Issue.record("child heap THP is not PTE-mapped"); return
        }
        #expect(copied != thpPFN && shared == thpPFN + 1)
        let thp = try #require(built.memory.folio(containing: thpPFN))
        #expect(thp.entireMapcount == 1 && thp.pageMapcount(1) == 2 && thp.pageMapcount(0) == 1)

        // Swapped-out pages are swap entries in both, with count 2.
        guard case .softLeaf(.pte, _, let swapEntry) = parent.translate(0x7fff_f5c4_0000),
              case .swap(let slot) = swapEntry.leaf else { Issue.record("no swap entry"); return }
        #expect(built.memory.swap.count(Int(slot.offset)) == 2)
        #expect(parent.counterSnapshot.swapEntries == 64 && child.counterSnapshot.swapEntries == 64)

        // Guard marker, hugetlb PMD leaf, PFN map, interleaved mTHP.
        guard case .softLeaf(_, _, let g) = parent.translate(0x7fff_f660_0000) else { Issue.record("no guard"); return }
        #expect(g.leaf == .marker(.guardRegion))
        guard case .present(.pmd, _, let hpfn) = parent.translate(0x7fff_e000_0000) else { Issue.record("no hugetlb"); return }
        #expect(built.memory.folio(containing: hpfn)?.isHugetlb == true)
        guard case .present(.pte, let vraw, let vpfn) = parent.translate(0x7fff_f7fc_0000) else { Issue.record("no vvar"); return }
        #expect(vpfn == 0x1c3a0 && PTE(rawValue: vraw, architecture: .x86_64).isSpecial)
        guard case .present(.pte, _, let mpfn) = parent.translate(0x7fff_f600_0000) else { Issue.record("no mTHP"); return }
        #expect(built.memory.folio(containing: mpfn)?.order == 4)
        // Migrated heap pages live on node 1.
        guard case .present(_, _, let npfn) = parent.translate(0x5555_55e0_0000) else { Issue.record("no page"); return }
        #expect(built.memory.folio(containing: npfn)?.node == 1)
    }

    @Test func refusedOperationNamesItsPath() throws {
        // Validation cannot know that the range holds no PMD leaf.
        let json = """
        {"version":1,"architecture":"x86_64","processes":[{"pid":1,"name":"a",
          "vmas":[{"start":"0x200000","size":"2M","perms":"rw-p","kind":"anon"}],
          "ops":[{"op":"fault","start":"0x200000","size":"4K","write":true},{"op":"split","address":"0x200000"}]}]}
        """
        let doc = try ScenarioDocument.parse(json)
        #expect(throws: ScenarioError.self) { try ScenarioBuilder.build(doc) }
        do {
            _ = try ScenarioBuilder.build(doc)
        } catch {
            #expect(error.path == "processes[0].ops[1]")
            #expect(error.description.contains("not mapped by a PMD leaf"))
        }
    }
}
