import Testing
import Foundation
import Glibc
@testable import MemoryModel
import PageWalk
import KernelSnapshot
import LiveKernel
@testable import ProcFS

/// MADV_COLD, MADV_PAGEOUT and MADV_WILLNEED against this machine's
/// kernel: each test advises real memory of this process with madvise(2)
/// and the model's mirror of it with the port on one walker, then checks
/// what the advice is about (kpageflags ACTIVE and REFERENCED, smaps
/// Referenced and Swap, mincore, pagemap) in the kernel and the model, and
/// compares the rest with LiveComparison.
///
/// The LRU flags move in per-CPU batches: MADV_COLD's deactivation, and
/// the LRU add of a page just faulted in (a folio still in a batch is off
/// the LRU, and MADV_COLD and MADV_PAGEOUT skip it). The batches of every
/// CPU are drained before each advice and before each read of kpageflags
/// by a write to /proc/sys/vm/compact_memory, which begins with
/// `lru_add_drain_all()` (`LiveWriterTests.drainBatches()`).
@Suite(.serialized) struct LiveMadviseTests {
    static let page = 4096

    func compare(_ mirror: Mirror, _ mappings: [LiveMapping], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let problems = try LiveComparison.mismatches(mirror, mappings.map { $0.start..<$0.end })
        for p in problems { Issue.record(Comment(rawValue: p), sourceLocation: sourceLocation) }
    }

    /// Reads one byte of each page of `pages` through /proc/self/mem: a
    /// remote access (`get_user_pages_remote()` with FOLL_TOUCH) marks the
    /// folio accessed, as a page-cache read does: referenced the first
    /// time, active the second. A plain load does neither for anonymous
    /// memory.
    static func markAccessed(_ m: LiveMapping, pages: Range<Int>, times: Int) throws {
        let fd = open("/proc/self/mem", O_RDONLY)
        guard fd >= 0 else { try Test.cancel("/proc/self/mem: errno \(errno)") }
        defer { close(fd) }
        var byte: UInt8 = 0
        for _ in 0..<times {
            for k in pages {
                let n = pread(fd, &byte, 1, off_t(m.address + UInt(k * page)))
                #expect(n == 1, "reading /proc/self/mem at page \(k): errno \(errno)")
            }
        }
    }

    /// Per page of `m` the kernel's (active, referenced) from kpageflags,
    /// nil for a page not present.
    static func kernelLRU(_ m: LiveMapping) throws -> [[Bool]?] {
        LiveWriterTests.drainBatches()
        return try LiveMappings.selfPagemap(m).map { w in
            guard w.isPresent, let pfn = w.pfn, pfn != 0 else { return nil }
            let k = try LiveMappings.physicalPage(pfn: pfn).flags
            return [k.contains(.active), k.contains(.referenced)]
        }
    }

    /// The same from the model's folios.
    static func modelLRU(_ mirror: Mirror, _ m: LiveMapping) -> [[Bool]?] {
        (0..<m.pageCount).map { k in
            guard case .present(_, _, let pfn) = mirror.mm.translate(m.start + UInt64(k * page)),
                  let f = mirror.memory.folio(containing: pfn), !f.isZero else { return nil }
            return [f.test(.active), f.test(.referenced)]
        }
    }

    /// mincore(2) per page: resident in the page cache or, for a swap
    /// entry, in the swap cache.
    static func mincore(_ m: LiveMapping) throws -> [Bool] {
        var vec = [UInt8](repeating: 0, count: m.pageCount)
        guard Glibc.mincore(m.pointer, m.size, &vec) == 0 else { throw LiveMappingError.last("mincore") }
        return vec.map { $0 & 1 != 0 }
    }

    /// `Name:` of the smaps block of the VMA at `m.start`, in kB.
    static func smapsKB(_ m: LiveMapping, _ name: String) throws -> Int? {
        guard let block = try KernelView.smaps()[m.start] else { return nil }
        for line in block.split(separator: "\n") where line.hasPrefix(name + ":") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
        }
        return nil
    }

    static var swapActive: Bool {
        ((try? String(contentsOfFile: "/proc/swaps", encoding: .utf8)) ?? "").split(separator: "\n").count > 1
    }

    /// MADV_COLD over part of an anonymous VMA and all of a private file
    /// VMA whose pages were referenced (read once through /proc/self/mem)
    /// or active (read twice): inside the range every page loses ACTIVE and
    /// REFERENCED and its young bit (smaps Referenced drops by the range),
    /// outside it nothing changes; the model, started from the kernel's
    /// flags, ends with the kernel's, page for page.
    @Test(arguments: WalkerKind.allCases)
    func coldClearsActiveAndReferenced(_ walker: WalkerKind) throws {
        guard getuid() == 0 else { try Test.cancel("kpageflags needs root") }
        let f = try FencedMappings()
        let anon = try f.anonymous(64 * Self.page)
        let file = try f.file(32 * Self.page, shared: false)
        f.touch(anon, write: true)
        f.touch(file, write: false)
        LiveWriterTests.drainBatches()
        try Self.markAccessed(anon, pages: 0..<16, times: 1)
        try Self.markAccessed(anon, pages: 16..<48, times: 2)
        try Self.markAccessed(file, pages: 0..<32, times: 2)
        let before = try Self.kernelLRU(anon), fileBefore = try Self.kernelLRU(file)
        guard before[20] == [true, false], before[4]?[1] == true, fileBefore[3]?[0] == true else {
            try Test.cancel("reads through /proc/self/mem did not mark the pages accessed here: \(before.prefix(24)) \(fileBefore.prefix(4))")
        }

        let mirror = try Mirror()
        try mirror.mapWrittenAnonAndReadFile(anon, file)
        try mirror.mirrorPageFlags(anon, untilOnLRU: true)
        try mirror.mirrorPageFlags(file, untilOnLRU: true)
        #expect(Self.modelLRU(mirror, anon) == before)

        try f.live.madvise(anon, .cold, offset: 8 * Self.page, length: 32 * Self.page)
        try f.live.madvise(file, .cold)
        let (a, b) = mirror.pages(anon, 8..<40)
        let r = try madviseCold(mirror.mm, a, b, walker: walker)
        try madviseCold(mirror.mm, file.start, file.end, walker: walker)
        #expect(r.flushes.count == 1 && r.flushes[0].range == a..<b, "\(r.flushes)")

        let after = try Self.kernelLRU(anon), fileAfter = try Self.kernelLRU(file)
        #expect((8..<40).allSatisfy { after[$0] == [false, false] }, "kernel inside the range: \(after[8..<40])")
        #expect(after[0..<8].allSatisfy { $0 == [false, true] } && after[40..<48].allSatisfy { $0 == [true, false] },
                "kernel outside the range: \(after)")
        #expect(fileAfter.allSatisfy { $0 == [false, false] }, "kernel file pages: \(fileAfter)")
        #expect(Self.modelLRU(mirror, anon) == after, "active/referenced per page:\n kernel \(after)\n model  \(Self.modelLRU(mirror, anon))")
        #expect(Self.modelLRU(mirror, file) == fileAfter)
        // Young bits: 32 pages of the anonymous VMA made old, the file all.
        #expect(try Self.smapsKB(anon, "Referenced") == 32 * 4 && Self.smapsKB(file, "Referenced") == 0)
        try compare(mirror, [anon, file])
    }

    /// MADV_COLD over the first half of a THP: the kernel splits it (no
    /// AnonHugePages left) and advises the small folios of that half; the
    /// model does the same.
    @Test(arguments: WalkerKind.allCases)
    func coldOverPartOfATHPSplitsIt(_ walker: WalkerKind) throws {
        let f = try FencedMappings()
        let m = try f.anonymous(2 << 20, alignment: 2 << 20)
        try f.live.madvise(m, .hugePage)
        f.touch(m, write: true)
        guard try Self.smapsKB(m, "AnonHugePages") == 2048 else {
            try Test.cancel("the kernel did not back the MADV_HUGEPAGE range with a THP")
        }
        LiveWriterTests.drainBatches()
        try f.live.madvise(m, .cold, offset: 0, length: 1 << 20)
        #expect(try Self.smapsKB(m, "AnonHugePages") == 0, "the kernel kept the THP whole")
        #expect(try Self.smapsKB(m, "Referenced") == 1024, "young bits of the advised half")
        let mirror = try Mirror()
        try mirror.map(m, extra: [.hugePage])
        try mirror.mm.populateTHP(m.start, m.end)
        try madviseCold(mirror.mm, m.start, m.start + (1 << 20), walker: walker)
        guard case .present(let level, _, let pfn) = mirror.mm.translate(m.start) else { Issue.record("model page gone"); return }
        #expect(level == .pte && mirror.memory.folio(containing: pfn)?.isLarge == false)
        // khugepaged may collapse the split range back into a THP (the VMA is
        // MADV_HUGEPAGE) before the comparison reads smaps: that is the
        // kernel moving on, not a difference.
        if try Self.smapsKB(m, "AnonHugePages") != 0 {
            print("LIVE khugepaged collapsed the advised range again before the comparison: smaps and pagemap not compared")
            return
        }
        try compare(mirror, [m])
    }

    /// MADV_PAGEOUT of three quarters of a clean private file mapping: those
    /// pages leave the page cache (mincore) and the page tables (pagemap);
    /// the rest stays. In the model, the same pages leave the mirror's file.
    @Test(arguments: WalkerKind.allCases)
    func pageoutDropsCleanFilePages(_ walker: WalkerKind) throws {
        let f = try FencedMappings()
        let file = try f.file(32 * Self.page, shared: false)
        f.touch(file, write: false)
        LiveWriterTests.drainBatches()
        #expect(try Self.mincore(file).allSatisfy { $0 })
        try f.live.madvise(file, .pageOut, offset: 0, length: 24 * Self.page)
        let resident = try Self.mincore(file)
        let words = try LiveMappings.selfPagemap(file)
        #expect(resident == (0..<32).map { $0 >= 24 }, "mincore after MADV_PAGEOUT: \(resident)")
        #expect(words.enumerated().allSatisfy { $0.element.isPresent == ($0.offset >= 24) }, "pagemap present bits")

        let mirror = try Mirror()
        let fo = try mirror.file(of: file, kernel: try KernelView.smaps(), shmem: false)
        try mirror.map(file, kind: .file(fo, offset: 0))
        try mirror.mm.fault(file.start, file.end, write: false)
        let (a, b) = mirror.pages(file, 0..<24)
        let r = try madvisePageout(mirror.mm, a, b, walker: walker)
        #expect(r.reclaimedPages == 24 && fo.cachedPages == 8, "\(r), \(fo.cachedPages) pages cached")
        #expect((0..<32).map { fo.cachedPFN(UInt64($0)) != nil } == resident, "the model's page cache against mincore")
        try compare(mirror, [file])
    }

    /// MADV_PAGEOUT of anonymous memory on a host with no swap active: the
    /// kernel cannot swap, so reclaim puts every folio back active
    /// (`activate_locked`), still mapped; the model without swap slots does
    /// the same.
    @Test(arguments: WalkerKind.allCases)
    func pageoutWithoutSwapActivates(_ walker: WalkerKind) throws {
        guard getuid() == 0 else { try Test.cancel("kpageflags needs root") }
        guard !Self.swapActive else { try Test.cancel("swap is active on this host; this test needs none") }
        let f = try FencedMappings()
        let m = try f.anonymous(32 * Self.page)
        f.touch(m, write: true)
        LiveWriterTests.drainBatches()
        #expect(try Self.kernelLRU(m).allSatisfy { $0 == [false, false] }, "freshly faulted anonymous pages start inactive")
        try f.live.madvise(m, .pageOut)
        let kernel = try Self.kernelLRU(m)
        #expect(kernel.allSatisfy { $0 == [true, false] }, "kernel after MADV_PAGEOUT without swap: \(kernel)")

        let mirror = try Mirror(swapSlots: 0)
        try mirror.map(m)
        try mirror.mm.fault(m.start, m.end, write: true)
        let r = try madvisePageout(mirror.mm, m.start, m.end, walker: walker)
        #expect(r.activatedPages == 32 && r.reclaimedPages == 0)
        #expect(Self.modelLRU(mirror, m) == kernel)
        try compare(mirror, [m])
    }

    /// MADV_PAGEOUT of anonymous memory with swap (a swap file is made and
    /// enabled only when none is active, and always swapped off and removed
    /// at tear-down): every page becomes a swap entry (pagemap, smaps Swap).
    /// Then MADV_WILLNEED reads the entries into the swap cache (mincore)
    /// without mapping them, and a read fault maps the cached folios.
    ///
    /// Right after a pageout the kernel still holds the folios in the swap
    /// cache (written back asynchronously, freed by a later reclaim pass),
    /// where the model frees them at once, so the swap cache is emptied
    /// first the kernel's way: read the pages back (the folios stay cached
    /// and clean) and page them out again, which frees a clean cached folio
    /// at once. The model follows those steps; only its own swap cache is
    /// empty earlier.
    @Test(arguments: WalkerKind.allCases)
    func pageoutSwapsAndWillNeedReadsBack(_ walker: WalkerKind) throws {
        guard getuid() == 0 else { try Test.cancel("swapon and kpageflags need root") }
        let f = try FencedMappings()
        if !Self.swapActive {
            do { _ = try f.live.enableSwap(sizeMiB: 64, directory: "/var/tmp") } catch { try Test.cancel("no swap can be enabled: \(error)") }
        }
        let m = try f.anonymous(64 * Self.page)
        f.touch(m, write: true)
        LiveWriterTests.drainBatches()
        try f.live.madvise(m, .pageOut)
        var words = try LiveMappings.selfPagemap(m)
        // Reclaim skips folios it cannot take now (off the LRU in a per-CPU
        // batch, busy): advise once more after draining, then the kernel
        // must have swapped every page, or the host's reclaim is elsewhere.
        if !words.allSatisfy({ $0.isSwapped && !$0.isPresent }) {
            LiveWriterTests.drainBatches()
            try f.live.madvise(m, .pageOut)
            words = try LiveMappings.selfPagemap(m)
            guard words.allSatisfy({ $0.isSwapped && !$0.isPresent }) else {
                try Test.cancel("the kernel's reclaim kept \(words.filter { !$0.isSwapped }.count) of 64 pages after two MADV_PAGEOUTs")
            }
        }
        #expect(words.allSatisfy { $0.isSwapped && !$0.isPresent }, "\(words.filter { !$0.isSwapped }.count) pages not swapped")
        #expect(try Self.smapsKB(m, "Swap") == 256)

        let mirror = try Mirror()
        try mirror.map(m)
        try mirror.mm.fault(m.start, m.end, write: true)
        let r = try madvisePageout(mirror.mm, m.start, m.end, walker: walker)
        #expect(r.reclaimedPages == 64)
        try compare(mirror, [m])

        // Empty the kernel's swap cache: once the writes are done, read the
        // pages back and page them out again (clean cached folios go at once).
        var cycles = 0
        while try Self.mincore(m).contains(true) && cycles < 5 {
            cycles += 1
            usleep(300_000)
            f.touch(m, write: false)
            try mirror.mm.fault(m.start, m.end, write: false)
            LiveWriterTests.drainBatches()
            try f.live.madvise(m, .pageOut)
            try madvisePageout(mirror.mm, m.start, m.end, walker: walker)
        }
        guard try !Self.mincore(m).contains(true) else {
            try Test.cancel("the kernel kept \(try Self.mincore(m).filter { $0 }.count) pages in the swap cache after \(cycles) cycles")
        }
        words = try LiveMappings.selfPagemap(m)
        #expect(words.allSatisfy { $0.isSwapped && !$0.isPresent })
        try compare(mirror, [m])

        try f.live.madvise(m, .willNeed)
        var cached = try Self.mincore(m)
        for _ in 0..<20 where cached.contains(false) {
            usleep(50_000)   // the reads complete asynchronously
            cached = try Self.mincore(m)
        }
        #expect(cached.allSatisfy { $0 }, "swap cache after MADV_WILLNEED: \(cached.filter { $0 }.count) of 64")
        #expect(try LiveMappings.selfPagemap(m).allSatisfy { $0.isSwapped && !$0.isPresent }, "MADV_WILLNEED mapped pages")
        let w = try madviseWillNeed(mirror.mm, m.start, m.end, walker: walker)
        #expect(w.swapCacheReads == 64)
        let modelCached = (0..<64).map { k -> Bool in
            guard case .softLeaf(_, _, let leaf) = mirror.mm.translate(m.start + UInt64(k * Self.page)),
                  case .swap(let e) = leaf.leaf else { return false }
            return mirror.memory.swap.cachedFolioPFN(Int(e.offset)) != nil
        }
        #expect(modelCached == cached, "the model's swap cache against mincore")
        try compare(mirror, [m])

        // A read fault now maps the cached folios, still in the swap cache.
        f.touch(m, write: false)
        try mirror.mm.fault(m.start, m.end, write: false)
        #expect(try LiveMappings.selfPagemap(m).allSatisfy { $0.isPresent })
        try compare(mirror, [m])
    }
}
