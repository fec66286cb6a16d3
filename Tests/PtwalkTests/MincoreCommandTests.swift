import Foundation
import Testing
import KernelSnapshot
import MemoryModel
import PageWalk
import Scenario

/// `ptwalk mincore`: one line per VMA, `START-END ` then one digit per
/// page, equal to `mincore()` run in-process on both walkers.
@Suite("ptwalk mincore", .enabled(if: Ptwalk.available, "ptwalk executable not found next to the test bundle"))
struct MincoreCommandTests {
    static let built = try! ScenarioBuilder.buildDefault()

    /// The lines ptwalk must print for `mm`, `[start, end)` of each VMA
    /// clipped to `range`.
    static func expected(_ mm: AddressSpace, _ range: Range<UInt64>? = nil,
                         walker: WalkerKind = .range) throws -> [String] {
        let r = range ?? 0..<mm.geometry.userAddressLimit
        return try mm.vmas(intersecting: r.lowerBound, r.upperBound).map { vma in
            let s = max(vma.start, r.lowerBound), e = min(vma.end, r.upperBound)
            let v = try mincore(mm, s, e - s, walker: walker)
            return String(s, radix: 16) + "-" + String(e, radix: 16) + " " + String(v.map { Character(String($0)) })
        }
    }

    @Test(arguments: [1000, 1001])
    func everyVMAOfTheDefaultScenario(pid: Int) throws {
        let mm = Self.built.addressSpace(pid: Int32(pid))!
        let r = try Ptwalk.run(["mincore", "--pid", String(pid)])
        #expect(r.status == 0 && r.stderr.isEmpty, "\(r.command): \(r.stderr)")
        let lines = r.lines.map(String.init)
        #expect(lines == (try Self.expected(mm)))
        #expect(lines == (try Self.expected(mm, walker: .callback)))
        // One line per VMA (the gate VMA, above user space, has none), in
        // the maps form: lowercase hex without 0x, digits 0 and 1, one per page.
        #expect(lines.count == mm.vmas.count)
        for (line, vma) in zip(lines, mm.vmas) {
            let parts = line.split(separator: " ")
            #expect(parts.count == 2 && parts[0] == "\(String(vma.start, radix: 16))-\(String(vma.end, radix: 16))")
            #expect(parts.count == 2 && parts[1].count == Int(vma.size >> 12) && parts[1].allSatisfy { $0 == "0" || $0 == "1" })
        }
        #expect(lines.contains { $0.contains("1") } && lines.contains { $0.contains("0") })
        let callback = try Ptwalk.run(["mincore", "--pid", String(pid), "--walker", "callback"])
        #expect(callback.status == 0 && callback.stdout == r.stdout)
    }

    /// `--range` keeps the VMAs meeting it, clipped; a range in a gap
    /// prints nothing; a range above user space is refused.
    @Test func rangeClipsTheVMAs() throws {
        let mm = Self.built.addressSpace(pid: 1000)!
        let heap = try #require(mm.vmas.first { $0.name == "[heap]" })
        let index = try #require(mm.vmas.firstIndex { $0 === heap })
        let next = mm.vmas[index + 1]
        let range = (heap.end - 0x3000)..<(next.start + 0x2000)
        let r = try Ptwalk.run(["mincore", "--range", "0x\(String(range.lowerBound, radix: 16))-0x\(String(range.upperBound, radix: 16))"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.lines.map(String.init) == (try Self.expected(mm, range)))
        #expect(r.lines.count == 2 && r.lines[0].hasPrefix("\(String(heap.end - 0x3000, radix: 16))-\(String(heap.end, radix: 16)) "))
        #expect(r.lines.count == 2 && r.lines[1].split(separator: " ")[1].count == 2)

        let gap = try Ptwalk.run(["mincore", "--range", "0x\(String(heap.end, radix: 16))-0x\(String(heap.end + 0x1000, radix: 16))"])
        #expect(gap.status == 0 && gap.stdout.isEmpty && gap.stderr.isEmpty)
        let above = try Ptwalk.run(["mincore", "--range", "0x7ffffffff000-0x800000001000"])
        #expect(above.status == 1 && above.stdout.isEmpty && above.stderr.contains("ends above the user address limit"))
        let malformed = try Ptwalk.run(["mincore", "--range", "0x1001-0x2000"])
        #expect(malformed.status == 2 && malformed.stderr.contains("both ends must be page aligned"))
    }

    @Test(.enabled(if: Ptwalk.pythonIdle != nil, "fixture Tests/Fixtures/snapshots/python-idle not found"))
    func fixtureSnapshot() throws {
        let dir = Ptwalk.pythonIdle!
        let rebuilt = try SnapshotRebuilder.rebuild(try SnapshotReader.read(directory: dir))
        let mm = rebuilt.processes[0].addressSpace
        let r = try Ptwalk.run(["--snapshot", dir, "--quiet", "mincore"])
        #expect(r.status == 0 && r.stderr.isEmpty, "\(r.stderr)")
        #expect(r.lines.map(String.init) == (try Self.expected(mm)))
        #expect(r.lines.count == mm.vmas.count)
    }
}
