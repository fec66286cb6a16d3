import Testing
import Foundation
import Glibc
@testable import MemoryModel
import PageWalk
import KernelSnapshot
import LiveKernel
@testable import ProcFS

/// The machine's kernel as the oracle: each test maps memory in this
/// process, populates it, builds a model address space populated the same
/// way, and compares our smaps, numa_maps and pagemap for those VMAs with
/// /proc/self/*.
///
/// What cannot be determined from outside is taken from the kernel and
/// named: the LRU and writeback state of each page (PG_referenced, PG_active,
/// PG_dirty, PG_writeback, PG_unevictable, PG_mlocked, PG_swapcache, read
/// from /proc/kpageflags) is copied onto the model's folios; PTE young bits
/// (the hardware Accessed bit, part of `Referenced:`) are assumed set on
/// every touched page, as the model's faults set them; PFNs and swap
/// offsets (pagemap bits 0-54 of present and swapped pages) are the
/// kernel's allocation choices and are masked. smaps_rollup covers the
/// whole test process, which the model does not mirror: it is checked by
/// the twin and hand-computed tests instead.
@Suite(.serialized) struct LiveKernelTests {
    static let isRoot = getuid() == 0

    /// Compares the kernel's views of `mappings` with the model's.
    func compare(_ mirror: Mirror, _ mappings: [LiveMapping], thp: THPSettings? = nil,
                 sourceLocation: SourceLocation = #_sourceLocation) throws {
        let problems = try LiveComparison.mismatches(mirror, mappings.map { $0.start..<$0.end }, thp: thp)
        for p in problems { Issue.record(Comment(rawValue: p), sourceLocation: sourceLocation) }
    }

    /// The gate VMA as this host's kernel shows it to this process: smaps
    /// ends with it (the block byte for byte, in the host's vsyscall mode),
    /// numa_maps has no line for it, and pagemap ends before it (a read at
    /// its offset returns nothing). A host with vsyscall=none has none, in
    /// the kernel and in the mirror alike.
    @Test func gateVMA() throws {
        let mirror = try Mirror()
        let gateStart: UInt64 = 0xffff_ffff_ff60_0000
        let kernelText = try LiveMappings.selfSmaps()
        let kernel = KernelView.blocks(kernelText)
        let options = mirror.host.procOptions()
        let ours = try Smaps.text(mirror.mm, options: options)
        print("LIVE host vsyscall mode \(mirror.host.vsyscall)")
        if mirror.host.vsyscall == .none {
            #expect(kernel[gateStart] == nil)
            #expect(mirror.mm.gateVMA == nil && !ours.contains("[vsyscall]"))
            return
        }
        let block = try #require(kernel[gateStart], "the kernel shows no [vsyscall] block")
        #expect(kernelText.hasSuffix(block), "the kernel prints the gate VMA last")
        #expect(ours.hasSuffix(block), "smaps of the gate VMA:\n--- kernel\n\(block)--- model\n\(ours)")
        #expect(try KernelView.numaMaps()[gateStart] == nil)
        #expect(!(try NumaMaps.text(mirror.mm, options: options)).contains("ffffffffff600000"))
        let fd = try RawIO.openRead("/proc/self/pagemap")
        defer { close(fd) }
        var word: UInt64 = 0
        let read = try withUnsafeMutableBytes(of: &word) {
            try RawIO.pread(fd: fd, path: "/proc/self/pagemap", into: $0.baseAddress!, count: 8,
                            offset: Int64(gateStart / 4096) * 8)
        }
        #expect(read == 0, "the kernel's pagemap reads \(read) bytes at the gate VMA")
        #expect(try Pagemap.words(mirror.mm, gateStart..<gateStart + 4096, privileged: true).isEmpty)
    }

    @Test func anonymousPagesAndZeroPage() throws {
        let f = try FencedMappings()
        let m = try f.anonymous(128 * 4096)
        f.touch(m, write: true, pages: 0..<64)
        f.touch(m, write: false, pages: 64..<80)   // read faults map the zero page
        let mirror = try Mirror()
        try mirror.map(m)
        let (a, b) = mirror.pages(m, 0..<64); try mirror.mm.fault(a, b, write: true)
        let (c, d) = mirror.pages(m, 64..<80); try mirror.mm.fault(c, d, write: false)
        try compare(mirror, [m])
    }

    @Test func pmdTHPAndHugeZeroPage() throws {
        let f = try FencedMappings()
        let m = try f.anonymous(4 << 20, alignment: 2 << 20)
        try f.live.madvise(m, .hugePage)
        f.touch(m, write: true, pages: 0..<512)
        f.touch(m, write: false, pages: 512..<1024)
        let words = try KernelView.pagemap(m)
        guard let head = words.first, head & PagemapBits.present != 0, Self.isRoot,
              try LiveMappings.physicalPage(pfn: head & PagemapBits.pfnMask).flags.contains(.thp) else {
            try Test.cancel("the kernel did not back the MADV_HUGEPAGE range with a PMD THP")
        }
        let mirror = try Mirror()
        try mirror.map(m, extra: [.hugePage])
        try mirror.mm.populateTHP(m.start, m.start + (2 << 20), write: true)
        try mirror.mm.populateTHP(m.start + (2 << 20), m.end, write: false)
        try compare(mirror, [m])
    }

    /// A write to a read-faulted PMD: since 6.12 the kernel replaces the
    /// huge zero PMD by a new THP instead of splitting it into zero-page
    /// PTEs and one copied page.
    @Test func writeFaultOnTheHugeZeroPMD() throws {
        let f = try FencedMappings()
        let m = try f.anonymous(2 << 20, alignment: 2 << 20)
        try f.live.madvise(m, .hugePage)
        f.touch(m, write: false, pages: 0..<1)
        f.touch(m, write: true, pages: 5..<6)
        let words = try KernelView.pagemap(m)
        guard let head = words.first, head & PagemapBits.present != 0, Self.isRoot,
              try LiveMappings.physicalPage(pfn: head & PagemapBits.pfnMask).flags.contains(.thp) else {
            try Test.cancel("the kernel did not back the MADV_HUGEPAGE range with a PMD THP after the write")
        }
        let mirror = try Mirror()
        try mirror.map(m, extra: [.hugePage])
        try mirror.mm.populateTHP(m.start, m.end, write: false)
        try mirror.mm.fault(m.start + 5 * page, m.start + 6 * page, write: true)
        try compare(mirror, [m])
    }

    @Test func mTHP64K() throws {
        guard Self.isRoot else { try Test.cancel("needs root to set hugepages-64kB/enabled") }
        _ = KernelView.initialMTHP64K
        let f = try FencedMappings()
        do { try f.live.setMTHP(sizeKB: 64, "always") } catch { try Test.cancel("mTHP 64K knob: \(error)") }
        let m = try f.anonymous(1 << 20, alignment: 64 << 10)
        f.touch(m, write: true)
        let words = try KernelView.pagemap(m)
        guard let head = words.first, head & PagemapBits.present != 0,
              try LiveMappings.physicalPage(pfn: head & PagemapBits.pfnMask).flags.contains(.thp) else {
            try Test.cancel("the kernel did not allocate 64K mTHPs")
        }
        let mirror = try Mirror()
        try mirror.map(m)
        try mirror.mm.populateLargeFolios(m.start, m.end, order: 4)
        try compare(mirror, [m])   // THPeligible from the knobs as set now (64K: always)
        let before = f.live   // the knob is restored at tear-down
        before.tearDown()
        #expect(try LiveMappings.readSetting(path: LiveMappings.mthpEnabledPath(sizeKB: 64)) == KernelView.initialMTHP64K)
    }

    @Test func filePrivateCleanAndCOW() throws {
        let f = try FencedMappings()
        let m = try f.file(32 * 4096, shared: false)
        f.touch(m, write: false)
        f.touch(m, write: true, pages: 0..<8)   // copy-on-write into anonymous pages
        let mirror = try Mirror()
        let file = try mirror.file(of: m, kernel: try KernelView.smaps(), shmem: false)
        try mirror.map(m, kind: .file(file, offset: 0))
        try mirror.mm.fault(m.start, m.end, write: false)
        let (a, b) = mirror.pages(m, 0..<8); try mirror.mm.fault(a, b, write: true)
        try compare(mirror, [m])
    }

    @Test func fileSharedDirtyAndClean() throws {
        let f = try FencedMappings()
        let m = try f.file(32 * 4096, shared: true)
        f.touch(m, write: false)
        f.touch(m, write: true, pages: 0..<8)
        let mirror = try Mirror()
        let file = try mirror.file(of: m, kernel: try KernelView.smaps(), shmem: false)
        try mirror.map(m, shared: true, kind: .file(file, offset: 0))
        try mirror.mm.fault(m.start, m.end, write: false)
        let (a, b) = mirror.pages(m, 0..<8); try mirror.mm.fault(a, b, write: true)
        try compare(mirror, [m])
    }

    @Test func shmemAndSharedAnonymous() throws {
        let f = try FencedMappings()
        let shm = try f.file(32 * 4096, shared: true, directory: "/dev/shm", shmem: true)
        f.touch(shm, write: true, pages: 0..<16)
        let anon = try f.anonymous(16 * 4096, shared: true)
        f.touch(anon, write: true, pages: 0..<8)
        f.touch(anon, write: false, pages: 8..<12)
        let mirror = try Mirror()
        let kernel = try KernelView.smaps()
        try mirror.map(shm, shared: true, kind: .shmem(try mirror.file(of: shm, kernel: kernel, shmem: true), offset: 0))
        try mirror.map(anon, shared: true, kind: .shmem(try mirror.file(of: anon, kernel: kernel, shmem: true), offset: 0))
        var (a, b) = mirror.pages(shm, 0..<16); try mirror.mm.fault(a, b, write: true)
        (a, b) = mirror.pages(anon, 0..<8); try mirror.mm.fault(a, b, write: true)
        (a, b) = mirror.pages(anon, 8..<12); try mirror.mm.fault(a, b, write: false)
        try compare(mirror, [shm, anon])
    }

    @Test func mlockedMemory() throws {
        let f = try FencedMappings()
        let m = try f.anonymous(32 * 4096)
        do { try f.live.mlock(m) } catch { try Test.cancel("mlock: \(error)") }
        let mirror = try Mirror()
        try mirror.map(m)
        try mirror.mm.mlock(m.start, m.end)
        try compare(mirror, [m])
    }

    @Test func lazyFree() throws {
        let f = try FencedMappings()
        let m = try f.anonymous(32 * 4096)
        f.touch(m, write: true)
        try f.live.madvise(m, .free, offset: 0, length: 16 * 4096)
        let mirror = try Mirror()
        try mirror.map(m)
        try mirror.mm.fault(m.start, m.end, write: true)
        try mirror.mm.madviseFree(m.start, m.start + 16 * 4096)
        try compare(mirror, [m])
    }

    @Test func guardRegions() throws {
        let f = try FencedMappings()
        let m = try f.anonymous(32 * 4096)
        f.touch(m, write: true)
        do { try f.live.madvise(m, .guardInstall, offset: 4 * 4096, length: 4 * 4096) } catch {
            try Test.cancel("MADV_GUARD_INSTALL: \(error)")
        }
        let mirror = try Mirror()
        try mirror.map(m)
        try mirror.mm.fault(m.start, m.end, write: true)
        try madviseGuardInstall(mirror.mm, m.start + 4 * 4096, m.start + 8 * 4096)
        try compare(mirror, [m])
    }

    /// Write-protected anonymous memory (uffd-wp markers on none PTEs, the
    /// uffd-wp bit on present ones), then MADV_DONTNEED over half of it and
    /// MADV_GUARD_INSTALL over the other half. On anonymous VMAs a zap drops
    /// uffd-wp markers and leaves none for protected pages, so the guard
    /// install finds nothing populated and replaces the markers.
    @Test func uffdWPZapAndGuardInstall() throws {
        let f = try FencedMappings()
        let m = try f.anonymous(16 * 4096)
        let uffd: UserfaultfdWP
        do { uffd = try UserfaultfdWP(m) } catch { try Test.cancel("userfaultfd write-protect: \(error)") }
        f.touch(m, write: true, pages: 0..<2)
        f.touch(m, write: true, pages: 8..<10)
        try uffd.writeProtect(m.start, length: m.size)
        try f.live.madvise(m, .dontNeed, offset: 0, length: 8 * 4096)
        do { try f.live.madvise(m, .guardInstall, offset: 8 * 4096, length: 4 * 4096) } catch {
            try Test.cancel("MADV_GUARD_INSTALL: \(error)")
        }
        let mirror = try Mirror()
        try mirror.map(m, extra: [.uffdWP])
        var (a, b) = mirror.pages(m, 0..<2); try mirror.mm.fault(a, b, write: true)
        (a, b) = mirror.pages(m, 8..<10); try mirror.mm.fault(a, b, write: true)
        try mirror.mm.userfaultWriteProtect(m.start, m.end)
        (a, b) = mirror.pages(m, 0..<8); try mirror.mm.zap(a, b)
        (a, b) = mirror.pages(m, 8..<12); try madviseGuardInstall(mirror.mm, a, b)
        try compare(mirror, [m])
        withExtendedLifetime(uffd) {}
    }

    /// UFFDIO_WRITEPROTECT over a guard marker, none pages and a present
    /// one, then MADV_GUARD_INSTALL again over the guard, MADV_GUARD_REMOVE
    /// of it, and MADV_GUARD_INSTALL over one of the new uffd-wp markers:
    /// the kernel leaves guard markers without the uffd-wp bit (pagemap bit
    /// 58 alone, never 57), so the removed guard leaves none. The models once
    /// made the guard marker guard|uffd-wp (differential fuzzer seed
    /// 4100014); the old model then left a uffd-wp marker at page 0.
    @Test func uffdWPOverGuardMarkers() throws {
        let f = try FencedMappings()
        let m = try f.anonymous(4 * 4096)
        let uffd: UserfaultfdWP
        do { uffd = try UserfaultfdWP(m) } catch { try Test.cancel("userfaultfd write-protect: \(error)") }
        f.touch(m, write: true, pages: 3..<4)
        do { try f.live.madvise(m, .guardInstall, offset: 0, length: 4096) } catch {
            try Test.cancel("MADV_GUARD_INSTALL: \(error)")
        }
        try uffd.writeProtect(m.start, length: m.size)
        let guarded = try KernelView.pagemap(m)[0]
        #expect(guarded & PagemapBits.guardRegion != 0 && guarded & PagemapBits.uffdWP == 0,
                "pagemap of the write-protected guard marker: \(hx(guarded))")
        try f.live.madvise(m, .guardInstall, offset: 0, length: 4096)
        try f.live.madvise(m, .guardRemove, offset: 0, length: 4096)
        try f.live.madvise(m, .guardInstall, offset: 4096, length: 4096)
        let mirror = try Mirror()
        try mirror.map(m, extra: [.uffdWP])
        var (a, b) = mirror.pages(m, 3..<4); try mirror.mm.fault(a, b, write: true)
        (a, b) = mirror.pages(m, 0..<1); try madviseGuardInstall(mirror.mm, a, b)
        try mirror.mm.userfaultWriteProtect(m.start, m.end)
        try madviseGuardInstall(mirror.mm, a, b)
        try madviseGuardRemove(mirror.mm, a, b)
        (a, b) = mirror.pages(m, 1..<2); try madviseGuardInstall(mirror.mm, a, b)
        try compare(mirror, [m])
        withExtendedLifetime(uffd) {}
    }

    /// UFFDIO_WRITEPROTECT over two PMD THPs of an anonymous VMA, the first
    /// whole and the second in part: the kernel keeps the first PMD-mapped
    /// (AnonHugePages 2048 kB, `change_huge_pmd()` sets uffd-wp on the PMD)
    /// and splits the second. The models once split both.
    @Test func uffdWPKeepsAnonymousTHP() throws {
        let f = try FencedMappings()
        let m = try f.anonymous(4 << 20, alignment: 2 << 20)
        let uffd: UserfaultfdWP
        do { uffd = try UserfaultfdWP(m) } catch { try Test.cancel("userfaultfd write-protect: \(error)") }
        try f.live.madvise(m, .hugePage)
        f.touch(m, write: true)
        guard try LiveMadviseTests.smapsKB(m, "AnonHugePages") == 4096 else {
            try Test.cancel("the kernel did not back the MADV_HUGEPAGE range with two PMD THPs")
        }
        try uffd.writeProtect(m.start, length: 3 << 20)
        #expect(try LiveMadviseTests.smapsKB(m, "AnonHugePages") == 2048, "the kernel split the wholly protected THP")
        let mirror = try Mirror()
        try mirror.map(m, extra: [.hugePage, .uffdWP])
        try mirror.mm.populateTHP(m.start, m.end, write: true)
        try mirror.mm.userfaultWriteProtect(m.start, m.start + (3 << 20))
        try compare(mirror, [m])
        withExtendedLifetime(uffd) {}
    }

    /// MADV_GUARD_INSTALL over two VMAs whose second is mlocked: the kernel
    /// returns EINVAL and has installed the first VMA's markers.
    @Test func guardInstallStopsAtALockedVMA() throws {
        let f = try FencedMappings()
        let m = try f.anonymous(42 * 4096)
        do { try f.live.mlock(m, offset: 41 * 4096, length: 4096) } catch { try Test.cancel("mlock: \(error)") }
        guard HostFacts.current().guardRegions else { try Test.cancel("this kernel has no guard regions (MADV_GUARD_INSTALL)") }
        let rc = Glibc.madvise(m.pointer, m.size, LiveMappings.Advice.guardInstall.rawValue)
        #expect(rc == -1 && errno == EINVAL, "the kernel accepted MADV_GUARD_INSTALL over an mlocked VMA")
        let mirror = try Mirror()
        try mirror.map(m)
        let (a, b) = mirror.pages(m, 41..<42); try mirror.mm.mlock(a, b)
        #expect(throws: MadviseError.self) { try madviseGuardInstall(mirror.mm, m.start, m.end) }
        try compare(mirror, [m, LiveMapping(address: m.address + 41 * 4096, size: 4096, kind: .anonymous)])
    }

    @Test func swappedOut() throws {
        guard Self.isRoot else { try Test.cancel("needs root for swapon") }
        let f = try FencedMappings()
        do { _ = try f.live.enableSwap(sizeMiB: 16) } catch { try Test.cancel("no swap: \(error)") }
        let m = try f.anonymous(64 * 4096)
        f.touch(m, write: true)
        do { try f.live.madvise(m, .pageOut) } catch { try Test.cancel("MADV_PAGEOUT: \(error)") }
        let words = try KernelView.pagemap(m)
        guard words.allSatisfy({ $0 & PagemapBits.swap != 0 }) else {
            try Test.cancel("the kernel kept \(words.filter { $0 & PagemapBits.swap == 0 }.count) pages resident")
        }
        let mirror = try Mirror()
        try mirror.map(m)
        try mirror.mm.fault(m.start, m.end, write: true)
        try mirror.mm.swapOut(m.start, m.end)
        try compare(mirror, [m])
    }

    @Test func hugetlbPages() throws {
        guard Self.isRoot else { try Test.cancel("needs root to reserve hugetlb pages") }
        let f = try FencedMappings()
        do { try f.live.reserveHugePages(2) } catch { try Test.cancel("hugetlb pool: \(error)") }
        let m: LiveMapping
        do { m = try f.hugetlb(4 << 20) } catch { try Test.cancel("\(error)") }
        f.touch(m, write: true, pages: 0..<512)
        let mirror = try Mirror()
        let file = try mirror.file(of: m, kernel: try KernelView.smaps(), shmem: false)
        try mirror.mm.mmap(start: m.start, end: m.end, access: [.read, .write], kind: .hugetlb(pageSize: 2 << 20, file: file))
        try mirror.mm.populateHugetlb(m.start, m.start + (2 << 20), write: true)
        try compare(mirror, [m])
    }

    @Test func forkSharing() throws {
        let f = try FencedMappings()
        let m = try f.anonymous(16 * 4096)
        f.touch(m, write: true)
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw LiveMappingError.syscall(name: "pipe", errno: errno, reason: "") }
        let child = fork()
        if child == 0 {
            var b: UInt8 = 0
            _ = read(fds[0], &b, 1)
            _exit(0)
        }
        defer {
            var b: UInt8 = 1
            _ = write(fds[1], &b, 1)
            close(fds[0]); close(fds[1])
            var status: Int32 = 0
            waitpid(child, &status, 0)
        }
        #expect(child > 0)
        let mirror = try Mirror()
        try mirror.map(m)
        try mirror.mm.fault(m.start, m.end, write: true)
        let modelChild = try mirror.mm.fork(childPID: Int(child))
        try compare(mirror, [m])
        withExtendedLifetime(modelChild) {}
    }
}
