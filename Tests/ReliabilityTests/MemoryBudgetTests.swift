import Testing
import Foundation
import MemoryModel
import Scenario

/// A scenario or an operation that would need more memory than the budget
/// is refused before anything is allocated: by the Scenario validator (at
/// parse time, with the op's path) and by the model at run time
/// (`PhysicalMemory`'s budget → `ModelError.outOfMemory`), leaving nothing
/// half-built.
@Suite struct MemoryBudgetTests {
    @Test func validatorRefusesBeforeAnythingIsBuilt() throws {
        let json = #"""
        {"version":1,"architecture":"x86_64","memoryBudget":"16M","processes":[{"pid":1,"name":"big",
          "vmas":[{"start":"0x40000000","size":"1G","perms":"rw-p","kind":"anon","flags":["hugepage"]}],
          "ops":[{"op":"fault","start":"0x40000000","size":"8M","write":true},
                 {"op":"thp","start":"0x40800000","size":"16M"}]}]}
        """#
        do {
            _ = try ScenarioDocument.parse(json)
            Issue.record("a scenario needing 24M under a 16M budget was accepted")
        } catch {
            guard case .budgetExceeded(let path, let needed, let budget) = error else { Issue.record("\(error)"); return }
            #expect(path == "processes[0].ops[1]")
            #expect(needed > budget && budget == 16 << 20)
            #expect(error.description.contains("memoryBudget"))
        }
        // A forked child's pages count too (COW breaks allocate).
        let fork = #"""
        {"version":1,"architecture":"x86_64","memoryBudget":"12M","processes":[
          {"pid":1,"name":"p","vmas":[{"start":"0x40000000","size":"8M","perms":"rw-p","kind":"anon"}],
           "ops":[{"op":"fault","start":"0x40000000","size":"8M","write":true},{"op":"fork","child":2}]},
          {"pid":2,"name":"p","parent":1,"ops":[{"op":"fault","start":"0x40000000","size":"8M","write":true}]}]}
        """#
        #expect(throws: ScenarioError.self) { _ = try ScenarioDocument.parse(fork) }
    }

    /// Every populating operation, over the budget, throws outOfMemory and
    /// leaves counters, tables, folios and entries as they were.
    @Test(arguments: [Geometry.x86_64, .arm64])
    func modelRefusesAtRunTimeWithNothingHalfBuilt(_ g: Geometry) throws {
        let memory = try PhysicalMemory(budgetBytes: 8 << 20, nodes: 1)
        let mm = try AddressSpace(geometry: g, memory: memory)
        let base: UInt64 = 0x4000_0000
        try mm.mmap(start: base, end: base + 64 * mb, access: [.read, .write], extraFlags: [.hugePage])
        let h = try mm.mmap(start: base + 64 * mb, end: base + 96 * mb, access: [.read, .write], kind: .hugetlb(pageSize: 2 << 20, file: nil))
        try mm.fault(base, base + 2 * mb, write: true)      // 2M used of 8M
        let ops: [(String, () throws -> Void)] = [
            ("fault", { try mm.fault(base + 2 * mb, base + 40 * mb, write: true) }),
            ("populateTHP", { try mm.populateTHP(base + 4 * mb, base + 40 * mb) }),
            ("populateLargeFolios", { try mm.populateLargeFolios(base + 4 * mb, base + 40 * mb, order: 4) }),
            ("populateHugetlb", { try mm.populateHugetlb(h.start, h.end) }),
        ]
        for (name, op) in ops {
            let counters = mm.counterSnapshot, tables = memory.tables.liveTables
            let bytes = memory.allocatedBytes, folios = memory.folioCount
            do {
                try op()
                Issue.record("\(name) over the budget succeeded")
            } catch let e as ModelError {
                guard case .outOfMemory(let requested, let budget) = e else { Issue.record("\(name): \(e)"); continue }
                #expect(requested > budget && budget == 8 << 20, "\(name): \(e)")
            }
            #expect(mm.counterSnapshot == counters, "\(name) left counters changed")
            #expect(memory.tables.liveTables == tables, "\(name) left \(memory.tables.liveTables - tables) tables")
            #expect(memory.allocatedBytes == bytes && memory.folioCount == folios, "\(name) left memory allocated")
            for a in stride(from: base + 4 * mb, to: base + 40 * mb, by: Int(mb)) {
                guard case .none = mm.translate(a) else { Issue.record("\(name) mapped \(hx(a))"); break }
            }
        }
        // What fits still works, and the budget is given back on teardown.
        try mm.fault(base + 2 * mb, base + 4 * mb, write: true)
        try mm.tearDown()
        #expect(memory.allocatedBytes == 0)
    }

    /// A scenario whose budget the validator cannot see exceeded (the model's
    /// own tables are not charged) still builds; one the builder's memory
    /// refuses fails with a typed error naming the op.
    @Test func builderReportsTheModelsRefusal() throws {
        var doc = try ScenarioDocument.parse(#"""
        {"version":1,"architecture":"x86_64","memoryBudget":"16M","processes":[{"pid":1,"name":"p",
          "vmas":[{"start":"0x40000000","size":"8M","perms":"rw-p","kind":"anon"}],
          "ops":[{"op":"fault","start":"0x40000000","size":"8M","write":true}]}]}
        """#)
        doc.memoryBudget = 4 << 20     // changed after validation: the model must refuse
        do {
            _ = try ScenarioBuilder.build(doc)
            Issue.record("built 8M under a 4M budget")
        } catch {
            guard case .buildFailed(let path, let reason) = error else { Issue.record("\(error)"); return }
            #expect(path == "processes[0].ops[0]")
            #expect(reason.contains("out of memory"))
        }
    }
}
