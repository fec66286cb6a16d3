import Testing
import Foundation
import MemoryModel
import TestKit
import KernelSnapshot

/// Single words of the fixture set to values no kernel writes: each gives a
/// `SnapshotError` naming the file, the byte offset and the field, never a
/// trap or an allocation sized from the input.
@Suite struct SnapshotExtremeValueTests {
    static let fixture = fixtureSnapshot("python-idle")

    /// A copy of the fixture with `edit` applied to the bytes of `file`.
    static func corrupted(_ file: String, _ edit: (inout [UInt8]) -> Void) throws -> String {
        let src = try #require(fixture)
        let dir = temporaryDirectory("pagewalk-extreme")
        try copyTree(src, to: dir)
        let path = dir + "/" + file
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        edit(&bytes)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return dir
    }

    static func storeLE64(_ v: UInt64, _ bytes: inout [UInt8], at offset: Int) {
        for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
    }

    static func rebuildError(_ dir: String) -> SnapshotError? {
        do { _ = try SnapshotRebuilder.rebuild(directory: dir); return nil } catch { return error }
    }

    /// A kpagecount of 2^63 + 5 (and the other extremes) in one record.
    @Test(.enabled(if: fixture != nil, "fixture Tests/Fixtures/snapshots/python-idle is absent"),
          arguments: [UInt64(1) << 63 + 5, UInt64.max, UInt64(Int32.max) + 1])
    func hugeKPageCount(count: UInt64) throws {
        let record = 3, countOffset = record * KPageFlagsRecord.byteSize + 16
        let dir = try Self.corrupted("kpageflags") { Self.storeLE64(count, &$0, at: countOffset) }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let e = try #require(Self.rebuildError(dir))
        guard case .malformedBinary(let path, let offset, let reason) = e else { Issue.record("\(e)"); return }
        #expect(path.hasSuffix("/kpageflags") && offset == countOffset)
        #expect(reason.contains("kpagecount \(count)") && reason.contains("record \(record)"), "\(reason)")
    }

    /// One pagemap word made a swap entry with a huge offset.
    @Test(.enabled(if: fixture != nil, "fixture Tests/Fixtures/snapshots/python-idle is absent"),
          arguments: [UInt64(0x4886_058b_5912_eb60), PagemapBits.swap | PagemapBits.pfnMask & ~PagemapBits.swapTypeMask])
    func hugeSwapOffset(word: UInt64) throws {
        let src = try #require(Self.fixture)
        let pid = try #require(try SnapshotReader.read(directory: src).processes.first?.pid)
        let index = 2
        let dir = try Self.corrupted("proc/\(pid)/pagemap") { Self.storeLE64(word, &$0, at: index * 8) }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let e = try #require(Self.rebuildError(dir))
        guard case .malformedBinary(let path, let offset, let reason) = e else { Issue.record("\(e)"); return }
        #expect(path.hasSuffix("/\(pid)/pagemap") && offset == index * 8)
        #expect(reason.contains("swap offset") && reason.contains("memory budget"), "\(reason)")
    }
}
