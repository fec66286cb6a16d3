import Foundation
import Synchronization
import Testing
import Glibc
@testable import MemoryModel
import PageWalk
import KernelSnapshot
import LiveKernel
@testable import ProcFS

/// Mappings in this process fenced by PROT_NONE reservations, so the kernel
/// never merges them with a neighbour (other test threads map memory too).
final class FencedMappings {
    private var reservations: [(UInt, Int)] = []
    private var paths: [String] = []
    let live = LiveMappings()   // sysfs knobs, swap, hugetlb pool: undone at tear-down
    static let page = 4096

    /// Pins the THP knobs to the baseline the tests are written for (root;
    /// restored at tear-down). Without root the host must already be at the
    /// baseline, or the calling test is cancelled, saying which knob differs.
    init() throws {
        if let why = try HostFacts.pinTHPBaselineIfPossible(live) { try Test.cancel(Comment(rawValue: why)) }
    }

    deinit {
        for (a, s) in reservations { munmap(UnsafeMutableRawPointer(bitPattern: a), s) }
        for p in paths { unlink(p) }
        live.tearDown()
    }

    private func reserve(_ size: Int, alignment: Int) throws -> UInt {
        let total = size + 2 * alignment + 2 * Self.page
        guard let p = mmap(nil, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              p != MAP_FAILED else { throw LiveMappingError.syscall(name: "mmap", errno: errno, reason: "reserve") }
        reservations.append((UInt(bitPattern: p), total))
        let raw = UInt(bitPattern: p) + UInt(Self.page)
        return (raw + UInt(alignment) - 1) & ~(UInt(alignment) - 1)
    }

    private func mapFixed(_ size: Int, alignment: Int, flags: Int32, fd: Int32, kind: LiveMapping.Kind,
                          path: String?) throws -> LiveMapping {
        let at = try reserve(size, alignment: alignment)
        let p = mmap(UnsafeMutableRawPointer(bitPattern: at), size, PROT_READ | PROT_WRITE, flags | MAP_FIXED, fd, 0)
        guard p == UnsafeMutableRawPointer(bitPattern: at) else {
            let e = errno
            if flags & MAP_HUGETLB != 0 {
                throw LiveMappingError.unavailable(feature: "hugetlb", reason: "mmap(MAP_HUGETLB): \(String(cString: strerror(e)))")
            }
            throw LiveMappingError.syscall(name: "mmap", errno: e, reason: String(cString: strerror(e)))
        }
        return LiveMapping(address: at, size: size, kind: kind, path: path)
    }

    func anonymous(_ size: Int, alignment: Int = 4096, shared: Bool = false) throws -> LiveMapping {
        try mapFixed(size, alignment: alignment, flags: (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, fd: -1,
                     kind: shared ? .sharedAnonymous : .anonymous, path: nil)
    }

    func hugetlb(_ size: Int) throws -> LiveMapping {
        try mapFixed(size, alignment: 2 << 20, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (21 << 26), fd: -1,
                     kind: .hugetlb(pageSize: 2 << 20), path: nil)
    }

    /// A file of `size` bytes in `directory` (written and fsync'ed, so its
    /// page cache is clean), mapped private or shared. Written one page per
    /// call: the page cache then holds order-0 folios, as the mirror's file
    /// does (a larger write lets tmpfs and ext4 allocate large folios, which
    /// a fault maps whole). `sparse`: only sized (ftruncate), so a fresh
    /// file has nothing in the page cache.
    func file(_ size: Int, shared: Bool, directory: String = "/tmp", shmem: Bool = false,
              sparse: Bool = false) throws -> LiveMapping {
        let path = "\(directory)/pagewalk-procfs-\(getpid())-\(Self.fileSerial.add(1, ordering: .relaxed).newValue)"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw LiveMappingError.unavailable(feature: path, reason: String(cString: strerror(errno))) }
        paths.append(path)
        defer { close(fd) }
        if sparse {
            if ftruncate(fd, off_t(size)) != 0 { throw LiveMappingError.last("ftruncate(\(path))") }
        } else {
            let block = [UInt8](repeating: 0x41, count: Self.page)
            for _ in 0..<(size / Self.page) { _ = block.withUnsafeBytes { Glibc.write(fd, $0.baseAddress!, Self.page) } }
            fsync(fd)
        }
        return try mapFixed(size, alignment: Self.page, flags: shared ? MAP_SHARED : MAP_PRIVATE, fd: fd,
                            kind: shmem ? .shmem : (shared ? .fileShared : .filePrivate), path: path)
    }
    private static let fileSerial = Atomic<Int>(0)

    func touch(_ m: LiveMapping, write: Bool, pages: Range<Int>? = nil) {
        live.touch(m, write: write, offset: (pages?.lowerBound ?? 0) * Self.page,
                   length: pages.map { $0.count * Self.page })
    }
}

/// What the kernel prints about this process.
enum KernelView {
    /// /proc/self/smaps, one block per VMA start.
    static func smaps() throws -> [UInt64: String] {
        blocks(try LiveMappings.selfSmaps())
    }

    static func blocks(_ text: String) -> [UInt64: String] {
        var out: [UInt64: String] = [:]
        var current: (UInt64, [Substring])? = nil
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if let dash = line.firstIndex(of: "-"), let start = UInt64(line[..<dash], radix: 16),
               line.contains(" "), !line.hasPrefix("VmFlags") {
                if let c = current { out[c.0] = c.1.joined(separator: "\n") + "\n" }
                current = (start, [line])
            } else if !line.isEmpty {
                current?.1.append(line)
            }
        }
        if let c = current { out[c.0] = c.1.joined(separator: "\n") + "\n" }
        return out
    }

    /// /proc/self/numa_maps, one line per VMA start.
    static func numaMaps() throws -> [UInt64: String] {
        var out: [UInt64: String] = [:]
        for line in try LiveMappings.selfNumaMaps().split(separator: "\n") {
            guard let sp = line.firstIndex(of: " "), let start = UInt64(line[..<sp], radix: 16) else { continue }
            out[start] = String(line) + "\n"
        }
        return out
    }

    /// A numa_maps line with its `N<node>=<pages>` fields replaced by one
    /// `N*=<sum>` where the first stood.
    static func summingNodes(_ line: String) -> String {
        var out: [Substring] = [], sum = 0, at: Int?
        for token in line.split(separator: " ") {
            if token.first == "N", let eq = token.firstIndex(of: "="), token[token.index(after: token.startIndex)..<eq].allSatisfy(\.isNumber),
               let n = Int(token[token.index(after: eq)...].trimmingCharacters(in: .newlines)) {
                sum += n
                if at == nil { at = out.count; out.append("") }
            } else {
                out.append(token)
            }
        }
        if let at { out[at] = "N*=\(sum)" }
        return out.joined(separator: " ").trimmingCharacters(in: .newlines) + "\n"
    }

    static func pagemap(_ m: LiveMapping) throws -> [UInt64] {
        try LiveMappings.selfPagemap(m).map(\.rawValue)
    }

    /// dev, inode and name of the VMA starting at `start`, from its maps line.
    static func identity(_ smapsBlock: String) -> (DeviceNumber, UInt64, String) {
        let header = smapsBlock.split(separator: "\n")[0]
        let fields = header.split(separator: " ", omittingEmptySubsequences: true)
        let dev = fields[3].split(separator: ":").map { UInt32($0, radix: 16)! }
        let name = header.count > 73 ? String(header.dropFirst(73)) : ""
        return (DeviceNumber(major: dev[0], minor: dev[1]), UInt64(fields[4])!, name)
    }

    /// hugepages-64kB/enabled when the tests started.
    static let initialMTHP64K: String? = try? LiveMappings.readSetting(path: LiveMappings.mthpEnabledPath(sizeKB: 64))
}

/// An address space mirroring some of this process's mappings.
final class Mirror {
    let memory: PhysicalMemory
    let mm: AddressSpace

    let host: HostFacts

    /// A model of this host's kernel: its paging levels, soft-dirty
    /// tracking, huge-zero-page knob and vsyscall mode (the gate VMA). The mirror reproduces x86-64 only
    /// (arm64 folds contiguous PTEs the way its own memory manager decides),
    /// so on any other host the calling test is cancelled, saying so.
    /// `swapSlots` 0 models a host with no swap active.
    init(swapSlots: Int = 1 << 16) throws {
        host = HostFacts.current()
        guard host.architecture == .x86_64, let geometry = host.geometry else {
            try Test.cancel("the live mirror models x86-64 hosts; this host: \(host.summary)")
        }
        memory = try PhysicalMemory(budgetBytes: 1 << 30, nodes: 1, swapSlots: swapSlots)
        mm = try AddressSpace(geometry: geometry, memory: memory,
                              options: AddressSpaceOptions(softDirty: host.softDirty, useHugeZeroPage: host.useHugeZeroPage,
                                                           foldContiguousPTEs: false, pid: Int(getpid()),
                                                           vsyscall: host.vsyscall,
                                                           faultAroundBytes: Mirror.hostFaultAroundBytes()))
    }

    /// The host's fault_around_bytes: debugfs has it when mounted; without
    /// debugfs nobody can have changed it, so the kernel's default holds.
    static func hostFaultAroundBytes() -> UInt64 {
        guard let text = try? String(contentsOfFile: "/sys/kernel/debug/fault_around_bytes", encoding: .utf8),
              let v = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            return AddressSpaceOptions.defaultFaultAroundBytes
        }
        return v
    }

    /// The file object of a file-backed live VMA, with the kernel's identity.
    func file(of m: LiveMapping, kernel: [UInt64: String], shmem: Bool) throws -> FileObject {
        guard let block = kernel[m.start] else { throw LiveMappingError.invalidArgument("no kernel VMA at \(m)") }
        let (dev, inode, name) = KernelView.identity(block)
        return memory.file(path: name, device: dev, inode: inode, isShmem: shmem)
    }

    func map(_ m: LiveMapping, shared: Bool = false, kind: MappingKind = .anonymous, extra: VMFlags = []) throws {
        try mm.mmap(start: m.start, end: m.end, access: [.read, .write], shared: shared, kind: kind, extraFlags: extra)
    }

    /// Mirrors a written anonymous mapping and a read private file mapping
    /// (the kernel's file identity for the latter), every page faulted in.
    func mapWrittenAnonAndReadFile(_ anon: LiveMapping, _ file: LiveMapping) throws {
        try map(anon)
        let fo = try self.file(of: file, kernel: try KernelView.smaps(), shmem: false)
        try map(file, kind: .file(fo, offset: 0))
        try mm.fault(anon.start, anon.end, write: true)
        try mm.fault(file.start, file.end, write: false)
    }

    func pages(_ m: LiveMapping, _ r: Range<Int>) -> (UInt64, UInt64) {
        (m.start + UInt64(r.lowerBound) * 4096, m.start + UInt64(r.upperBound) * 4096)
    }

    /// Copies the LRU and dirty state of every page the kernel maps in `m`
    /// (from /proc/kpageflags) onto the model's folio at the same address:
    /// these depend on reclaim and writeback, which the model does not run.
    ///
    /// A folio the kernel holds off the LRU for a moment (in a per-CPU
    /// batch, or isolated by compaction or reclaim) would be skipped by the
    /// model's LRU-based advice; with `untilOnLRU` the copy is made again,
    /// after the batches are drained, until every mapped folio reads LRU or
    /// the tries run out.
    func mirrorPageFlags(_ m: LiveMapping, untilOnLRU: Bool = false) throws {
        for attempt in 0..<4 {
            if untilOnLRU { LiveWriterTests.drainBatches() }
            if try mirrorPageFlagsOnce(m) || !untilOnLRU { return }
            if attempt == 3 { print("LIVE some folios of \(m) stayed off the LRU after 4 tries") }
            usleep(20_000)
        }
    }

    /// One copy; true when every copied folio was on the LRU.
    private func mirrorPageFlagsOnce(_ m: LiveMapping) throws -> Bool {
        var allOnLRU = true
        let words = try LiveMappings.selfPagemap(m)
        let map: [(KPageFlags, PageFlags)] = [(.referenced, .referenced), (.dirty, .dirty), (.active, .active),
                                               (.writeback, .writeback), (.unevictable, .unevictable),
                                               (.mlocked, .mlocked), (.swapCache, .swapCache), (.lru, .lru),
                                               (.swapBacked, .swapBacked)]
        var seen = Set<UInt64>()
        for (i, w) in words.enumerated() {
            guard let pfn = w.pfn, pfn != 0 else { continue }
            let addr = m.start + UInt64(i) * 4096
            guard case .present(_, _, let modelPFN) = mm.translate(addr),
                  let folio = memory.folio(containing: modelPFN), !folio.isZero, seen.insert(folio.pfn).inserted else { continue }
            let k = try LiveMappings.physicalPage(pfn: pfn).flags
            for (kf, pf) in map { folio.setFlags(pf, k.contains(kf)) }
            if !k.contains(.lru) { allOnLRU = false }
        }
        return allOnLRU
    }
}

/// The kernel's views of parts of this process against the mirror's.
enum LiveComparison {
    /// Every difference between the kernel's smaps blocks, numa_maps lines
    /// and pagemap words for the VMAs starting in `ranges` and the model's,
    /// each described; empty when they agree. The LRU and dirty state of
    /// each mapped page is first copied from /proc/kpageflags (reclaim and
    /// writeback decide it, and the model runs neither); PFNs and swap
    /// offsets are masked (the kernel's allocation choices).
    ///
    /// The page flags move on their own (a per-CPU LRU batch drained, a
    /// folio activated) between the copy and the kernel's numa_maps read, so
    /// a difference is looked at again, twice, with the flags copied anew;
    /// the model is deterministic, so a difference of its own stays.
    static func mismatches(_ mirror: Mirror, _ ranges: [Range<UInt64>], thp: THPSettings? = nil) throws -> [String] {
        var problems = try mismatchesOnce(mirror, ranges, thp: thp)
        for _ in 0..<2 where !problems.isEmpty {
            usleep(50_000)
            problems = try mismatchesOnce(mirror, ranges, thp: thp)
        }
        return problems
    }

    private static func mismatchesOnce(_ mirror: Mirror, _ ranges: [Range<UInt64>], thp: THPSettings?) throws -> [String] {
        for r in ranges {
            try mirror.mirrorPageFlags(LiveMapping(address: UInt(r.lowerBound), size: r.count, kind: .anonymous))
        }
        let kernelSmaps = try KernelView.smaps()
        var kernelNuma = try KernelView.numaMaps()
        var options = mirror.host.procOptions()
        if let thp { options.thp = thp }
        var ours = KernelView.blocks(try Smaps.text(mirror.mm, options: options))
        if !mirror.host.marksMaybeGuard {
            // A guard-region kernel before VM_MAYBE_GUARD prints no `gu`.
            print("LIVE host kernel does not mark VM_MAYBE_GUARD: `gu` left out of the model's VmFlags")
            ours = ours.mapValues { $0.replacingOccurrences(of: " gu ", with: " ") }
        }
        var oursNuma: [UInt64: String] = [:]
        for line in try NumaMaps.text(mirror.mm, options: options).split(separator: "\n") {
            oursNuma[UInt64(line.split(separator: " ")[0], radix: 16)!] = String(line) + "\n"
        }
        if mirror.host.numaNodes > 1 {
            // The kernel's node choice per page is its own: per-node counts
            // are compared as their sum.
            print("LIVE host has \(mirror.host.numaNodes) NUMA nodes: numa_maps N<node>= counts compared as a sum")
            for (k, v) in kernelNuma { kernelNuma[k] = KernelView.summingNodes(v) }
            for (k, v) in oursNuma { oursNuma[k] = KernelView.summingNodes(v) }
        }
        var out: [String] = []
        for r in ranges {
            let kStarts = Set(kernelSmaps.keys.filter { r.contains($0) }), oStarts = Set(ours.keys.filter { r.contains($0) })
            if kStarts.isEmpty { out.append("kernel has no VMA in \(hx(r.lowerBound))-\(hx(r.upperBound))") }
            for start in kStarts.union(oStarts).sorted() {
                if ours[start] != kernelSmaps[start] {
                    out.append("smaps of the VMA at \(hx(start)):\n--- kernel\n\(kernelSmaps[start] ?? "none\n")--- model\n\(ours[start] ?? "none\n")")
                }
                if oursNuma[start] != kernelNuma[start] {
                    out.append("numa_maps of the VMA at \(hx(start)):\n kernel \(kernelNuma[start] ?? "none\n") model  \(oursNuma[start] ?? "none\n")")
                }
            }
            let m = LiveMapping(address: UInt(r.lowerBound), size: r.count, kind: .anonymous)
            let kernelWords = try KernelView.pagemap(m)
            let ourWords = try Pagemap.words(mirror.mm, r, privileged: true)
            let ourUnprivileged = try Pagemap.words(mirror.mm, r, privileged: false)
            var words: [String] = []
            for i in kernelWords.indices {
                let k = kernelWords[i], o = i < ourWords.count ? ourWords[i] : 0
                let masked = k & PagemapBits.present != 0 || (k & PagemapBits.swap != 0 && k & PagemapBits.guardRegion == 0)
                let mask = masked ? ~PagemapBits.pfnMask : ~0
                let unprivileged = i < ourUnprivileged.count ? ourUnprivileged[i] : 0
                if k & mask != o & mask || unprivileged != o & ~PagemapBits.pfnMask {
                    words.append("page \(hx(r.lowerBound + UInt64(i) * 4096)): kernel 0x\(String(k, radix: 16)) model 0x\(String(o, radix: 16))")
                }
            }
            if !words.isEmpty { out.append("pagemap: \(words.count) words differ: \(words.prefix(6))") }
        }
        return out
    }
}

/// Hexadecimal, as the kernel prints addresses.
func hx(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
