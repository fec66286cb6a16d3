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

    /// The document's vsyscall mode gives every x86_64 process (forked
    /// ones too: dup_mm() copies the mm's context) the kernel's gate VMA:
    /// one page at 0xffffffffff600000, `--xp` (VM_EXEC) under xonly, `r-xp`
    /// (VM_READ | VM_EXEC) under emulate, none under none; outside the mm's
    /// VMAs, after them in maps order.
    @Test(arguments: [("xonly", "--xp"), ("emulate", "r-xp"), ("none", nil)] as [(String, String?)])
    func gateVMAFollowsTheVsyscallMode(_ mode: String, _ perms: String?) throws {
        let json = """
        {"version":1,"architecture":"x86_64","vsyscall":"\(mode)","processes":[
          {"pid":1,"name":"a","vmas":[{"start":"0x200000","size":"2M","perms":"rw-p","kind":"anon"}],
           "ops":[{"op":"fork","child":2}]},
          {"pid":2,"name":"b","parent":1}]}
        """
        let built = try ScenarioBuilder.build(try ScenarioDocument.parse(json))
        for pid: Int32 in [1, 2] {
            let mm = try #require(built.addressSpace(pid: pid))
            #expect(mm.vmas.count == 1)
            guard let perms else {
                #expect(mm.gateVMA == nil && mm.mapsVMAs.count == 1)
                continue
            }
            let gate = try #require(mm.gateVMA)
            #expect(gate.start == 0xffff_ffff_ff60_0000 && gate.end == 0xffff_ffff_ff60_1000)
            #expect(gate.permissions == perms && gate.name == "[vsyscall]")
            #expect(gate.flags == (perms == "--xp" ? [.exec] : [.read, .exec]))
            #expect(mm.mapsVMAs.map(\.start) == [0x200000, 0xffff_ffff_ff60_0000])
        }
        // arm64 builds no gate VMA (the document default there is none).
        let armJSON = json.replacingOccurrences(of: "x86_64", with: "arm64")
            .replacingOccurrences(of: "\"vsyscall\":\"\(mode)\",", with: "")
        let arm = try ScenarioBuilder.build(try ScenarioDocument.parse(armJSON))
        #expect(arm.addressSpace(pid: 1)?.gateVMA == nil)
        // A document made in code skips the decoder: the model refuses a
        // gate VMA on arm64, and the build names the process.
        let made = ScenarioDocument(architecture: .arm64, vsyscall: .xonly, processes: [ProcessSpec(pid: 1, name: "a")])
        #expect(throws: ScenarioError.self) { try ScenarioBuilder.build(made) }
        do { _ = try ScenarioBuilder.build(made) } catch {
            #expect(error.path == "processes[0]" && error.description.contains("arm64 has no gate VMA"), "\(error)")
        }
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
