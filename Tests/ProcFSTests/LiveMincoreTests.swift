import Testing
import Foundation
import Glibc
@testable import MemoryModel
@testable import PageWalk
import KernelSnapshot
import LiveKernel
@testable import ProcFS

/// mincore(2) with the machine's kernel as the oracle: each test maps real
/// memory in this process, brings it into a known state (pages written,
/// read, read(2) into the page cache, guarded, swapped), asks the kernel
/// through Glibc's `mincore`, mirrors the same shape into a model address
/// space and asks both walkers: the vectors must be equal byte for byte,
/// and failures must carry the kernel's errno.
@Suite(.serialized) struct LiveMincoreTests {
    static let isRoot = getuid() == 0
    static let page = 4096

    /// What a mincore call gave: the vector, or the (positive) errno.
    enum Answer: Equatable {
        case vector([UInt8])
        case errno(Int32)
    }

    /// The kernel's vector for `[start, start + length)`, or its errno.
    static func kernel(_ start: UInt64, _ length: Int) -> Answer {
        let pages = (length + page - 1) / page
        var vec = [UInt8](repeating: 0xee, count: max(pages, 1))
        let rc = vec.withUnsafeMutableBufferPointer { buf in
            Glibc.mincore(UnsafeMutableRawPointer(bitPattern: UInt(start)), length, buf.baseAddress!)
        }
        if rc != 0 { return .errno(errno) }
        return .vector(Array(vec.prefix(pages)))
    }

    /// The model's vector on `walker`, or the (positive) errno it fails with.
    static func model(_ mm: AddressSpace, _ start: UInt64, _ length: Int, _ walker: WalkerKind) -> Answer {
        do throws(MincoreError) {
            return .vector(try mincore(mm, start, UInt64(length), walker: walker))
        } catch {
            return .errno(-error.errno)
        }
    }

    static func digits(_ r: Answer) -> String {
        switch r {
        case .vector(let v):
            // Runs of one value, `1x512 0x512`; short vectors digit by digit.
            if v.count <= 64 { return v.isEmpty ? "(empty)" : String(v.map { $0 <= 9 ? Character(String($0)) : "?" }) }
            var parts: [String] = [], i = 0
            while i < v.count {
                var j = i
                while j < v.count && v[j] == v[i] { j += 1 }
                parts.append("\(v[i])x\(j - i)")
                i = j
            }
            return parts.joined(separator: " ")
        case .errno(let e): return "errno \(e) (\(String(cString: strerror(e))))"
        }
    }

    /// Compares the kernel's answer for `[start, start + length)` with both
    /// walkers' on `mirror`; returns the kernel's vector.
    @discardableResult
    func compare(_ mirror: Mirror, _ start: UInt64, _ length: Int, _ what: String,
                 sourceLocation: SourceLocation = #_sourceLocation) -> [UInt8] {
        let k = Self.kernel(start, length)
        print("LIVE mincore \(what) 0x\(String(start, radix: 16))+\(length): kernel \(Self.digits(k))")
        for w in WalkerKind.allCases {
            let m = Self.model(mirror.mm, start, length, w)
            #expect(m == k, "\(what), \(w) walker:\n kernel \(Self.digits(k))\n model  \(Self.digits(m))",
                    sourceLocation: sourceLocation)
        }
        if case .vector(let v) = k { return v }
        return []
    }

    /// A directory on a disk file system: tmpfs answers a read(2) of a hole
    /// from the zero page without caching anything, which the model's
    /// page cache does not reproduce.
    static func diskDirectory() throws -> String {
        // The file system of the longest mount point holding the directory.
        let mounts = ((try? RawIO.readText("/proc/self/mounts")) ?? "").split(separator: "\n").compactMap { line -> (String, String)? in
            let f = line.split(separator: " ")
            return f.count > 2 ? (String(f[1]), String(f[2])) : nil
        }
        for dir in ["/var/tmp", "/tmp"] {
            let real = URL(fileURLWithPath: dir).resolvingSymlinksInPath().path
            let mount = mounts.filter { real == $0.0 || real.hasPrefix($0.0 == "/" ? "/" : $0.0 + "/") }
                .max { $0.0.count < $1.0.count }
            if let type = mount?.1, type != "tmpfs" {
                print("LIVE page-cache file in \(dir) (\(type))")
                return dir
            }
        }
        try Test.cancel("/var/tmp and /tmp are both tmpfs here: no disk file system for a page-cache test")
    }

    /// read(2) of page `index` of `path` with readahead off
    /// (`POSIX_FADV_RANDOM`): exactly that page enters the page cache.
    static func readPage(_ path: String, _ index: Int) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LiveMappingError.last("open(\(path))") }
        defer { close(fd) }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM)
        var buf = [UInt8](repeating: 0, count: page)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, page, off_t(index * page)) }
        guard n == page else { throw LiveMappingError.last("pread(\(path), page \(index))") }
    }

    /// Anonymous memory written, read (the zero page), untouched and
    /// guarded (over written and over untouched pages); a private file
    /// mapping of a sparse file with some pages read(2) into the page cache
    /// and never mapped, some of those mapped by a read or copied by a
    /// write, and guard pages over cached and uncached pages.
    @Test func anonymousFileAndGuardPages() throws {
        guard HostFacts.current().guardRegions else { try Test.cancel("this kernel has no guard regions (MADV_GUARD_INSTALL)") }
        let f = try FencedMappings()
        let anon = try f.anonymous(64 * Self.page)
        f.touch(anon, write: true, pages: 0..<8)
        f.touch(anon, write: false, pages: 16..<20)
        try f.live.madvise(anon, .guardInstall, offset: 4 * Self.page, length: 2 * Self.page)
        try f.live.madvise(anon, .guardInstall, offset: 40 * Self.page, length: 4 * Self.page)

        let file = try f.file(32 * Self.page, shared: false, directory: try Self.diskDirectory(), sparse: true)
        let path = try #require(file.path)
        let before = Self.kernel(file.start, file.size)
        guard case .vector(let fresh) = before, fresh.allSatisfy({ $0 == 0 }) else {
            try Test.cancel("a fresh sparse file already has pages in the page cache: \(Self.digits(before))")
        }
        for index in [2, 3, 9, 20, 21] { try Self.readPage(path, index) }
        f.touch(file, write: false, pages: 3..<4)
        f.touch(file, write: false, pages: 9..<10)
        f.touch(file, write: true, pages: 20..<21)       // a private copy of a cached page
        try f.live.madvise(file, .guardInstall, offset: 8 * Self.page, length: 4 * Self.page)
        try f.live.madvise(file, .guardInstall, offset: 28 * Self.page, length: 2 * Self.page)

        let mirror = try Mirror()
        try mirror.map(anon)
        var (a, b) = mirror.pages(anon, 0..<8); try mirror.mm.fault(a, b, write: true)
        (a, b) = mirror.pages(anon, 16..<20); try mirror.mm.fault(a, b, write: false)
        (a, b) = mirror.pages(anon, 4..<6); try madviseGuardInstall(mirror.mm, a, b)
        (a, b) = mirror.pages(anon, 40..<44); try madviseGuardInstall(mirror.mm, a, b)
        let object = try mirror.file(of: file, kernel: try KernelView.smaps(), shmem: false)
        try mirror.map(file, kind: .file(object, offset: 0))
        for index in [2, 3, 9, 20, 21] { try mirror.mm.cachePages(of: object, UInt64(index)..<UInt64(index + 1)) }
        (a, b) = mirror.pages(file, 3..<4); try mirror.mm.fault(a, b, write: false)
        (a, b) = mirror.pages(file, 9..<10); try mirror.mm.fault(a, b, write: false)
        (a, b) = mirror.pages(file, 20..<21); try mirror.mm.fault(a, b, write: true)
        (a, b) = mirror.pages(file, 8..<12); try madviseGuardInstall(mirror.mm, a, b)
        (a, b) = mirror.pages(file, 28..<30); try madviseGuardInstall(mirror.mm, a, b)

        let anonVector = compare(mirror, anon.start, anon.size, "anonymous")
        let fileVector = compare(mirror, file.start, file.size, "file")
        // What the comparison rests on, as the kernel answered.
        #expect(anonVector.count == 64 && anonVector[0] == 1 && anonVector[4] == 0 && anonVector[16] == 1 && anonVector[8] == 0)
        #expect(fileVector.count == 32 && fileVector[2] == 1 && fileVector[9] == 1 && fileVector[10] == 0 && fileVector[28] == 0,
                "a guard page over a cached file page is resident, over an uncached one not")
        // Parts of the mappings, with lengths that are not page multiples.
        compare(mirror, anon.start + 3 * UInt64(Self.page), 5 * Self.page + 17, "anonymous, part")
        compare(mirror, file.start + 9 * UInt64(Self.page), 1, "file, one byte")
    }

    /// [vvar], [vvar_vclock] and [vdso]: special mappings (vm_ops, no
    /// file), which mincore does not walk and reports resident whole.
    @Test func specialMappingsPretendResident() throws {
        let mirror = try Mirror()
        var found: [(UInt64, UInt64, String)] = []
        for line in try LiveMappings.selfMaps().split(separator: "\n") {
            guard let name = line.split(separator: " ").last.map(String.init),
                  ["[vvar]", "[vvar_vclock]", "[vdso]"].contains(name) else { continue }
            let bounds = line.split(separator: " ")[0].split(separator: "-").map { UInt64($0, radix: 16)! }
            found.append((bounds[0], bounds[1], name))
        }
        guard !found.isEmpty else { try Test.cancel("this process has no [vdso] or [vvar] (vdso=0?)") }
        for (start, end, name) in found {
            let kind: MappingKind = name == "[vdso]" ? .anonymous : .pfnMap(firstPFN: 0x1000)
            try mirror.mm.mmap(start: start, end: end, access: name == "[vdso]" ? [.read, .exec] : [.read],
                               kind: kind, name: name)
            let v = compare(mirror, start, Int(end - start), name)
            #expect(!v.isEmpty && v.allSatisfy { $0 == 1 }, "\(name)")
        }
    }

    /// The syscall's failures: an unaligned start (EINVAL), a hole in the
    /// range (ENOMEM), a range past the user address limit (ENOMEM); an
    /// empty length succeeds without looking at the VMAs.
    @Test func errorsCarryTheKernelsErrno() throws {
        let f = try FencedMappings()
        let m = try f.anonymous(16 * Self.page)
        f.touch(m, write: true)
        guard munmap(m.pointer + 8 * Self.page, Self.page) == 0 else { throw LiveMappingError.last("munmap") }
        let mirror = try Mirror()
        try mirror.map(m)
        try mirror.mm.fault(m.start, m.end, write: true)
        let (a, b) = mirror.pages(m, 8..<9); try mirror.mm.munmap(a, b)
        let page = UInt64(Self.page)
        let limit = mirror.mm.geometry.userAddressLimit
        compare(mirror, m.start, 8 * Self.page, "before the hole")
        for (start, length, errno) in [(m.start + 1, Self.page, EINVAL), (m.start, m.size, ENOMEM),
                                       (m.start + 8 * page, Self.page, ENOMEM), (limit - page, 2 * Self.page, ENOMEM),
                                       (limit + page, 0, ENOMEM)] {
            #expect(Self.kernel(start, length) == .errno(errno), "the kernel at 0x\(String(start, radix: 16))+\(length)")
            compare(mirror, start, length, "error case")
        }
        compare(mirror, m.start + 8 * page, 0, "empty length on the hole")
        compare(mirror, limit, 0, "empty length at the limit")
    }

    /// A PMD THP (MADV_HUGEPAGE, one byte written) and a 64K mTHP (the 64K
    /// size set to always): resident whole, the rest of the range not.
    @Test func thpAndMTHPAreResidentWhole() throws {
        let f = try FencedMappings()
        let m = try f.anonymous(4 << 20, alignment: 2 << 20)
        try f.live.madvise(m, .hugePage)
        f.touch(m, write: true, pages: 5..<6)
        let words = try KernelView.pagemap(m)
        guard Self.isRoot, let head = words.first, head & PagemapBits.present != 0,
              try LiveMappings.physicalPage(pfn: head & PagemapBits.pfnMask).flags.contains(.thp) else {
            try Test.cancel("the kernel did not back the MADV_HUGEPAGE range with a PMD THP (THP \(HostFacts.current().summary))")
        }
        let mirror = try Mirror()
        try mirror.map(m, extra: [.hugePage])
        try mirror.mm.populateTHP(m.start, m.start + (2 << 20), write: true)
        let v = compare(mirror, m.start, m.size, "PMD THP")
        #expect(v == [UInt8](repeating: 1, count: 512) + [UInt8](repeating: 0, count: 512))

        do { try f.live.setMTHP(sizeKB: 64, "always") } catch { try Test.cancel("mTHP 64K knob: \(error)") }
        let small = try f.anonymous(1 << 20, alignment: 64 << 10)
        f.touch(small, write: true, pages: 17..<18)
        let w = try KernelView.pagemap(small)[17]
        guard w & PagemapBits.present != 0,
              try LiveMappings.physicalPage(pfn: w & PagemapBits.pfnMask).flags.contains(.thp) else {
            try Test.cancel("the kernel did not allocate a 64K mTHP")
        }
        try mirror.map(small)
        let (a, b) = mirror.pages(small, 16..<32); try mirror.mm.populateLargeFolios(a, b, order: 4)
        let s = compare(mirror, small.start, small.size, "64K mTHP")
        #expect(s == [UInt8](repeating: 0, count: 16) + [UInt8](repeating: 1, count: 16) + [UInt8](repeating: 0, count: 224))
    }

    /// Anonymous hugetlb: a faulted huge page is resident, one not faulted
    /// (its PMD table exists) is not.
    @Test func hugetlbPages() throws {
        guard Self.isRoot else { try Test.cancel("needs root to reserve hugetlb pages") }
        let f = try FencedMappings()
        do { try f.live.reserveHugePages(2) } catch { try Test.cancel("hugetlb pool: \(error)") }
        let m: LiveMapping
        do { m = try f.hugetlb(4 << 20) } catch { try Test.cancel("\(error)") }
        f.touch(m, write: true, pages: 0..<1)
        let mirror = try Mirror()
        let file = try mirror.file(of: m, kernel: try KernelView.smaps(), shmem: false)
        try mirror.mm.mmap(start: m.start, end: m.end, access: [.read, .write], kind: .hugetlb(pageSize: 2 << 20, file: file))
        try mirror.mm.populateHugetlb(m.start, m.start + (2 << 20), write: true)
        let v = compare(mirror, m.start, m.size, "hugetlb")
        #expect(v == [UInt8](repeating: 1, count: 512) + [UInt8](repeating: 0, count: 512))
    }

    /// MADV_PAGEOUT: the PTEs become swap entries at once, but the folios
    /// written out stay in the swap cache until a later reclaim frees them
    /// (writeback is asynchronous on a swap file), so mincore reports them
    /// resident. The kernel's swap cache cannot be read from outside: which
    /// slots it still caches is taken from its answer and placed in the
    /// mirror's swap cache, the rest of the vector is compared as it is.
    @Test func swappedPagesStillInTheSwapCache() throws {
        guard Self.isRoot else { try Test.cancel("needs root for swapon") }
        let f = try FencedMappings()
        do { _ = try f.live.enableSwap(sizeMiB: 16) } catch { try Test.cancel("no swap: \(error)") }
        let m = try f.anonymous(32 * Self.page)
        f.touch(m, write: true)
        do { try f.live.madvise(m, .pageOut, offset: 0, length: 16 * Self.page) } catch { try Test.cancel("MADV_PAGEOUT: \(error)") }
        let words = try KernelView.pagemap(m)
        guard words.prefix(16).allSatisfy({ $0 & PagemapBits.swap != 0 }) else {
            try Test.cancel("the kernel kept \(words.prefix(16).filter { $0 & PagemapBits.swap == 0 }.count) of 16 pages mapped")
        }
        guard case .vector(let k) = Self.kernel(m.start, m.size) else { Issue.record("mincore failed"); return }
        let cached = (0..<16).filter { k[$0] == 1 }
        print("LIVE the kernel keeps \(cached.count) of 16 written-out folios in the swap cache")
        #expect(k.suffix(16).allSatisfy { $0 == 1 }, "pages never swapped are resident")

        let mirror = try Mirror()
        try mirror.map(m)
        try mirror.mm.fault(m.start, m.end, write: true)
        let (a, b) = mirror.pages(m, 0..<16); try mirror.mm.swapOut(a, b)
        for i in cached {
            guard case .softLeaf(.pte, _, let e) = mirror.mm.translate(m.start + UInt64(i * Self.page)),
                  case .swap(let entry) = e.leaf else { Issue.record("page \(i) is not a swap entry in the mirror"); continue }
            let folio = try mirror.memory.adoptFolio(pfn: (1 << 30) + UInt64(i), order: 0, node: 0,
                                                     flags: [.anon, .swapBacked, .uptodate, .lru], refcount: 1)
            try mirror.memory.placeInSwapCache(folio, offset: entry.offset)
        }
        compare(mirror, m.start, m.size, "swapped")
    }
}
