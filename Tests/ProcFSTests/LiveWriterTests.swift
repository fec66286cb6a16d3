import Testing
import Foundation
import Glibc
@testable import MemoryModel
import PageWalk
import KernelSnapshot
import LiveKernel
@testable import ProcFS

/// The walker users that change what they walk, against this machine's
/// kernel: each test changes real memory of this process with the system
/// call (or /proc file) and the model with the user on one walker, then
/// compares smaps, numa_maps and pagemap as LiveKernelTests does, and the
/// figures the user is about.
@Suite(.serialized) struct LiveWriterTests {
    func compare(_ mirror: Mirror, _ mappings: [LiveMapping], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let problems = try LiveComparison.mismatches(mirror, mappings.map { $0.start..<$0.end })
        for p in problems { Issue.record(Comment(rawValue: p), sourceLocation: sourceLocation) }
    }

    /// `echo N > /proc/self/clear_refs`.
    static func writeClearRefs(_ type: Int) throws {
        let fd = open("/proc/self/clear_refs", O_WRONLY)
        guard fd >= 0 else { try Test.cancel("/proc/self/clear_refs: errno \(errno)") }
        defer { close(fd) }
        let text = "\(type)\n"
        let n = text.withCString { write(fd, $0, strlen($0)) }
        #expect(n == text.utf8.count, "clear_refs write returned \(n), errno \(errno)")
    }

    /// The kernel's `Referenced:` of the VMA starting at `m.start`, in kB.
    static func referencedKB(_ m: LiveMapping) throws -> Int? {
        guard let block = try KernelView.smaps()[m.start] else { return nil }
        for line in block.split(separator: "\n") where line.hasPrefix("Referenced:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
        }
        return nil
    }

    /// clear_refs types 1, 2 and 3 on an anonymous and a file-backed VMA:
    /// after 1, Referenced is 0 everywhere and pagemap unchanged; touching k
    /// pages gives k × 4 kB; type 2 leaves the file VMA alone and type 3
    /// the anonymous one.
    @Test(arguments: WalkerKind.allCases)
    func clearRefsYoung(_ walker: WalkerKind) throws {
        let f = try FencedMappings()
        let anon = try f.anonymous(64 * 4096)
        let file = try f.file(32 * 4096, shared: false)
        f.touch(anon, write: true)
        f.touch(file, write: false)
        let mirror = try Mirror()
        try mirror.mapWrittenAnonAndReadFile(anon, file)
        let pagemapBefore = try KernelView.pagemap(anon)
        try compare(mirror, [anon, file])

        try Self.writeClearRefs(1)
        try mirror.mm.clearRefs(.all, walker: walker)
        #expect(try Self.referencedKB(anon) == 0 && Self.referencedKB(file) == 0)
        #expect(try KernelView.pagemap(anon) == pagemapBefore, "clear_refs 1 changed pagemap")
        try compare(mirror, [anon, file])

        f.touch(anon, write: false, pages: 0..<5)
        let (a, b) = mirror.pages(anon, 0..<5)
        try mirror.mm.access(a, b, write: false)
        #expect(try Self.referencedKB(anon) == 20)
        try compare(mirror, [anon, file])

        f.touch(anon, write: false)
        f.touch(file, write: false)
        try mirror.mm.access(anon.start, anon.end, write: false)
        try mirror.mm.access(file.start, file.end, write: false)
        try Self.writeClearRefs(2)
        try mirror.mm.clearRefs(.anonymous, walker: walker)
        #expect(try Self.referencedKB(anon) == 0 && Self.referencedKB(file) == 128)
        try compare(mirror, [anon, file])
        try Self.writeClearRefs(3)
        try mirror.mm.clearRefs(.file, walker: walker)
        #expect(try Self.referencedKB(file) == 0)
        try compare(mirror, [anon, file])
    }

    /// Whether touching `address` kills a forked child with SIGSEGV. The
    /// child reads one byte and exits; it runs nothing else after fork.
    static func touchFaults(_ address: UInt64) -> Bool {
        let pid = fork()
        if pid == 0 {
            // The default action, not the Swift runtime's backtracer.
            signal(SIGSEGV, SIG_DFL)
            let p = UnsafePointer<UInt8>(bitPattern: UInt(address))!
            _exit(p.pointee == 0 ? 0 : 1)
        }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        return status & 0x7f == SIGSEGV
    }

    /// MADV_GUARD_INSTALL over touched pages, untouched pages with a table
    /// and a range with no table at all, then MADV_GUARD_REMOVE over part:
    /// pagemap bit 58, the PAGE_IS_GUARD regions of PAGEMAP_SCAN, and
    /// SIGSEGV on touch, for the model on each walker against the kernel.
    @Test(arguments: WalkerKind.allCases)
    func guardInstallAndRemove(_ walker: WalkerKind) throws {
        let f = try FencedMappings()
        let m = try f.anonymous(1024 * 4096, alignment: 2 << 20)
        f.touch(m, write: true, pages: 0..<8)
        do { try f.live.madvise(m, .guardInstall, offset: 4 * 4096, length: 600 * 4096) } catch {
            try Test.cancel("MADV_GUARD_INSTALL: \(error)")
        }
        try f.live.madvise(m, .guardRemove, offset: 100 * 4096, length: 50 * 4096)
        let mirror = try Mirror()
        try mirror.map(m)
        var (a, b) = mirror.pages(m, 0..<8)
        try mirror.mm.fault(a, b, write: true)
        (a, b) = mirror.pages(m, 4..<604)
        try madviseGuardInstall(mirror.mm, a, b, walker: walker)
        (a, b) = mirror.pages(m, 100..<150)
        try madviseGuardRemove(mirror.mm, a, b, walker: walker)
        try compare(mirror, [m])

        let guardBit = PagemapScan.Category.guardRegion.rawValue
        let kernel = try PagemapScanIoctl.scan(start: m.start, end: m.end, categoryMask: guardBit, returnMask: guardBit)
        let ours = try PagemapScan.scan(mirror.mm, PagemapScan.Arguments(start: m.start, end: m.end,
                                                                      categoryMask: .guardRegion, returnMask: .guardRegion))
        #expect(kernel.regions.map { [$0.start, $0.end, $0.categories] } == ours.regions.map { [$0.start, $0.end, $0.categories.rawValue] })
        #expect(kernel.regions.count == 2, "PAGE_IS_GUARD regions: \(kernel.regions)")
        for page in [5, 120, 300, 700] {
            let addr = m.start + UInt64(page) * 4096
            let guarded = (4..<100).contains(page) || (150..<604).contains(page)
            #expect(Self.touchFaults(addr) == guarded, "touching page \(page)")
            // The model's faults fail on a marker that `failsFaults`.
            var modelFaults = false
            if case .softLeaf(_, _, let leaf) = mirror.mm.translate(addr), case .marker(let mk) = leaf.leaf { modelFaults = mk.failsFaults }
            #expect(modelFaults == guarded, "the model touching page \(page)")
        }
    }

    /// Per page of `m`: is the kernel's page MLOCKED and UNEVICTABLE (nil
    /// for a page not present), from pagemap and /proc/kpageflags.
    static func kernelMlocked(_ m: LiveMapping) throws -> [Bool?] {
        try LiveMappings.selfPagemap(m).map { w in
            guard let pfn = w.pfn, pfn != 0 else { return nil }
            let k = try LiveMappings.physicalPage(pfn: pfn).flags
            return k.contains(.mlocked) && k.contains(.unevictable)
        }
    }

    /// The same from the model's folios.
    static func modelMlocked(_ mirror: Mirror, _ m: LiveMapping) -> [Bool?] {
        (0..<(m.size / 4096)).map { k in
            guard case .present(_, _, let pfn) = mirror.mm.translate(m.start + UInt64(k) * 4096),
                  let f = mirror.memory.folio(containing: pfn), !f.isZero else { return nil }
            return f.test(.mlocked) && f.test(.unevictable)
        }
    }

    /// Drains the per-CPU LRU and mlock batches (a folio mlocked at fault
    /// sits in a batch with PG_mlocked set until the batch moves it to the
    /// unevictable list) and folds the per-CPU vm counters into the global
    /// ones: compaction starts with `lru_add_drain_all()`, and
    /// `vm/stat_refresh` flushes the vmstat differentials. Both are actions,
    /// not settings: nothing to restore.
    static func drainBatches() {
        for path in ["/proc/sys/vm/compact_memory", "/proc/sys/vm/stat_refresh"] {
            let fd = open(path, O_WRONLY)
            guard fd >= 0 else { print("LIVE cannot open \(path): errno \(errno)"); continue }
            _ = write(fd, "1\n", 2)
            close(fd)
        }
    }

    /// `Mlocked:` of /proc/meminfo, in kB, with the per-CPU counters folded.
    static func meminfoMlockedKB() throws -> Int {
        drainBatches()
        let text = try String(contentsOfFile: "/proc/meminfo", encoding: .utf8)
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("Mlocked:") })
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])!
    }

    /// mlock of part of a VMA, munlock of part of that, and mlock2 with
    /// MLOCK_ONFAULT then a touch: kpageflags MLOCKED and UNEVICTABLE page
    /// for page, meminfo Mlocked moving by what was locked, and smaps
    /// (Locked:, VmFlags lo/lf) against the model on each walker.
    @Test(arguments: WalkerKind.allCases)
    func mlockMunlockAndOnFault(_ walker: WalkerKind) throws {
        let f = try FencedMappings()
        let m = try f.anonymous(64 * 4096)
        f.touch(m, write: true, pages: 0..<32)
        let mlockedBefore = try Self.meminfoMlockedKB()
        do { try f.live.mlock(m, offset: 8 * 4096, length: 32 * 4096) } catch { try Test.cancel("mlock: \(error)") }
        let mlockedAfter = try Self.meminfoMlockedKB()
        try f.live.munlock(m, offset: 8 * 4096, length: 4 * 4096)
        do { try f.live.mlockOnFault(m, offset: 48 * 4096, length: 8 * 4096) } catch { try Test.cancel("mlock2: \(error)") }
        f.touch(m, write: true, pages: 48..<52)
        defer { _ = try? f.live.munlock(m) }
        Self.drainBatches()

        let mirror = try Mirror()
        try mirror.map(m)
        var (a, b) = mirror.pages(m, 0..<32)
        try mirror.mm.fault(a, b, write: true)
        (a, b) = mirror.pages(m, 8..<40)
        try mirror.mm.mlock(a, b, walker: walker)
        (a, b) = mirror.pages(m, 8..<12)
        try mirror.mm.munlock(a, b, walker: walker)
        (a, b) = mirror.pages(m, 48..<56)
        try mirror.mm.mlock2(a, b, onFault: true, walker: walker)
        (a, b) = mirror.pages(m, 48..<52)
        try mirror.mm.fault(a, b, write: true)

        let kernel = try Self.kernelMlocked(m), ours = Self.modelMlocked(mirror, m)
        #expect(kernel == ours, "MLOCKED|UNEVICTABLE per page:\n kernel \(kernel)\n model  \(ours)")
        #expect(kernel[12] == true && kernel[8] == false && kernel[48] == true && kernel[4] == false, "\(kernel)")
        // Other processes may lock or unlock meanwhile: the change is at least ours.
        #expect(mlockedAfter - mlockedBefore >= 32 * 4, "meminfo Mlocked moved by \(mlockedAfter - mlockedBefore) kB")
        try compare(mirror, [m])
    }

    /// mlock(2) over the first huge page of a hugetlb mapping, then
    /// mlock2(MLOCK_ONFAULT) over all of it: the kernel populates each
    /// range but leaves the VMA whole and its flags alone (`mlock_fixup()`
    /// skips hugetlb): no `lo` or `lf` in VmFlags, Locked: 0 kB, and no
    /// MLOCKED page; without VM_LOCKONFAULT the second call populates the
    /// rest. The model does the same on each walker.
    @Test(arguments: WalkerKind.allCases)
    func hugetlbIsPopulatedButNeverLocked(_ walker: WalkerKind) throws {
        guard getuid() == 0 else { try Test.cancel("needs root to reserve hugetlb pages") }
        let f = try FencedMappings()
        do { _ = try f.live.reserveHugePages(2) } catch { try Test.cancel("hugetlb pool: \(error)") }
        let m: LiveMapping
        do { m = try f.hugetlb(4 << 20) } catch { try Test.cancel("\(error)") }
        do { try f.live.mlock(m, offset: 0, length: 2 << 20) } catch { try Test.cancel("mlock: \(error)") }
        defer { _ = try? f.live.munlock(m) }
        let afterMlock = try #require(try KernelView.smaps()[m.start], "no kernel VMA at \(m)")
        #expect(afterMlock.contains("\(String(m.start, radix: 16))-\(String(m.end, radix: 16)) "), "the kernel split the VMA:\n\(afterMlock)")
        #expect(afterMlock.contains("Private_Hugetlb:    2048 kB"), "mlock populated the first huge page:\n\(afterMlock)")
        // Not VM_LOCKONFAULT, so mlock2(MLOCK_ONFAULT) populates the rest.
        try f.live.mlockOnFault(m)
        let block = try #require(try KernelView.smaps()[m.start], "no kernel VMA at \(m)")
        let flags = try #require(block.split(separator: "\n").first { $0.hasPrefix("VmFlags:") })
        #expect(!flags.split(separator: " ").contains("lo") && !flags.split(separator: " ").contains("lf"), "\(flags)")
        #expect(block.contains("Private_Hugetlb:    4096 kB"), "mlock2(MLOCK_ONFAULT) populated the hugetlb VMA:\n\(block)")

        let mirror = try Mirror()
        let file = try mirror.file(of: m, kernel: try KernelView.smaps(), shmem: false)
        try mirror.mm.mmap(start: m.start, end: m.end, access: [.read, .write], kind: .hugetlb(pageSize: 2 << 20, file: file))
        try mirror.mm.mlock(m.start, m.start + (2 << 20), walker: walker)
        try mirror.mm.mlock2(m.start, m.end, onFault: true, walker: walker)
        let vma = try #require(mirror.mm.vma(containing: m.start))
        #expect(vma.start == m.start && vma.end == m.end && vma.flags.isDisjoint(with: [.locked, .lockOnFault]), "\(vma)")
        #expect(try Self.kernelMlocked(m) == Self.modelMlocked(mirror, m))
        try compare(mirror, [m])
    }

    /// A PMD THP of which mlock covers only the first 1 MiB: the VMA split
    /// maps the THP by PTEs, and a large folio locked in part is not
    /// mlocked, in the kernel and the model alike.
    @Test(arguments: WalkerKind.allCases)
    func thpLockedInPartIsNotMlocked(_ walker: WalkerKind) throws {
        let f = try FencedMappings()
        let m = try f.anonymous(2 << 20, alignment: 2 << 20)
        try f.live.madvise(m, .hugePage)
        f.touch(m, write: true)
        guard let head = try KernelView.pagemap(m).first, head & PagemapBits.present != 0,
              try LiveMappings.physicalPage(pfn: head & PagemapBits.pfnMask).flags.contains(.thp) else {
            try Test.cancel("the kernel did not back the MADV_HUGEPAGE range with a THP")
        }
        do { try f.live.mlock(m, offset: 0, length: 1 << 20) } catch { try Test.cancel("mlock: \(error)") }
        defer { _ = try? f.live.munlock(m) }
        Self.drainBatches()
        let mirror = try Mirror()
        try mirror.map(m, extra: [.hugePage])
        try mirror.mm.populateTHP(m.start, m.end)
        try mirror.mm.mlock(m.start, m.start + (1 << 20), walker: walker)
        let kernel = try Self.kernelMlocked(m), ours = Self.modelMlocked(mirror, m)
        #expect(kernel.allSatisfy { $0 == false }, "the kernel mlocked a THP locked in part")
        #expect(kernel == ours)
        try compare(mirror, [m])
    }
}
