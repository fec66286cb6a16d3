import Foundation
import Testing
import Glibc
import MemoryModel
@testable import KernelSnapshot

/// The FORMAT `capture` line, and the rebuild naming a VMA whose smaps the
/// captured kpagecount words contradict.
@Suite("Capture stability")
struct CaptureStabilityTests {
    @Test func captureLineRoundTrips() throws {
        for st in [CaptureStability(stopped: true, stable: true, attempts: 1),
                   CaptureStability(stopped: false, stable: false, attempts: 5)] {
            let f = SnapshotFormat(kernel: "k", pids: [7], capture: st)
            #expect(try SnapshotReader.parseFormat(f.text, path: "FORMAT").capture == st)
        }
        #expect(try SnapshotReader.parseFormat("pagewalk-snapshot 1\nkernel k\npage_size 4096\npids 7\n", path: "FORMAT").capture == nil)
    }

    @Test(arguments: ["stopped stable", "paused stable 1", "stopped steady 1", "stopped stable 0", "stopped stable x", "stopped stable 1 2"])
    func malformedCaptureLineIsTyped(_ value: String) {
        let text = "pagewalk-snapshot 1\nkernel k\npage_size 4096\npids 7\ncapture \(value)\n"
        #expect(throws: SnapshotError.self) {
            do { _ = try SnapshotReader.parseFormat(text, path: "FORMAT") } catch let e as SnapshotError {
                guard case .malformedText(let path, let line, _) = e, path == "FORMAT", line == 5 else {
                    Issue.record("wrong error \(e)"); throw e
                }
                throw e
            }
        }
    }

    /// A copy of the fixture with one private page's kpagecount word raised
    /// from 1 to 2: smaps counted the page private, the altered count makes
    /// it shared. Returns (directory, VMA).
    static func alteredFixture(_ fixture: String) throws -> (String, MapsLine) {
        let dir = TestSupport.tempDirectory("counts-altered") + "/snap"
        try FileManager.default.copyItem(atPath: fixture, toPath: dir)
        let snap = try SnapshotReader.read(directory: dir)
        let p = snap.processes[0]
        for i in p.maps.indices where p.maps[i].name != "[vsyscall]" && (p.smaps[i].kilobytes("Private_Dirty") ?? 0) > 0 {
            for w in p.pagemapWords(vma: i) where w.isPresent {
                guard let pfn = w.pfn, let ri = snap.recordIndex(pfn: pfn), snap.kpageflags[ri].count == 1,
                      !snap.kpageflags[ri].flags.contains(.compoundHead), !snap.kpageflags[ri].flags.contains(.compoundTail)
                else { continue }
                let fd = open(dir + "/kpageflags", O_WRONLY)
                defer { close(fd) }
                var two = UInt64(2).littleEndian
                let countOffset = ri * KPageFlagsRecord.byteSize + 16
                #expect(pwrite(fd, &two, 8, off_t(countOffset)) == 8)
                return (dir, p.maps[i])
            }
        }
        throw SnapshotError.invalidArgument(reason: "the fixture has no private 4 KiB page with kpagecount 1")
    }

    @Test(.enabled(if: TestSupport.haveFixture, "fixture python-idle not found"))
    func unmodifiedFixtureHasNoContradiction() throws {
        let rebuilt = try SnapshotRebuilder.rebuild(SnapshotReader.read(directory: TestSupport.pythonIdle!))
        #expect(rebuilt.report.warnings(.countsContradictSmaps).isEmpty, "\(rebuilt.report)")
    }

    @Test(.enabled(if: TestSupport.haveFixture, "fixture python-idle not found"))
    func alteredCountNamesVMAAndField() throws {
        let (dir, vma) = try Self.alteredFixture(TestSupport.pythonIdle!)
        defer { TestSupport.remove((dir as NSString).deletingLastPathComponent) }
        let range = "VMA 0x\(String(vma.start, radix: 16))-0x\(String(vma.end, radix: 16))"

        let old = try SnapshotRebuilder.rebuild(SnapshotReader.read(directory: dir)).report.warnings(.countsContradictSmaps)
        for field in ["Shared_Clean+Shared_Dirty", "Private_Clean+Private_Dirty"] {
            #expect(old.contains { $0.detail.contains(range) && $0.detail.contains(field) }, "\(field) not named: \(old)")
        }
        #expect(old.allSatisfy { $0.detail.contains(range) && $0.detail.contains("may have been unstable") && $0.example == vma.raw }, "\(old)")

        // The same snapshot, recorded as given up after 5 attempts.
        let formatPath = dir + "/FORMAT"
        var format = try SnapshotReader.parseFormat(String(contentsOfFile: formatPath, encoding: .utf8), path: formatPath)
        format.capture = CaptureStability(stopped: true, stable: false, attempts: 5)
        try format.text.write(toFile: formatPath, atomically: true, encoding: .utf8)
        let unstable = try SnapshotRebuilder.rebuild(SnapshotReader.read(directory: dir)).report.warnings(.countsContradictSmaps)
        #expect(!unstable.isEmpty && unstable.allSatisfy { $0.detail.contains("capture unstable after 5 attempts") }, "\(unstable)")
    }
}
