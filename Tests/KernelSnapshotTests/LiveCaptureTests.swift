import LiveKernel
import Foundation
import Glibc
import Testing
@testable import KernelSnapshot

/// Live-kernel tests: they create mappings in this process, capture it and
/// read the capture back. Serialized: they change the process's own address
/// space and global knobs (mTHP, hugetlb pool, swap).
@Suite("Live capture", .serialized,
       .enabled(if: TestSupport.isRoot && TestSupport.canReadKPageFlags, "needs root to read /proc/kpageflags and PFNs"))
struct LiveCaptureTests {
    /// Every compound page in the records is complete: each tail's
    /// predecessor is recorded, and after the last recorded tail the kernel
    /// has no further tail.
    func checkCompoundExtents(_ snap: Snapshot) throws {
        let recs = snap.kpageflags
        for (i, r) in recs.enumerated() where r.flags.contains(.compoundTail) {
            #expect(i > 0 && recs[i - 1].pfn == r.pfn - 1 && recs[i - 1].flags.isCompound,
                    "tail pfn 0x\(String(r.pfn, radix: 16)) without its predecessor")
        }
        for (i, r) in recs.enumerated() where r.flags.isCompound {
            let nextIsTail = i + 1 < recs.count && recs[i + 1].pfn == r.pfn + 1 && recs[i + 1].flags.contains(.compoundTail)
            if !nextIsTail {
                // The last page of its compound page: the kernel's next page is not a tail.
                let next = try LiveMappings.physicalPage(pfn: r.pfn + 1)
                #expect(!next.flags.contains(.compoundTail) || next.flags.contains(.compoundHead),
                        "compound page cut short after pfn 0x\(String(r.pfn, radix: 16))")
            }
        }
    }

    /// Indices of the folio that `pfn` belongs to, from the records.
    func extent(of pfn: UInt64, in snap: Snapshot) -> ClosedRange<UInt64>? {
        guard var first = snap.record(pfn: pfn), first.flags.isCompound else { return nil }
        while !first.flags.contains(.compoundHead) {
            guard let prev = snap.record(pfn: first.pfn - 1) else { return nil }
            first = prev
        }
        var last = first.pfn
        while let n = snap.record(pfn: last + 1), n.flags.contains(.compoundTail), !n.flags.contains(.compoundHead) {
            last += 1
        }
        return first.pfn...last
    }

    @Test func selfCaptureRoundTrips() throws {
        let live = LiveMappings()
        defer { live.tearDown() }
        if let why = try HostFacts.pinTHPBaselineIfPossible(live) { try Test.cancel(Comment(rawValue: why)) }
        let anon = try live.anonymous(size: 1 << 20)
        live.touch(anon, write: true)

        // One PMD THP, if madvise THP works here.
        let thp = try live.anonymousPMDAligned(size: LiveMappings.pmdSize)
        var thpWorks = false
        do {
            try live.madvise(thp, .hugePage)
            live.touch(thp, write: true)
            let w = try LiveMappings.selfPagemap(thp)
            if let pfn = w[0].pfn, try LiveMappings.physicalPage(pfn: pfn).flags.contains([.thp, .compoundHead]) {
                thpWorks = true
            }
        } catch let e as LiveMappingError {
            print("THP unavailable: \(e)")
            live.touch(thp, write: true)
        }

        let dir = TestSupport.tempDirectory("self") + "/snap"
        defer { TestSupport.remove((dir as NSString).deletingLastPathComponent) }
        let start = Date()
        let result = try SnapshotCapture.captureSelf(to: dir)
        print("captured self: \(result.vmaCounts[0]) VMAs, \(result.pagemapWords[0]) pagemap words, \(result.kpageflagsRecords) kpageflags records (\(result.mappedPFNs) mapped), \(result.attempts[0]) attempt(s), \(Date().timeIntervalSince(start))s, THP \(thpWorks)")

        let snap = try SnapshotReader.read(directory: dir)
        #expect(snap.format.pids == [getpid()])
        #expect(snap.format.kernel == RawIO.kernelRelease())
        #expect(snap.kpageflags.count == result.kpageflagsRecords)
        let p = try #require(snap.processes.first)
        #expect(p.maps.count == result.vmaCounts[0])
        #expect(p.pagemap.count == result.pagemapWords[0])
        #expect(p.pagemap.count == p.maps.reduce(0) { $0 + $1.pageCount })
        #expect(p.smapsRollup?.header.name == "[rollup]")
        #expect(p.cmdline.isEmpty == false)
        #expect(p.status("Pid") == String(getpid()))

        // The 1 MiB mapping: every page present and exclusive, PFN recorded as anon.
        let vi = try #require(p.vmaIndex(containing: anon.start))
        #expect(p.maps[vi].end >= anon.end)
        #expect((p.smaps[vi].kilobytes("Rss") ?? 0) >= 1024)
        for page in 0..<anon.pageCount {
            let w = try #require(p.pagemapWord(at: anon.start + UInt64(page * 4096)))
            #expect(w.isPresent && w.isExclusive && !w.isFileOrSharedAnon, "page \(page): \(w)")
            if let pfn = w.pfn {
                let r = try #require(snap.record(pfn: pfn))
                #expect(r.flags.contains(.anon))
                #expect(r.count >= 1)
            }
        }

        if thpWorks {
            let ti = try #require(p.vmaIndex(containing: thp.start))
            #expect((p.smaps[ti].kilobytes("AnonHugePages") ?? 0) >= 2048)
            #expect(p.smaps[ti].hasVMFlag("hg"))
            let words = (0..<512).map { p.pagemapWord(at: thp.start + UInt64($0 * 4096))! }
            #expect(words.allSatisfy { $0.isPresent })
            let head = try #require(words[0].pfn)
            #expect(head % 512 == 0)
            #expect(words.enumerated().allSatisfy { $0.element.pfn == head + UInt64($0.offset) })
            #expect(extent(of: head, in: snap) == head...(head + 511))
            #expect(snap.record(pfn: head)?.flags.contains([.thp, .compoundHead, .anon]) == true)
            #expect(snap.record(pfn: head + 511)?.flags.contains([.thp, .compoundTail]) == true)
        }
        try checkCompoundExtents(snap)
    }

    @Test func partiallyMappedTHPIsRecordedWhole() throws {
        let live = LiveMappings()
        defer { live.tearDown() }
        if let why = try HostFacts.pinTHPBaselineIfPossible(live) { try Test.cancel(Comment(rawValue: why)) }
        let thp = try live.anonymousPMDAligned(size: LiveMappings.pmdSize)
        do { try live.madvise(thp, .hugePage) } catch { return print("THP madvise unavailable: \(error)") }
        live.touch(thp, write: true)
        guard let head = try LiveMappings.selfPagemap(thp)[0].pfn,
              try LiveMappings.physicalPage(pfn: head).flags.contains(.thp) else {
            return print("no THP was allocated; partial-mapping check skipped")
        }
        // Zap the second half: the PMD is split, the folio stays large (until
        // the deferred split runs) with only its first 256 pages mapped.
        try live.madvise(thp, .dontNeed, offset: 1 << 20, length: 1 << 20)
        let after = try LiveMappings.selfPagemap(thp)
        #expect(after[256...].allSatisfy { !$0.isPresent })

        let dir = TestSupport.tempDirectory("partial") + "/snap"
        defer { TestSupport.remove((dir as NSString).deletingLastPathComponent) }
        let result = try SnapshotCapture.captureSelf(to: dir)
        let snap = try SnapshotReader.read(directory: dir)
        let p = try #require(snap.processes.first)
        let w0 = try #require(p.pagemapWord(at: thp.start))
        #expect(result.kpageflagsRecords > result.mappedPFNs)
        let pfn = try #require(w0.pfn)
        guard let rec = snap.record(pfn: pfn), rec.flags.contains(.thp) else {
            return print("folio was split before capture; nothing partial to check")
        }
        let ext = try #require(extent(of: pfn, in: snap))
        #expect(ext.count == 512, "extent \(ext)")
        // Pages of the folio no longer mapped are recorded too, with mapcount 0.
        #expect(snap.record(pfn: ext.upperBound)?.count == 0)
        try checkCompoundExtents(snap)
    }

    @Test func mthpSizeControlAndExtent() throws {
        let path = LiveMappings.mthpEnabledPath(sizeKB: 64)
        guard FileManager.default.fileExists(atPath: path) else { return print("no 64kB mTHP control; skipped") }
        let before = try LiveMappings.readSetting(path: path)

        // withSetting restores even when the body throws.
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try LiveMappings.withSetting(path: path, value: before == "never" ? "always" : "never") {
                #expect(try LiveMappings.readSetting(path: path) != before)
                throw Boom()
            }
        }
        #expect(try LiveMappings.readSetting(path: path) == before)

        let live = LiveMappings()
        try live.setMTHP(sizeKB: 64, "always")
        #expect(try LiveMappings.readSetting(path: path) == "always")
        let m = try live.anonymous(size: 256 << 10, alignment: 64 << 10)
        live.touch(m, write: true)
        let words = try LiveMappings.selfPagemap(m)
        #expect(words.allSatisfy { $0.isPresent })
        let head = try #require(words[0].pfn)
        let flags = try LiveMappings.physicalPage(pfn: head).flags
        if flags.contains(.compoundHead) {
            #expect(head % 16 == 0)
            let dir = TestSupport.tempDirectory("mthp") + "/snap"
            defer { TestSupport.remove((dir as NSString).deletingLastPathComponent) }
            try SnapshotCapture.captureSelf(to: dir)
            let snap = try SnapshotReader.read(directory: dir)
            #expect(extent(of: head, in: snap) == head...(head + 15))
            try checkCompoundExtents(snap)
        } else {
            print("64kB mTHP not allocated (flags \(flags)); extent check skipped")
        }
        #expect(live.tearDown().isEmpty)
        #expect(try LiveMappings.readSetting(path: path) == before)
    }

    @Test func hugetlbMapping() throws {
        let live = LiveMappings()
        defer { live.tearDown() }
        let pool = LiveMappings.nrHugepagesPath(pageSizeKB: 2048)
        let before = try LiveMappings.readSetting(path: pool)
        do { try live.reserveHugePages(1) } catch let e as LiveMappingError {
            return print("hugetlb skipped: \(e)")
        }
        let m = try live.hugetlb(size: LiveMappings.pmdSize)
        live.touch(m, write: true)
        let words = try LiveMappings.selfPagemap(m)
        #expect(words.allSatisfy { $0.isPresent })
        let head = try #require(words[0].pfn)
        let dir = TestSupport.tempDirectory("hugetlb") + "/snap"
        defer { TestSupport.remove((dir as NSString).deletingLastPathComponent) }
        try SnapshotCapture.captureSelf(to: dir)
        let snap = try SnapshotReader.read(directory: dir)
        let p = try #require(snap.processes.first)
        let vi = try #require(p.vmaIndex(containing: m.start))
        #expect(p.smaps[vi].kernelPageSizeKB == 2048)
        #expect(p.smaps[vi].hasVMFlag("ht"))
        #expect(p.maps[vi].name == "/anon_hugepage (deleted)")
        #expect(snap.record(pfn: head)?.flags.contains([.huge, .compoundHead]) == true)
        #expect(extent(of: head, in: snap) == head...(head + 511))
        try checkCompoundExtents(snap)
        #expect(live.tearDown().isEmpty)
        #expect(try LiveMappings.readSetting(path: pool) == before)
    }

    @Test func fileShmemAndGuardMappings() throws {
        let live = LiveMappings()
        defer { live.tearDown() }
        let priv = try live.fileMapping(size: 64 << 10, shared: false)
        let shared = try live.fileMapping(size: 64 << 10, shared: true)
        let memfd = try live.shmem(size: 64 << 10)
        let devshm = try live.shmem(size: 64 << 10, useDevShm: true)
        live.touch(priv, write: false)
        live.touch(shared, write: true)
        live.touch(memfd, write: true)
        live.touch(devshm, write: true)
        let g = try live.anonymous(size: 16 << 10)
        live.touch(g, write: true)
        var guardWorks = true
        do { try live.madvise(g, .guardInstall, offset: 4096, length: 4096) } catch let e as LiveMappingError {
            print("guard regions: \(e)")
            guardWorks = false
        }
        try live.mprotect(g, PROT_READ, offset: 8192, length: 4096)

        let dir = TestSupport.tempDirectory("files") + "/snap"
        defer { TestSupport.remove((dir as NSString).deletingLastPathComponent) }
        try SnapshotCapture.captureSelf(to: dir)
        let snap = try SnapshotReader.read(directory: dir)
        let p = try #require(snap.processes.first)

        let pi = try #require(p.vmaIndex(containing: priv.start))
        #expect(p.maps[pi].name == priv.path && p.maps[pi].perms == "rw-p")
        #expect(p.pagemapWords(vma: pi).prefix(16).allSatisfy { $0.isPresent && $0.isFileOrSharedAnon })
        let si = try #require(p.vmaIndex(containing: shared.start))
        #expect(p.maps[si].perms == "rw-s")
        let mi = try #require(p.vmaIndex(containing: memfd.start))
        #expect(p.maps[mi].name.hasPrefix("/memfd:pagewalk"))
        #expect(p.pagemapWords(vma: mi).allSatisfy { $0.isPresent && $0.isFileOrSharedAnon })
        if let pfn = p.pagemapWord(at: memfd.start)?.pfn {
            #expect(snap.record(pfn: pfn)?.flags.contains(.swapBacked) == true)
        }
        let di = try #require(p.vmaIndex(containing: devshm.start))
        #expect(p.maps[di].name == devshm.path)

        if guardWorks {
            let w = try #require(p.pagemapWord(at: g.start + 4096))
            #expect(w.isGuard && !w.isPresent, "\(w)")
        }
        // mprotect split the anon mapping: the read-only page is its own VMA.
        let ro = try #require(p.vmaIndex(containing: g.start + 8192))
        #expect(p.maps[ro].perms == "r--p" && p.maps[ro].start == g.start + 8192 && p.maps[ro].end == g.start + 12288)
    }

    @Test func swapOutShowsSwapEntries() throws {
        let live = LiveMappings()
        defer { live.tearDown() }
        let area: LiveMappings.SwapArea
        do { area = try live.enableSwap(sizeMiB: 32) } catch let e as LiveMappingError {
            return print("swap skipped: \(e)")
        }
        #expect(try String(contentsOfFile: "/proc/swaps", encoding: .utf8).contains(area.path))
        let m = try live.anonymous(size: 1 << 20)
        live.touch(m, write: true)
        try live.madvise(m, .pageOut)
        let words = try LiveMappings.selfPagemap(m)
        let swapped = words.filter(\.isSwapped)
        print("MADV_PAGEOUT: \(swapped.count) of \(words.count) pages swapped; first \(swapped.first.map(String.init(describing:)) ?? "-")")
        #expect(!swapped.isEmpty)
        if let s = swapped.first { #expect(s.swapOffset! > 0 && !s.isPresent) }

        let dir = TestSupport.tempDirectory("swap") + "/snap"
        defer { TestSupport.remove((dir as NSString).deletingLastPathComponent) }
        try SnapshotCapture.captureSelf(to: dir)
        let snap = try SnapshotReader.read(directory: dir)
        let p = try #require(snap.processes.first)
        let vi = try #require(p.vmaIndex(containing: m.start))
        #expect((p.smaps[vi].kilobytes("Swap") ?? 0) > 0)
        #expect(p.pagemapWord(at: m.start)?.isSwapped == words[0].isSwapped)
        #expect(live.tearDown().isEmpty)
        #expect(try !String(contentsOfFile: "/proc/swaps", encoding: .utf8).contains(area.path))
        #expect(!FileManager.default.fileExists(atPath: area.path))
    }

    @Test func mlockAndCollapse() throws {
        let live = LiveMappings()
        defer { live.tearDown() }
        let locked = try live.anonymous(size: 64 << 10)
        live.touch(locked, write: true)
        var lockWorks = true
        do { try live.mlock(locked) } catch let e as LiveMappingError {
            print("mlock: \(e)")
            lockWorks = false
        }
        // Small pages first (no MADV_HUGEPAGE), then MADV_COLLAPSE into one THP.
        let c = try live.anonymousPMDAligned(size: LiveMappings.pmdSize)
        try live.madvise(c, .noHugePage)
        live.touch(c, write: true)
        try live.madvise(c, .normal)
        try live.madvise(c, .hugePage)
        var collapsed = false
        do {
            try live.madvise(c, .collapse)
            collapsed = true
        } catch let e as LiveMappingError {
            print("MADV_COLLAPSE: \(e)")
        }

        let dir = TestSupport.tempDirectory("mlock") + "/snap"
        defer { TestSupport.remove((dir as NSString).deletingLastPathComponent) }
        try SnapshotCapture.captureSelf(to: dir)
        let snap = try SnapshotReader.read(directory: dir)
        let p = try #require(snap.processes.first)
        if lockWorks {
            let li = try #require(p.vmaIndex(containing: locked.start))
            #expect(p.smaps[li].hasVMFlag("lo"))
            #expect((p.smaps[li].kilobytes("Locked") ?? 0) >= 64)
            let pfn = try #require(p.pagemapWord(at: locked.start)?.pfn)
            let flags = try #require(snap.record(pfn: pfn)).flags
            #expect(flags.contains(.unevictable) && flags.contains(.mlocked), "\(flags)")
        }
        if collapsed {
            let pfn = try #require(p.pagemapWord(at: c.start)?.pfn)
            #expect(snap.record(pfn: pfn)?.flags.contains([.thp, .compoundHead]) == true)
            #expect(extent(of: pfn, in: snap)?.count == 512)
        }
    }

    @Test func captureOfSeveralProcesses() throws {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/sleep")
        child.arguments = ["30"]
        try child.run()
        defer { if child.isRunning { kill(child.processIdentifier, SIGKILL) }; child.waitUntilExit() }
        let dir = TestSupport.tempDirectory("multi") + "/snap"
        defer { TestSupport.remove((dir as NSString).deletingLastPathComponent) }
        let pids = [getpid(), child.processIdentifier]
        let r = try SnapshotCapture.capture(pids: pids, to: dir)
        #expect(r.format.pids == pids)
        let snap = try SnapshotReader.read(directory: dir)
        #expect(snap.processes.map(\.pid) == pids)
        let sleeper = try #require(snap.process(pid: child.processIdentifier))
        #expect(sleeper.cmdline == ["/bin/sleep", "30"])
        // Shared file pages (libc text) appear in both and are recorded once.
        for q in snap.processes {
            for w in q.pagemap { if let pfn = w.pfn { #expect(snap.record(pfn: pfn) != nil) } }
        }
        try checkCompoundExtents(snap)
    }

    /// Another thread keeps mapping and unmapping while the process captures
    /// itself: the capture retries until maps and smaps agree, or reports
    /// a typed inconsistency; the result is always readable.
    @Test func captureUnderChurn() throws {
        final class Stop: @unchecked Sendable {
            private let lock = NSLock()
            private var stopped = false
            var isStopped: Bool { lock.withLock { stopped } }
            func stop() { lock.withLock { stopped = true } }
        }
        let stop = Stop()
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            var i = 0
            while !stop.isStopped {
                if let p = mmap(nil, 4096 * (1 + i % 7), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                   p != UnsafeMutableRawPointer(bitPattern: -1) {
                    p.storeBytes(of: 1, as: UInt8.self)
                    munmap(p, 4096 * (1 + i % 7))
                }
                i += 1
            }
            done.signal()
        }
        defer { stop.stop(); done.wait() }
        let base = TestSupport.tempDirectory("churn")
        defer { TestSupport.remove(base) }
        var attempts: [Int] = []
        for n in 0..<5 {
            let dir = base + "/snap\(n)"
            do {
                let r = try SnapshotCapture.captureSelf(to: dir)
                attempts.append(r.attempts[0])
                _ = try SnapshotReader.read(directory: dir)
            } catch let e as SnapshotError {
                guard case .inconsistentCapture = e else { throw e }
                #expect(!FileManager.default.fileExists(atPath: dir))
            }
        }
        print("attempts under churn: \(attempts)")
    }

    @Test func captureErrors() throws {
        let base = TestSupport.tempDirectory("errors")
        defer { TestSupport.remove(base) }
        // A pid that cannot exist (above pid_max).
        let e = #expect(throws: SnapshotError.self) {
            try SnapshotCapture.capture(pids: [0x3fff_fff0], to: base + "/nopid")
        }
        #expect(e == .processNotFound(pid: 0x3fff_fff0, path: "/proc/\(0x3fff_fff0)"))
        #expect(!FileManager.default.fileExists(atPath: base + "/nopid"))

        // A non-empty target directory is refused and left alone.
        try "x".write(toFile: base + "/keep", atomically: false, encoding: .utf8)
        #expect(throws: SnapshotError.self) { try SnapshotCapture.capture(pids: [getpid()], to: base) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: base) == ["keep"])

        #expect(throws: SnapshotError.invalidArgument(reason: "no pids to capture")) {
            try SnapshotCapture.capture(pids: [], to: base + "/none")
        }
        // Parent directory missing.
        let e2 = #expect(throws: SnapshotError.self) {
            try SnapshotCapture.capture(pids: [getpid()], to: base + "/a/b/c")
        }
        #expect(e2 == .fileMissing(path: base + "/a/b/c"))
    }
}
