import LiveKernel
import Foundation
import Glibc
import Testing
import MemoryModel
@testable import KernelSnapshot

/// A live oracle: the test sets mappings up, forks two quiet children that
/// inherit them (one breaks COW on part of them), captures both children,
/// rebuilds them and compares pagemap words regenerated from the model with
/// the captured ones, page by page, for both pids.
@Suite("Snapshot rebuild (live)", .serialized,
       .enabled(if: TestSupport.isRoot && TestSupport.canReadKPageFlags, "needs root to read /proc/kpageflags and PFNs"))
struct SnapshotRebuildLiveTests {
    /// Forks a child that writes one byte into each page of `dirty` (COW
    /// break), reports ready on a pipe and then waits to be killed. The
    /// child runs no Swift code that allocates.
    func forkQuietChild(dirty: [(UnsafeMutableRawPointer, Int)]) throws -> pid_t {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw LiveMappingError.last("pipe") }
        let regions = dirty
        let pid = fork()
        if pid == 0 {
            close(fds[0])
            for (p, pages) in regions {
                var k = 0
                while k < pages { p.storeBytes(of: 0x5a, toByteOffset: k * 4096, as: UInt8.self); k += 1 }
            }
            var one: UInt8 = 1
            _ = write(fds[1], &one, 1)
            while true { pause() }
        }
        close(fds[1])
        defer { close(fds[0]) }
        guard pid > 0 else { throw LiveMappingError.last("fork") }
        var b: UInt8 = 0
        guard read(fds[0], &b, 1) == 1 else { throw LiveMappingError.last("child did not start") }
        return pid
    }

    @Test func forkedPairRebuildsWithMatchingPagemaps() throws {
        let live = LiveMappings()
        defer { let failures = live.tearDown(); #expect(failures.isEmpty, "tear-down: \(failures)") }

        // Anonymous memory, all written.
        let anon = try live.anonymous(size: 256 * 4096)
        live.touch(anon, write: true)
        // Read-only touched anonymous memory: the zero page.
        let zero = try live.anonymous(size: 16 * 4096)
        live.touch(zero, write: false)
        // A PMD THP (if THP can be had here).
        let thp = try live.anonymousPMDAligned(size: LiveMappings.pmdSize)
        try? live.madvise(thp, .hugePage)
        live.touch(thp, write: true)
        // Files, private and shared, and shmem.
        let filePrivate = try live.fileMapping(size: 32 * 4096, shared: false)
        live.touch(filePrivate, write: false)
        live.touch(filePrivate, write: true, offset: 0, length: 4 * 4096)
        let fileShared = try live.fileMapping(size: 32 * 4096, shared: true)
        live.touch(fileShared, write: false)
        live.touch(fileShared, write: true, offset: 8 * 4096, length: 4 * 4096)
        let memfd = try live.shmem(size: 32 * 4096)
        live.touch(memfd, write: true)
        let sharedAnon = try live.anonymous(size: 16 * 4096, shared: true)
        live.touch(sharedAnon, write: true)
        // Guard regions, if the kernel has them.
        let guarded = try live.anonymous(size: 16 * 4096)
        live.touch(guarded, write: true)
        let haveGuards = (try? live.madvise(guarded, .guardInstall, offset: 4 * 4096, length: 4 * 4096)) != nil
        // Swap, if a swap file can be enabled here.
        var haveSwap = false
        let swapped = try live.anonymous(size: 64 * 4096)
        live.touch(swapped, write: true)
        do {
            _ = try live.enableSwap(sizeMiB: 16)
            try live.madvise(swapped, .pageOut)
            haveSwap = try LiveMappings.selfPagemap(swapped).contains { $0.isSwapped }
        } catch {
            print("swap unavailable: \(error)")
        }

        // Children: P inherits everything; C breaks COW on half the anon
        // mapping, one page of the THP and a page of the private file map.
        let p = try forkQuietChild(dirty: [])
        var children = [p]
        defer {
            for c in children { kill(c, SIGKILL); var st: Int32 = 0; waitpid(c, &st, 0) }
        }
        let c = try forkQuietChild(dirty: [(anon.pointer, 128), (thp.pointer + 4096 * 7, 1),
                                           (filePrivate.pointer + 4096 * 20, 1)])
        children.append(c)
        // The test process drops its own share of the anonymous pages, so
        // that P and C are their only mappers.
        live.touch(anon, write: true)
        live.touch(thp, write: true)
        if haveSwap { try live.madvise(swapped, .dontNeed) }

        let dir = TestSupport.tempDirectory("rebuild-live") + "/snap"
        defer { TestSupport.remove((dir as NSString).deletingLastPathComponent) }
        try SnapshotCapture.capture(pids: [p, c], to: dir)
        let snap = try SnapshotReader.read(directory: dir)
        let rebuilt = try SnapshotRebuilder.rebuild(snap)
        print(rebuilt.report)
        #expect(rebuilt.report.unplacedPFNs == 0)
        #expect(rebuilt.processes.map(\.pid) == [p, c])

        var total = 0, equal = 0
        for (rp, sp) in zip(rebuilt.processes, snap.processes) {
            let diffs = ModelPagemap.differences(rp, sp)
            total += sp.pagemap.count
            equal += sp.pagemap.count - diffs.count
            for d in diffs.prefix(8) {
                let rec = d.captured.pfn.flatMap { snap.record(pfn: $0) }
                print("pid \(rp.pid) \(sp.maps[d.vma].raw.prefix(40))… 0x\(String(d.address, radix: 16)): captured \(d.captured) model \(d.model) rec \(rec.map { "\($0.flags) count \($0.count)" } ?? "-")")
            }
            #expect(diffs.isEmpty, "pid \(rp.pid): \(diffs.count) of \(sp.pagemap.count) words differ")
        }
        print("live pagemap: \(equal)/\(total) words equal over 2 pids; swap \(haveSwap), guards \(haveGuards)")

        // What the test set up is there, as set up.
        let sp = try #require(snap.process(pid: p)), sc = try #require(snap.process(pid: c))
        let rp = try #require(rebuilt.process(pid: p)), rc = try #require(rebuilt.process(pid: c))
        // COW: pages C wrote are its own; the other half is shared by both.
        let shared = try #require(sp.pagemapWord(at: anon.start + 200 * 4096))
        #expect(shared.pfn == sc.pagemapWord(at: anon.start + 200 * 4096)?.pfn)
        if let pfn = shared.pfn, let page = rebuilt.memory.page(pfn) {
            #expect(page.mapcount == 2)
            #expect(!page.isAnonExclusive)
        }
        let broken = try #require(sc.pagemapWord(at: anon.start))
        #expect(broken.pfn != sp.pagemapWord(at: anon.start)?.pfn)
        #expect(broken.isExclusive)
        // The THP: P keeps the PMD, C had it split by its write.
        if let head = sp.pagemapWord(at: thp.start)?.pfn, snap.record(pfn: head)?.flags.contains(.thp) == true {
            if case .present(let level, _, _) = rp.addressSpace.translate(thp.start) {
                #expect(level == .pmd || (sp.smaps[sp.vmaIndex(containing: thp.start)!].kilobytes("AnonHugePages") ?? 0) == 0)
            }
            if case .present(let level, _, _) = rc.addressSpace.translate(thp.start) { #expect(level == .pte) }
        }
        if haveSwap {
            let w = try #require(sp.pagemapWord(at: swapped.start))
            #expect(w.isSwapped)
            #expect(rebuilt.memory.swap.count(Int(w.swapOffset!)) == 2)
        }
        if haveGuards {
            #expect(sp.pagemapWord(at: guarded.start + 4 * 4096)?.isGuard == true)
        }
        _ = rc
    }
}
