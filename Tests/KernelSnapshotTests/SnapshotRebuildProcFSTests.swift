import Foundation
import Testing
import MemoryModel
import ProcFS
@testable import KernelSnapshot

/// Our smaps / smaps_rollup / numa_maps producers run on the rebuilt fixture,
/// compared with what the kernel printed, field by field per VMA. Reports
/// exact-match counts per field; expects the whole text to match.
@Suite("Snapshot rebuild vs ProcFS", .enabled(if: TestSupport.haveFixture, "fixture python-idle not found"))
struct SnapshotRebuildProcFSTests {
    static let fixture = TestSupport.pythonIdle ?? ""

    /// Producer options matching the captured machine (ProtectionKey lines
    /// appear when the kernel has protection keys enabled).
    static func options(_ p: ProcessSnapshot) -> ProcOptions {
        var o = ProcOptions()
        o.protectionKeys = p.smaps.first?["ProtectionKey"] != nil
        return o
    }

    /// Per-field exact-match counts: name → (equal, total).
    struct FieldTally: CustomStringConvertible {
        var counts: [String: (equal: Int, total: Int)] = [:]
        var order: [String] = []
        var mismatches: [String] = []
        mutating func add(_ name: String, _ equal: Bool, _ note: @autoclosure () -> String) {
            if counts[name] == nil { order.append(name); counts[name] = (0, 0) }
            counts[name]!.total += 1
            if equal { counts[name]!.equal += 1 } else if mismatches.count < 12 { mismatches.append(note()) }
        }
        var allEqual: Bool { counts.values.allSatisfy { $0.equal == $0.total } }
        var description: String {
            order.map { "\($0) \(counts[$0]!.equal)/\(counts[$0]!.total)" }.joined(separator: ", ")
        }
    }

    @Test func smapsMatchesTheCapture() throws {
        let snap = try SnapshotReader.read(directory: Self.fixture)
        let rebuilt = try SnapshotRebuilder.rebuild(snap)
        let p = snap.processes[0]
        let text = try Smaps.text(rebuilt.processes[0].addressSpace, options: Self.options(p))
        let ours = try SnapshotReader.parseSmaps(text, path: "model smaps")
        // Every block, the gate VMA [vsyscall] last as the kernel prints it.
        let kernel = p.smaps
        #expect(ours.count == kernel.count)
        #expect(ours.last?.header.raw == kernel.last?.header.raw && kernel.last?.header.name == "[vsyscall]")
        var tally = FieldTally()
        for (a, b) in zip(kernel, ours) {
            tally.add("header", a.header.raw == b.header.raw, "header: '\(a.header.raw)' vs '\(b.header.raw)'")
            for f in a.fields {
                let g = b[f.name]
                tally.add(f.name, g?.line == f.line, "\(a.header.raw.prefix(28)) \(f.name): '\(f.line)' vs '\(g?.line ?? "missing")'")
            }
        }
        print("smaps per-field exact matches over \(kernel.count) VMAs: \(tally)")
        for m in tally.mismatches { print("  smaps differs: \(m)") }
        // Known exception: Pss of pages that uncaptured processes map too.
        // kpagecount is read after smaps, and libc's mapcount moves with every
        // process start and exit, so the PSS share can differ by a few kB
        // (the fixture: libc text 258 vs 254 kB, rodata 33 vs 31 kB).
        for (name, c) in tally.counts where name != "Pss" { #expect(c.equal == c.total, "\(name)") }
        for (a, b) in zip(kernel, ours) where a["Pss"]?.line != b["Pss"]?.line {
            let shared = (a.kilobytes("Shared_Clean") ?? 0) + (a.kilobytes("Shared_Dirty") ?? 0)
            let diff = abs(Int(a.kilobytes("Pss") ?? 0) - Int(b.kilobytes("Pss") ?? 0))
            #expect(shared > 0 && diff * 4 < Int(shared), "\(a.header.raw): Pss differs by \(diff) kB")
        }
    }

    @Test func smapsRollupMatchesTheCapture() throws {
        let snap = try SnapshotReader.read(directory: Self.fixture)
        let rebuilt = try SnapshotRebuilder.rebuild(snap)
        let p = snap.processes[0]
        let captured = try #require(p.smapsRollup)
        let text = try SmapsRollup.text(rebuilt.processes[0].addressSpace, options: Self.options(p))
        let ours = try SnapshotReader.parseSmapsRollup(text, path: "model smaps_rollup")
        var tally = FieldTally()
        tally.add("header", ours.header.raw == captured.header.raw, "'\(captured.header.raw)' vs '\(ours.header.raw)'")
        for f in captured.fields {
            tally.add(f.name, ours[f.name]?.line == f.line, "'\(f.line)' vs '\(ours[f.name]?.line ?? "missing")'")
        }
        print("smaps_rollup exact matches: \(tally)")
        for m in tally.mismatches { print("  smaps_rollup differs: \(m)") }
        // Pss and Pss_File carry the smaps exception above (externally shared pages).
        for (name, c) in tally.counts where name != "Pss" && name != "Pss_File" { #expect(c.equal == c.total, "\(name)") }
        let dp = abs(Int(captured.kilobytes("Pss") ?? 0) - Int(ours.kilobytes("Pss") ?? 0))
        #expect(dp * 4 < Int(captured.kilobytes("Shared_Clean") ?? 0))
    }

    @Test func numaMapsMatchesTheCapture() throws {
        let snap = try SnapshotReader.read(directory: Self.fixture)
        let rebuilt = try SnapshotRebuilder.rebuild(snap)
        let p = snap.processes[0]
        let text = try NumaMaps.text(rebuilt.processes[0].addressSpace, options: Self.options(p))
        let ours = try SnapshotReader.parseNumaMaps(text, path: "model numa_maps")
        #expect(ours.count == p.numaMaps.count)
        var tally = FieldTally()
        var lines = 0
        for (a, b) in zip(p.numaMaps, ours) {
            if a.raw == b.raw { lines += 1 }
            tally.add("policy", a.policy == b.policy && a.start == b.start, "\(a.raw) vs \(b.raw)")
            tally.add("file", a.file == b.file && a.isHeap == b.isHeap && a.isStack == b.isStack && a.isHuge == b.isHuge,
                      "\(a.raw) vs \(b.raw)")
            let keys = Set(a.fields.map(\.key)).union(b.fields.map(\.key))
            for k in keys.sorted() {
                let x = a.fields.first { $0.key == k }?.value, y = b.fields.first { $0.key == k }?.value
                tally.add(k, x == y, "\(a.raw) | \(b.raw)")
            }
        }
        print("numa_maps: \(lines)/\(p.numaMaps.count) lines equal; per field: \(tally)")
        for m in tally.mismatches { print("  numa_maps differs: \(m)") }
        #expect(lines == p.numaMaps.count)
    }
}
