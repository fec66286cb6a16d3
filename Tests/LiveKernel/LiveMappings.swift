#if canImport(Glibc)
import Glibc
#endif
import Foundation
import KernelSnapshot

/// A mapping created by `LiveMappings` in the current process.
public struct LiveMapping: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        case anonymous
        /// MAP_SHARED | MAP_ANONYMOUS (shows as `/dev/zero (deleted)`).
        case sharedAnonymous
        case filePrivate
        case fileShared
        /// memfd_create or /dev/shm, mapped shared.
        case shmem
        case hugetlb(pageSize: Int)
    }
    public let address: UInt
    public let size: Int
    public let kind: Kind
    /// Backing file (temp file, /dev/shm file or memfd name), if any.
    public let path: String?

    public init(address: UInt, size: Int, kind: Kind, path: String? = nil) {
        self.address = address
        self.size = size
        self.kind = kind
        self.path = path
    }

    public var start: UInt64 { UInt64(address) }
    public var end: UInt64 { UInt64(address) + UInt64(size) }
    public var pageCount: Int { size / LiveMappings.pageSize }
    public var pointer: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: address)! }
    public var description: String {
        "\(kind) 0x\(String(address, radix: 16))+0x\(String(size, radix: 16))" + (path.map { " \($0)" } ?? "")
    }
}

public enum LiveMappingError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A system call failed.
    case syscall(name: String, errno: Int32, reason: String)
    /// The feature cannot be used on this machine (no swap tools, hugetlb
    /// pool empty, THP disabled, sysfs file absent, …): skip, don't crash.
    case unavailable(feature: String, reason: String)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .syscall(let n, let e, let r): return "\(n) failed (errno \(e)): \(r)"
        case .unavailable(let f, let r): return "\(f) unavailable: \(r)"
        case .invalidArgument(let r): return "invalid argument: \(r)"
        }
    }

    public static func last(_ name: String) -> LiveMappingError {
        let e = errno
        return .syscall(name: name, errno: e, reason: String(cString: strerror(e)))
    }
}

/// Creates real mappings and kernel settings for tests and benchmarks, and
/// undoes all of it in `tearDown()` (also run on deinit), newest first.
public final class LiveMappings {
    public static let pageSize = 4096
    public static let pmdSize = 2 << 20

    public enum Advice: Int32, Sendable {
        case normal = 0, random = 1, sequential = 2, willNeed = 3, dontNeed = 4
        case free = 8, remove = 9, dontFork = 10, doFork = 11, mergeable = 12, unmergeable = 13
        case hugePage = 14, noHugePage = 15, dontDump = 16, doDump = 17
        case wipeOnFork = 18, keepOnFork = 19, cold = 20, pageOut = 21
        case populateRead = 22, populateWrite = 23, dontNeedLocked = 24, collapse = 25
        case guardInstall = 102, guardRemove = 103
    }

    private enum Undo {
        case unmap(UInt, Int)
        case unlink(String)
        case restoreSetting(path: String, value: String)
        case swapOff(String)
    }

    private var undo: [Undo] = []
    /// Keeps reads in `touch(write: false)` from being optimised away.
    public private(set) var touchChecksum: UInt64 = 0

    public init() {}
    deinit { tearDown() }

    // MARK: anonymous memory

    /// mmap anonymous memory; `alignment` above 4 KiB (e.g. `pmdSize`) is
    /// obtained by over-allocating and trimming both ends.
    public func anonymous(size: Int, alignment: Int = LiveMappings.pageSize,
                          protection: Int32 = PROT_READ | PROT_WRITE, shared: Bool = false,
                          extraFlags: Int32 = 0) throws -> LiveMapping {
        let kind: LiveMapping.Kind = shared ? .sharedAnonymous : .anonymous
        let flags = (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | extraFlags
        let address = try mapAligned(size: size, alignment: alignment, protection: protection, flags: flags, fd: -1)
        return LiveMapping(address: address, size: size, kind: kind)
    }

    /// Anonymous memory starting on a 2 MiB boundary (candidate for a PMD THP).
    public func anonymousPMDAligned(size: Int, protection: Int32 = PROT_READ | PROT_WRITE) throws -> LiveMapping {
        try anonymous(size: size, alignment: Self.pmdSize, protection: protection)
    }

    private func mapAligned(size: Int, alignment: Int, protection: Int32, flags: Int32, fd: Int32,
                            offset: off_t = 0) throws -> UInt {
        guard size > 0, size % Self.pageSize == 0 else {
            throw LiveMappingError.invalidArgument("size \(size) is not a positive multiple of 4096")
        }
        guard alignment >= Self.pageSize, alignment & (alignment - 1) == 0 else {
            throw LiveMappingError.invalidArgument("alignment \(alignment) is not a power of two >= 4096")
        }
        let slack = alignment > Self.pageSize ? alignment : 0
        guard let p = mmap(nil, size + slack, protection, flags, fd, offset),
              p != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw LiveMappingError.last("mmap(\(size + slack) bytes)")
        }
        let raw = UInt(bitPattern: p)
        let aligned = (raw + UInt(alignment) - 1) & ~(UInt(alignment) - 1)
        if slack > 0 {
            let head = Int(aligned - raw)
            let tail = slack - head
            if head > 0 { munmap(p, head) }
            if tail > 0 { munmap(UnsafeMutableRawPointer(bitPattern: aligned + UInt(size)), tail) }
        }
        undo.append(.unmap(aligned, size))
        return aligned
    }

    // MARK: touching and advice

    /// Reads or writes one byte in each page of [offset, offset+length).
    public func touch(_ m: LiveMapping, write: Bool = true, offset: Int = 0, length: Int? = nil,
                      value: UInt8 = 0x5a) {
        let len = length ?? (m.size - offset)
        var sum: UInt64 = 0
        var o = offset
        while o < offset + len {
            let p = m.pointer + o
            if write {
                p.storeBytes(of: value, as: UInt8.self)
            } else {
                sum &+= UInt64(p.load(as: UInt8.self))
            }
            o += Self.pageSize
        }
        touchChecksum &+= sum
    }

    public func madvise(_ m: LiveMapping, _ advice: Advice, offset: Int = 0, length: Int? = nil) throws {
        let len = length ?? (m.size - offset)
        if Glibc.madvise(m.pointer + offset, len, advice.rawValue) != 0 {
            let e = errno
            if e == EINVAL && (advice == .collapse || advice == .guardInstall || advice == .guardRemove
                               || advice == .hugePage || advice == .pageOut) {
                throw LiveMappingError.unavailable(feature: "madvise(\(advice))",
                    reason: "kernel refused with EINVAL (unsupported here or not applicable to this mapping)")
            }
            throw LiveMappingError.syscall(name: "madvise(\(advice))", errno: e, reason: String(cString: strerror(e)))
        }
    }

    public func mprotect(_ m: LiveMapping, _ protection: Int32, offset: Int = 0, length: Int? = nil) throws {
        if Glibc.mprotect(m.pointer + offset, length ?? (m.size - offset), protection) != 0 {
            throw LiveMappingError.last("mprotect")
        }
    }

    /// mlock (undone by the mapping's munmap at tear-down).
    public func mlock(_ m: LiveMapping, offset: Int = 0, length: Int? = nil) throws {
        if Glibc.mlock(m.pointer + offset, length ?? (m.size - offset)) != 0 {
            let e = errno
            if e == ENOMEM || e == EPERM {
                throw LiveMappingError.unavailable(feature: "mlock", reason: "RLIMIT_MEMLOCK or privilege: \(String(cString: strerror(e)))")
            }
            throw LiveMappingError.syscall(name: "mlock", errno: e, reason: String(cString: strerror(e)))
        }
    }

    private typealias Mlock2 = @convention(c) (UnsafeRawPointer?, Int, Int32) -> Int32
    /// glibc's mlock2(), looked up at run time (the Glibc module does not
    /// declare it).
    private static let mlock2Function: Mlock2? = {
        guard let handle = dlopen(nil, RTLD_NOW), let sym = dlsym(handle, "mlock2") else { return nil }
        return unsafeBitCast(sym, to: Mlock2.self)
    }()
    /// `MLOCK_ONFAULT` (include/uapi/asm-generic/mman-common.h).
    public static let mlockOnFault: Int32 = 1

    /// mlock2(2) on raw memory: 0, or -1 with errno set (ENOSYS without it).
    public static func mlock2(_ p: UnsafeMutableRawPointer, _ length: Int, flags: Int32) -> Int32 {
        guard let f = mlock2Function else { errno = ENOSYS; return -1 }
        return f(UnsafeRawPointer(p), length, flags)
    }

    private typealias Mremap = @convention(c) (UnsafeMutableRawPointer?, Int, Int, Int32, UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer?
    /// glibc's mremap(), looked up at run time: it is variadic in C (the new
    /// address comes last), which the Glibc module does not import.
    private static let mremapFunction: Mremap? = {
        guard let handle = dlopen(nil, RTLD_NOW), let sym = dlsym(handle, "mremap") else { return nil }
        return unsafeBitCast(sym, to: Mremap.self)
    }()
    /// `MREMAP_MAYMOVE` and `MREMAP_FIXED` (include/uapi/linux/mman.h).
    public static let mremapMayMove: Int32 = 1
    public static let mremapFixed: Int32 = 2

    /// mremap(2) moving `length` bytes at `p` to `destination` (MAYMOVE |
    /// FIXED, the length kept): 0, or the errno.
    public static func mremapMove(_ p: UnsafeMutableRawPointer, _ length: Int, to destination: UnsafeMutableRawPointer) -> Int32 {
        guard let f = mremapFunction else { return ENOSYS }
        let q = f(p, length, length, mremapMayMove | mremapFixed, destination)
        return q == destination ? 0 : errno
    }

    /// mlock2(MLOCK_ONFAULT): locked as pages fault in, nothing populated.
    public func mlockOnFault(_ m: LiveMapping, offset: Int = 0, length: Int? = nil) throws {
        guard let mlock2 = Self.mlock2Function else {
            throw LiveMappingError.unavailable(feature: "mlock2", reason: "libc has no mlock2")
        }
        if mlock2(UnsafeRawPointer(m.pointer + offset), length ?? (m.size - offset), Self.mlockOnFault) != 0 {
            throw LiveMappingError.last("mlock2")
        }
    }

    public func munlock(_ m: LiveMapping, offset: Int = 0, length: Int? = nil) throws {
        if Glibc.munlock(m.pointer + offset, length ?? (m.size - offset)) != 0 {
            throw LiveMappingError.last("munlock")
        }
    }

    /// Unmaps now (and forgets the pending tear-down for it).
    public func unmap(_ m: LiveMapping) throws {
        if munmap(m.pointer, m.size) != 0 { throw LiveMappingError.last("munmap") }
        undo.removeAll { if case .unmap(let a, let s) = $0 { return a == m.address && s == m.size }; return false }
    }

    // MARK: files and shmem

    /// A temp file of `size` bytes filled with `fill`, mapped private or shared.
    public func fileMapping(size: Int, shared: Bool, protection: Int32 = PROT_READ | PROT_WRITE,
                            fill: UInt8 = 0x41, directory: String = "/tmp",
                            alignment: Int = LiveMappings.pageSize) throws -> LiveMapping {
        var template = Array("\(directory)/pagewalk-live-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        if fd < 0 { throw LiveMappingError.last("mkstemp in \(directory)") }
        defer { close(fd) }
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        undo.append(.unlink(path))
        try fillFile(fd: fd, size: size, fill: fill, name: path)
        let flags = shared ? MAP_SHARED : MAP_PRIVATE
        let address = try mapAligned(size: size, alignment: alignment, protection: protection, flags: flags, fd: fd)
        return LiveMapping(address: address, size: size, kind: shared ? .fileShared : .filePrivate, path: path)
    }

    /// Shared memory: a memfd (`/memfd:NAME (deleted)` in maps) or, with
    /// `useDevShm`, a file under /dev/shm; mapped MAP_SHARED.
    public func shmem(size: Int, name: String = "pagewalk", useDevShm: Bool = false,
                      protection: Int32 = PROT_READ | PROT_WRITE, alignment: Int = LiveMappings.pageSize) throws -> LiveMapping {
        let fd: Int32
        let path: String
        if useDevShm {
            path = "/dev/shm/\(name)-\(getpid())-\(undo.count)"
            fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if fd < 0 {
                let e = errno
                throw LiveMappingError.unavailable(feature: "/dev/shm", reason: "open \(path): \(String(cString: strerror(e)))")
            }
            undo.append(.unlink(path))
        } else {
            guard let create = Self.memfdCreate else {
                throw LiveMappingError.unavailable(feature: "memfd_create", reason: "libc does not export memfd_create")
            }
            fd = create(name, 1 /* MFD_CLOEXEC */)
            if fd < 0 {
                let e = errno
                throw LiveMappingError.unavailable(feature: "memfd_create", reason: String(cString: strerror(e)))
            }
            path = "/memfd:\(name)"
        }
        defer { close(fd) }
        if ftruncate(fd, off_t(size)) != 0 { throw LiveMappingError.last("ftruncate(\(path))") }
        let address = try mapAligned(size: size, alignment: alignment, protection: protection, flags: MAP_SHARED, fd: fd)
        return LiveMapping(address: address, size: size, kind: .shmem, path: path)
    }

    private typealias MemfdCreate = @convention(c) (UnsafePointer<CChar>, UInt32) -> Int32
    /// glibc's memfd_create, looked up at run time (the Glibc module does not
    /// import it and syscall(2) is variadic).
    private static let memfdCreate: MemfdCreate? = {
        guard let handle = dlopen(nil, RTLD_NOW), let sym = dlsym(handle, "memfd_create") else { return nil }
        return unsafeBitCast(sym, to: MemfdCreate.self)
    }()

    private func fillFile(fd: Int32, size: Int, fill: UInt8, name: String) throws {
        let block = [UInt8](repeating: fill, count: min(size, 1 << 20))
        var done = 0
        while done < size {
            let n = block.withUnsafeBytes { write(fd, $0.baseAddress!, min($0.count, size - done)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw LiveMappingError.last("write(\(name))")
            }
            done += n
        }
    }

    // MARK: hugetlb

    /// sysfs nr_hugepages for a huge page size (2048 uses /proc/sys/vm/nr_hugepages).
    public static func nrHugepagesPath(pageSizeKB: Int) -> String {
        pageSizeKB == 2048 ? "/proc/sys/vm/nr_hugepages"
            : "/sys/kernel/mm/hugepages/hugepages-\(pageSizeKB)kB/nr_hugepages"
    }

    /// Raises the hugetlb pool by `count` pages of `pageSizeKB`; the old value
    /// is restored at tear-down. Throws `.unavailable` if the kernel could not
    /// allocate them all (the pool is still restored later).
    @discardableResult
    public func reserveHugePages(_ count: Int, pageSizeKB: Int = 2048) throws -> Int {
        let path = Self.nrHugepagesPath(pageSizeKB: pageSizeKB)
        guard FileManager.default.fileExists(atPath: path) else {
            throw LiveMappingError.unavailable(feature: "hugetlb \(pageSizeKB)kB", reason: "\(path) does not exist")
        }
        let old = try Self.readSetting(path: path)
        guard let oldCount = Int(old) else {
            throw LiveMappingError.unavailable(feature: "hugetlb", reason: "\(path) holds '\(old)'")
        }
        try setSetting(path: path, value: String(oldCount + count))
        let now = Int(try Self.readSetting(path: path)) ?? oldCount
        if now < oldCount + count {
            throw LiveMappingError.unavailable(feature: "hugetlb \(pageSizeKB)kB",
                reason: "asked for \(count) more huge pages, kernel provided \(now - oldCount)")
        }
        return now - oldCount
    }

    /// Anonymous hugetlb memory (MAP_HUGETLB with the page size encoded).
    public func hugetlb(size: Int, pageSize: Int = LiveMappings.pmdSize,
                        protection: Int32 = PROT_READ | PROT_WRITE, shared: Bool = false) throws -> LiveMapping {
        guard pageSize > 0, pageSize & (pageSize - 1) == 0, size > 0, size % pageSize == 0 else {
            throw LiveMappingError.invalidArgument("hugetlb size \(size) must be a positive multiple of the page size \(pageSize)")
        }
        let log2 = Int32(pageSize.trailingZeroBitCount)
        let flags = (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | MAP_HUGETLB | (log2 << 26)
        guard let p = mmap(nil, size, protection, flags, -1, 0), p != UnsafeMutableRawPointer(bitPattern: -1) else {
            let e = errno
            if e == ENOMEM || e == EINVAL {
                throw LiveMappingError.unavailable(feature: "hugetlb \(pageSize >> 10)kB",
                    reason: "mmap(MAP_HUGETLB) failed: \(String(cString: strerror(e))); reserve pages with reserveHugePages")
            }
            throw LiveMappingError.syscall(name: "mmap(MAP_HUGETLB)", errno: e, reason: String(cString: strerror(e)))
        }
        let address = UInt(bitPattern: p)
        undo.append(.unmap(address, size))
        return LiveMapping(address: address, size: size, kind: .hugetlb(pageSize: pageSize))
    }

    // MARK: settings (sysfs / procfs knobs)

    public static let thpDirectory = "/sys/kernel/mm/transparent_hugepage"

    /// `.../hugepages-<N>kB/enabled` for an mTHP (or PMD, 2048) size.
    public static func mthpEnabledPath(sizeKB: Int) -> String {
        "\(thpDirectory)/hugepages-\(sizeKB)kB/enabled"
    }

    /// The current value of a knob: the `[selected]` word when the file lists
    /// choices (`always [madvise] never`), else the trimmed text.
    public static func readSetting(path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let e = errno
            throw LiveMappingError.unavailable(feature: path, reason: String(cString: strerror(e)))
        }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        if n < 0 { throw LiveMappingError.last("read(\(path))") }
        let text = String(decoding: buf[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if let open = text.firstIndex(of: "["), let close = text[open...].firstIndex(of: "]") {
            return String(text[text.index(after: open)..<close])
        }
        return text
    }

    /// Writes a knob (no restore: see `setSetting` and `withSetting`).
    public static func writeSetting(path: String, value: String) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        if fd < 0 {
            let e = errno
            throw LiveMappingError.unavailable(feature: path, reason: "open for writing: \(String(cString: strerror(e)))")
        }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
        if n != bytes.count {
            let e = errno
            throw LiveMappingError.syscall(name: "write '\(value)' to \(path)", errno: e, reason: String(cString: strerror(e)))
        }
    }

    /// Sets a knob now and restores its original value at tear-down.
    public func setSetting(path: String, value: String) throws {
        let old = try Self.readSetting(path: path)
        let known = undo.contains { if case .restoreSetting(let p, _) = $0 { return p == path }; return false }
        try Self.writeSetting(path: path, value: value)
        if !known { undo.append(.restoreSetting(path: path, value: old)) }
    }

    /// Sets the mTHP policy (`always`, `inherit`, `madvise`, `never`) of one
    /// size, restored at tear-down.
    public func setMTHP(sizeKB: Int, _ mode: String) throws {
        let path = Self.mthpEnabledPath(sizeKB: sizeKB)
        guard FileManager.default.fileExists(atPath: path) else {
            throw LiveMappingError.unavailable(feature: "mTHP \(sizeKB)kB", reason: "\(path) does not exist")
        }
        try setSetting(path: path, value: mode)
    }

    /// Runs `body` with `path` set to `value`, restoring the old value
    /// afterwards whether `body` returns or throws.
    public static func withSetting<T>(path: String, value: String, _ body: () throws -> T) throws -> T {
        let old = try readSetting(path: path)
        try writeSetting(path: path, value: value)
        defer { try? writeSetting(path: path, value: old) }
        return try body()
    }

    // MARK: swap

    /// A swap file made and enabled by `enableSwap`.
    public struct SwapArea: Sendable, Hashable {
        public let path: String
        public let size: Int
    }

    /// Creates a swap file (zero-filled, mkswap) and swapon's it; swapoff and
    /// removal happen at tear-down. `.unavailable` when the tools are absent or
    /// the kernel/filesystem refuses (tmpfs, no CONFIG_SWAP, not root).
    public func enableSwap(sizeMiB: Int = 64, directory: String = "/var/tmp", priority: Int? = nil) throws -> SwapArea {
        guard let mkswap = Self.findTool("mkswap"), let swapon = Self.findTool("swapon"),
              Self.findTool("swapoff") != nil else {
            throw LiveMappingError.unavailable(feature: "swap", reason: "mkswap/swapon/swapoff not found")
        }
        let path = "\(directory)/pagewalk-swap-\(getpid())-\(undo.count)"
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd < 0 {
            let e = errno
            throw LiveMappingError.unavailable(feature: "swap", reason: "create \(path): \(String(cString: strerror(e)))")
        }
        undo.append(.unlink(path))
        do {
            try fillFile(fd: fd, size: sizeMiB << 20, fill: 0, name: path)
            fsync(fd)
            close(fd)
        } catch {
            close(fd)
            throw error
        }
        let (mkOK, mkOut) = Self.run(mkswap, [path])
        guard mkOK else { throw LiveMappingError.unavailable(feature: "swap", reason: "mkswap: \(mkOut)") }
        var args = [path]
        if let priority { args = ["-p", String(priority), path] }
        let (onOK, onOut) = Self.run(swapon, args)
        guard onOK else { throw LiveMappingError.unavailable(feature: "swap", reason: "swapon: \(onOut)") }
        undo.append(.swapOff(path))
        return SwapArea(path: path, size: sizeMiB << 20)
    }

    public static func findTool(_ name: String) -> String? {
        for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] where access("\(dir)/\(name)", X_OK) == 0 {
            return "\(dir)/\(name)"
        }
        return nil
    }

    public static func run(_ tool: String, _ args: [String]) -> (ok: Bool, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        do { try p.run() } catch { return (false, "\(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let out = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return (p.terminationStatus == 0, out)
    }

    // MARK: tear-down

    /// Undoes everything, newest first. Returns descriptions of undo steps
    /// that failed (empty when all went well); never throws.
    @discardableResult
    public func tearDown() -> [String] {
        var failures: [String] = []
        while let step = undo.popLast() {
            switch step {
            case .unmap(let a, let s):
                if munmap(UnsafeMutableRawPointer(bitPattern: a), s) != 0 {
                    failures.append("munmap 0x\(String(a, radix: 16)): \(String(cString: strerror(errno)))")
                }
            case .unlink(let p):
                if Glibc.unlink(p) != 0 && errno != ENOENT {
                    failures.append("unlink \(p): \(String(cString: strerror(errno)))")
                }
            case .restoreSetting(let p, let v):
                do { try Self.writeSetting(path: p, value: v) } catch { failures.append("restore \(p)=\(v): \(error)") }
            case .swapOff(let p):
                if let tool = Self.findTool("swapoff") {
                    let (ok, out) = Self.run(tool, [p])
                    if !ok { failures.append("swapoff \(p): \(out)") }
                }
            }
        }
        return failures
    }

    // MARK: reading /proc/self

    public static func selfText(_ name: String) throws -> String {
        try RawIO.readText("/proc/self/\(name)")
    }
    public static func selfMaps() throws -> String { try selfText("maps") }
    public static func selfSmaps() throws -> String { try selfText("smaps") }
    public static func selfSmapsRollup() throws -> String { try selfText("smaps_rollup") }
    public static func selfNumaMaps() throws -> String { try selfText("numa_maps") }

    /// /proc/self/pagemap words for `pages` pages from `address` (short reads
    /// padded with zeros).
    public static func selfPagemap(address: UInt, pages: Int) throws -> [PagemapWord] {
        let path = "/proc/self/pagemap"
        let fd = try RawIO.openRead(path)
        defer { close(fd) }
        var words = [UInt64](repeating: 0, count: pages)
        _ = try words.withUnsafeMutableBytes { raw in
            try RawIO.pread(fd: fd, path: path, into: raw.baseAddress!, count: raw.count,
                            offset: Int64(address / UInt(pageSize)) * 8)
        }
        return words.map { PagemapWord(UInt64(littleEndian: $0)) }
    }

    public static func selfPagemap(_ m: LiveMapping) throws -> [PagemapWord] {
        try selfPagemap(address: m.address, pages: m.pageCount)
    }

    /// The /proc/kpageflags and /proc/kpagecount words of one PFN (root only).
    public static func physicalPage(pfn: UInt64) throws -> KPageFlagsRecord {
        func word(_ path: String) throws -> UInt64 {
            let fd = try RawIO.openRead(path)
            defer { close(fd) }
            var w: UInt64 = 0
            _ = try withUnsafeMutableBytes(of: &w) {
                try RawIO.pread(fd: fd, path: path, into: $0.baseAddress!, count: 8, offset: Int64(pfn) * 8)
            }
            return UInt64(littleEndian: w)
        }
        return KPageFlagsRecord(pfn: pfn, flags: KPageFlags(rawValue: try word("/proc/kpageflags")),
                                count: try word("/proc/kpagecount"))
    }
}
