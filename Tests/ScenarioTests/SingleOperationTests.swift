import Testing
import MemoryModel
import PageWalk
@testable import Scenario

/// One op read on its own (`ptwalk --apply`) and the ops the walker users
/// added: mlock2_onfault and the clear_refs types 2, 3 and 5.
@Suite struct SingleOperationTests {
    func parse(_ text: String) throws -> OperationSpec {
        try OperationSpec.parse(text, architecture: .x86_64, levels: 4, numaNodes: 1)
    }

    @Test func readsOpsAndNamesTheFieldOfABadOne() throws {
        #expect(try parse(#"{"op":"mlock2_onfault","start":"0x200000","size":8192}"#)
                == .mlock2OnFault(AddressRange(start: 0x200000, size: 8192)))
        #expect(try parse(#"{"op":"clear_refs","kind":"anon"}"#) == .clearRefs(.anonymous))
        #expect(try parse(#"{"op":"clear_refs","kind":"file"}"#) == .clearRefs(.file))
        #expect(try parse(#"{"op":"clear_refs","kind":"hiwater_rss"}"#) == .clearRefs(.hiwaterRSS))
        #expect(throws: ScenarioError.self) { try parse(#"{"op":"mlock2_onfault","start":"0x200001","size":8192}"#) }
        do { _ = try parse(#"{"op":"clear_refs"}"#); Issue.record("accepted a clear_refs without kind") } catch {
            #expect("\(error)".contains("op.kind"))
        }
    }

    /// mlock2_onfault sets `lo` and `lf` and populates nothing; a later
    /// fault maps mlocked pages.
    @Test func mlock2OnFaultInAScenario() throws {
        let doc = try ScenarioDocument.parse(#"""
        {"version":1,"architecture":"x86_64","processes":[{"pid":1,"name":"p",
          "vmas":[{"start":"0x40000000","size":65536,"kind":"anon","perms":"rw-p"}],
          "ops":[{"op":"mlock2_onfault","start":"0x40000000","size":65536},
                 {"op":"fault","start":"0x40000000","size":8192,"write":true}]}]}
        """#)
        let built = try ScenarioBuilder.build(doc)
        let mm = try #require(built.processes.first?.addressSpace)
        let vma = try #require(mm.vma(containing: 0x4000_0000))
        #expect(vma.flags.contains(.locked) && vma.flags.contains(.lockOnFault))
        #expect(mm.counterSnapshot.anon == 2)
        guard case .present(_, _, let pfn) = mm.translate(0x4000_0000), let f = mm.memory.folio(containing: pfn) else {
            Issue.record("not mapped"); return
        }
        #expect(f.test(.mlocked) && f.test(.unevictable))
    }
}
