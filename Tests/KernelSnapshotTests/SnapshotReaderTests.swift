import Foundation
import TestKit
import Testing
@testable import KernelSnapshot

@Suite("Reading the python-idle fixture")
struct FixtureReaderTests {
    @Test(.enabled(if: TestSupport.haveFixture, "fixture Tests/Fixtures/snapshots/python-idle is absent"))
    func parsesFormatAndCounts() throws {
        let dir = try #require(TestSupport.pythonIdle)
        let snap = try SnapshotReader.read(directory: dir)
        #expect(snap.format.version == 1)
        #expect(snap.format.pageSize == 4096)
        #expect(snap.format.kernel.hasPrefix("6.18"))
        #expect(snap.format.pids == [4196])
        #expect(snap.processes.count == 1)
        #expect(snap.meminfo?.hasPrefix("MemTotal:") == true)

        let p = snap.processes[0]
        let mapsLines = p.mapsText.split(separator: "\n").count
        #expect(p.maps.count == mapsLines)
        #expect(p.smaps.count == mapsLines)
        // numa_maps has no line for the [vsyscall] gate area.
        #expect(p.numaMaps.count == mapsLines - p.maps.filter { $0.name == "[vsyscall]" }.count)
        let pages = p.maps.reduce(0) { $0 + $1.pageCount }
        #expect(p.pagemap.count == pages)
        #expect(p.vmaPageRanges.count == p.maps.count)
        #expect(p.vmaPageRanges.last?.upperBound == pages)
        let size = try #require(TestSupport.fileSize(dir + "/proc/4196/pagemap"))
        #expect(size == pages * 8)

        // kpageflags: sorted strictly, and covering every PFN pagemap maps.
        #expect(!snap.kpageflags.isEmpty)
        #expect(zip(snap.kpageflags, snap.kpageflags.dropFirst()).allSatisfy { $0.pfn < $1.pfn })
        for w in p.pagemap {
            if let pfn = w.pfn { #expect(snap.record(pfn: pfn) != nil, "pfn \(pfn) has no record") }
        }
        let mapped = Set(p.pagemap.compactMap { $0.pfn })
        #expect(mapped.count <= snap.kpageflags.count)

        // Status and cmdline.
        #expect(p.status("Name") == "python3")
        #expect(p.cmdline.first == "/opt/python-3.11.7/bin/python3")
        #expect(p.cmdline.count == 3)
    }

    @Test(.enabled(if: TestSupport.haveFixture, "fixture Tests/Fixtures/snapshots/python-idle is absent"))
    func parsesMapsSmapsNumaMaps() throws {
        let dir = try #require(TestSupport.pythonIdle)
        let p = try SnapshotReader.readProcess(directory: dir + "/proc/4196", pid: 4196)

        let first = p.maps[0]
        #expect(first.start == 0x55d8cd787000)
        #expect(first.end == 0x55d8cd788000)
        #expect(first.perms == "r--p")
        #expect(first.devMajor == 0xfe && first.devMinor == 0)
        #expect(first.inode == 20504)
        #expect(first.name == "/opt/python-3.11.7/bin/python3.11")
        #expect(first.isReadable && !first.isWritable && !first.isExecutable && !first.isShared)

        let heap = try #require(p.maps.first { $0.name == "[heap]" })
        #expect(heap.inode == 0 && heap.offset == 0)
        let anon = try #require(p.maps.first { $0.start == 0x7f4d06555000 })
        #expect(anon.name == "")
        #expect(anon.raw.hasSuffix(" 0 "))
        #expect(p.maps.last?.name == "[vsyscall]")
        #expect(p.maps.contains { $0.isShared })

        // smaps: fields in order, original text kept.
        let b = p.smaps[0]
        #expect(b.header == first)
        #expect(b.fields.first?.name == "Size")
        #expect(b.fields.first?.line == "Size:                  4 kB")
        #expect(b.kilobytes("Rss") == 4)
        #expect(b.kernelPageSizeKB == 4 && b.mmuPageSizeKB == 4)
        #expect(b.thpEligible == 0)
        #expect(b.protectionKey == 0)
        #expect(b.vmFlags == ["rd", "mr", "mw", "me"])
        #expect(b.fields.map(\.name).suffix(3) == ["THPeligible", "ProtectionKey", "VmFlags"])
        #expect(p.smaps.map(\.text).joined() == p.smapsText)

        // The 24 MiB bytearray's VMA.
        let i = try #require(p.vmaIndex(containing: 0x7f4d06555000))
        #expect(p.smaps[i].kilobytes("Anonymous") == 8292 * 4)
        let words = p.pagemapWords(vma: i)
        #expect(words.count == anon.pageCount)
        #expect(words.filter(\.isPresent).count == 8292)

        // numa_maps.
        let n0 = p.numaMaps[0]
        #expect(n0.start == first.start)
        #expect(n0.policy == "default")
        #expect(n0.file == "/opt/python-3.11.7/bin/python3.11")
        #expect(n0.mapped == 1 && n0.kernelPageSizeKB == 4)
        #expect(n0.nodes.count == 1 && n0.nodes[0].node == 0 && n0.nodes[0].pages == 1)
        let nheap = try #require(p.numaMaps.first { $0.isHeap })
        #expect(nheap.anon == 386 && nheap.dirty == 386 && nheap.active == 0)
        #expect(zip(p.numaMaps, p.maps).allSatisfy { $0.start == $1.start })

        // smaps_rollup.
        let r = try #require(p.smapsRollup)
        #expect(r.header.name == "[rollup]")
        #expect(r.header.start == p.maps.first?.start)
        #expect(r.kilobytes("Rss") == 45944)
        #expect(r.fields.map(\.name).prefix(6) == ["Rss", "Pss", "Pss_Dirty", "Pss_Anon", "Pss_File", "Pss_Shmem"])
        // Rollup Rss equals the sum of smaps Rss.
        #expect(p.smaps.reduce(0) { $0 + ($1.kilobytes("Rss") ?? 0) } == 45944)
    }

    @Test(.enabled(if: TestSupport.haveFixture, "fixture Tests/Fixtures/snapshots/python-idle is absent"))
    func fixtureFlagsDecode() throws {
        let dir = try #require(TestSupport.pythonIdle)
        let snap = try SnapshotReader.read(directory: dir)
        let p = snap.processes[0]
        // Private anon pages: ANON|SWAPBACKED and exclusive in pagemap.
        let i = try #require(p.vmaIndex(containing: 0x7f4d06555000))
        for w in p.pagemapWords(vma: i) where w.isPresent {
            #expect(w.isExclusive)
            #expect(!w.isFileOrSharedAnon)
            let rec = try #require(snap.record(pfn: w.pfn!))
            #expect(rec.flags.contains([.anon, .swapBacked, .mmap]))
        }
        // The zero page appears (with kpagecount 0 here).
        #expect(snap.kpageflags.contains { $0.flags.contains(.zeroPage) })
    }
}

@Suite("Corrupt snapshots give typed errors")
struct CorruptSnapshotTests {
    func withCopy(_ body: (String) throws -> Void) throws {
        let src = try #require(TestSupport.pythonIdle)
        let tmp = TestSupport.tempDirectory("corrupt")
        defer { TestSupport.remove(tmp) }
        try copyTree(src, to: tmp + "/snap")
        try body(tmp + "/snap")
    }

    @Test(.enabled(if: TestSupport.haveFixture, "fixture Tests/Fixtures/snapshots/python-idle is absent"))
    func truncatedPagemap() throws {
        try withCopy { dir in
            let path = dir + "/proc/4196/pagemap"
            let size = try #require(TestSupport.fileSize(path))
            #expect(truncate(path, off_t(size - 100)) == 0)
            let e = #expect(throws: SnapshotError.self) { try SnapshotReader.read(directory: dir) }
            guard case .malformedBinary(let p, let offset, let reason)? = e else {
                Issue.record("wrong error \(String(describing: e))"); return
            }
            #expect(p == path)
            #expect(offset == size - 100)
            #expect(reason.contains("short"))
            #expect(e!.description.contains(path) && e!.description.contains("\(size - 100)"))
        }
    }

    @Test(.enabled(if: TestSupport.haveFixture, "fixture Tests/Fixtures/snapshots/python-idle is absent"))
    func longPagemap() throws {
        try withCopy { dir in
            let path = dir + "/proc/4196/pagemap"
            let size = try #require(TestSupport.fileSize(path))
            try TestSupport.append(path, [UInt8](repeating: 0, count: 8))
            let e = #expect(throws: SnapshotError.self) { try SnapshotReader.read(directory: dir) }
            #expect(e?.path == path)
            #expect(e?.offset == size)
        }
    }

    @Test(.enabled(if: TestSupport.haveFixture, "fixture Tests/Fixtures/snapshots/python-idle is absent"))
    func kpageflagsNotMultipleOf24() throws {
        try withCopy { dir in
            let path = dir + "/kpageflags"
            let size = try #require(TestSupport.fileSize(path))
            try TestSupport.append(path, [1, 2, 3, 4, 5])
            let e = #expect(throws: SnapshotError.self) { try SnapshotReader.read(directory: dir) }
            guard case .malformedBinary(let p, let offset, let reason)? = e else {
                Issue.record("wrong error \(String(describing: e))"); return
            }
            #expect(p == path)
            #expect(offset == size)
            #expect(reason.contains("multiple of 24"))
        }
    }

    @Test(.enabled(if: TestSupport.haveFixture, "fixture Tests/Fixtures/snapshots/python-idle is absent"))
    func kpageflagsUnsorted() throws {
        try withCopy { dir in
            let path = dir + "/kpageflags"
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            // Swap records 10 and 11.
            let a = Array(bytes[240..<264]), b = Array(bytes[264..<288])
            bytes.replaceSubrange(240..<264, with: b)
            bytes.replaceSubrange(264..<288, with: a)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let e = #expect(throws: SnapshotError.self) { try SnapshotReader.read(directory: dir) }
            guard case .malformedBinary(let p, let offset, let reason)? = e else {
                Issue.record("wrong error \(String(describing: e))"); return
            }
            #expect(p == path)
            #expect(offset == 11 * 24)
            #expect(reason.contains("ascending"))
        }
    }

    @Test(.enabled(if: TestSupport.haveFixture, "fixture Tests/Fixtures/snapshots/python-idle is absent"))
    func duplicatePFNIsUnsorted() throws {
        let rec: [UInt64] = [5, 0, 1, 5, 0, 1]
        let bytes = rec.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }
        #expect(throws: SnapshotError.malformedBinary(path: "k", offset: 24,
            reason: "record 1 has pfn 0x5, not above the previous record's 0x5 (records must be sorted strictly ascending by pfn)")) {
            try SnapshotReader.parseKPageFlags(bytes, path: "k")
        }
    }

    @Test(.enabled(if: TestSupport.haveFixture, "fixture Tests/Fixtures/snapshots/python-idle is absent"))
    func mapsLineRemoved() throws {
        try withCopy { dir in
            let mapsPath = dir + "/proc/4196/maps"
            var lines = try String(contentsOfFile: mapsPath, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            lines.remove(at: 6) // the 7th line
            try lines.joined(separator: "\n").write(toFile: mapsPath, atomically: false, encoding: .utf8)
            let e = #expect(throws: SnapshotError.self) { try SnapshotReader.read(directory: dir) }
            guard case .mapsSmapsMismatch(let m, let s, let mapsLine, let smapsLine, _)? = e else {
                Issue.record("wrong error \(String(describing: e))"); return
            }
            #expect(m == mapsPath)
            #expect(s == dir + "/proc/4196/smaps")
            #expect(mapsLine == 7)
            #expect(smapsLine == 6 * 26 + 1) // 26 lines per smaps block here
            #expect(e!.description.contains(m) && e!.description.contains(s))
        }
    }

    @Test(.enabled(if: TestSupport.haveFixture, "fixture Tests/Fixtures/snapshots/python-idle is absent"))
    func smapsGarbageLine() throws {
        try withCopy { dir in
            let path = dir + "/proc/4196/smaps"
            var lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            lines[3] = "this is not smaps"
            try lines.joined(separator: "\n").write(toFile: path, atomically: false, encoding: .utf8)
            let e = #expect(throws: SnapshotError.self) { try SnapshotReader.read(directory: dir) }
            #expect(e?.path == path)
            #expect(e?.line == 4)
        }
    }

    @Test(.enabled(if: TestSupport.haveFixture, "fixture Tests/Fixtures/snapshots/python-idle is absent"))
    func missingFilesAndBadFormat() throws {
        try withCopy { dir in
            unlink(dir + "/proc/4196/smaps")
            let e = #expect(throws: SnapshotError.self) { try SnapshotReader.read(directory: dir) }
            #expect(e == .fileMissing(path: dir + "/proc/4196/smaps"))

            try "pagewalk-snapshot 2\nkernel x\npage_size 4096\npids 1\n".write(toFile: dir + "/FORMAT", atomically: false, encoding: .utf8)
            let e2 = #expect(throws: SnapshotError.self) { try SnapshotReader.read(directory: dir) }
            guard case .unsupported(let p, _)? = e2 else { Issue.record("wrong error \(String(describing: e2))"); return }
            #expect(p == dir + "/FORMAT")

            try "pagewalk-snapshot 1\nkernel x\npage_size 4096\npids 1 x\n".write(toFile: dir + "/FORMAT", atomically: false, encoding: .utf8)
            let e3 = #expect(throws: SnapshotError.self) { try SnapshotReader.read(directory: dir) }
            #expect(e3?.line == 4)
        }
    }
}

@Suite("Word decoding")
struct WordTests {
    @Test func pagemapBits() {
        let present = PagemapWord(1 << 63 | 1 << 56 | 1 << 55 | 0x12345)
        #expect(present.isPresent && present.isExclusive && present.isSoftDirty)
        #expect(present.pfn == 0x12345)
        #expect(present.swapType == nil)
        let swapped = PagemapWord(1 << 62 | 1 << 57 | (0xabc << 5) | 3)
        #expect(swapped.isSwapped && swapped.isUffdWP && !swapped.isPresent)
        #expect(swapped.swapType == 3 && swapped.swapOffset == 0xabc)
        #expect(swapped.pfn == nil)
        let guardMarker = PagemapWord(1 << 58)
        #expect(guardMarker.isGuard && !guardMarker.isPresent)
        let file = PagemapWord(1 << 63 | 1 << 61 | 7)
        #expect(file.isFileOrSharedAnon && file.pfn == 7)
        #expect(PagemapWord(0).isEmpty)
    }

    @Test func kpageflagsBits() {
        let f = KPageFlags(rawValue: 1 << 15 | 1 << 22 | 1 << 12 | 1 << 33 | 1 << 34)
        #expect(f.contains([.compoundHead, .thp, .anon, .mlocked, .mappedToDisk]))
        #expect(f.isCompound)
        #expect(f.description == "ANON|COMPOUND_HEAD|THP|MLOCKED|MAPPEDTODISK")
        #expect(KPageFlags.softDirty.rawValue == 1 << 40 && KPageFlags.arch2.rawValue == 1 << 41)
        #expect(KPageFlags.zeroPage.rawValue == 1 << 24 && KPageFlags.pgtable.rawValue == 1 << 26)
    }

    @Test func mapsLineShapes() throws {
        let l = try #require(SnapshotReader.parseMapsLine(
            "7f0000000000-7f0000200000 rw-s 00000000 00:01 1234                       /dev/zero (deleted)"))
        #expect(l.name == "/dev/zero (deleted)" && l.isShared && l.devMinor == 1 && l.pageCount == 512)
        let v = try #require(SnapshotReader.parseMapsLine(
            "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]"))
        #expect(v.start == 0xffffffffff600000 && v.isExecutable && !v.isReadable)
        #expect(SnapshotReader.parseMapsLine("Size:  4 kB") == nil)
        #expect(SnapshotReader.parseMapsLine("1000-2000 rw-p") == nil)
    }

    @Test func numaMapsShapes() throws {
        let text = """
        7f0000000000 weighted interleave:0-1 file=/tmp/a\\040b\\012c anon=2 dirty=2 mapmax=3 N0=1 N1=1 kernelpagesize_kB=4
        7f0000200000 bind:0 huge anon=1 dirty=1 N0=1 kernelpagesize_kB=2048
        7ffd00000000 default stack anon=3 dirty=3 N0=3 kernelpagesize_kB=4

        """
        let lines = try SnapshotReader.parseNumaMaps(text, path: "numa_maps")
        #expect(lines.count == 3)
        #expect(lines[0].policy == "weighted interleave:0-1")
        #expect(lines[0].file == "/tmp/a b\nc")
        #expect(lines[0].mapmax == 3 && lines[0].nodes.count == 2)
        #expect(lines[1].isHuge && lines[1].kernelPageSizeKB == 2048 && lines[1].policy == "bind:0")
        #expect(lines[2].isStack && lines[2].anon == 3)
    }
}
