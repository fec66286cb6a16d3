import Testing
import Foundation
import Glibc
@testable import MemoryModel
@testable import PageWalk
import KernelSnapshot
import LiveKernel
@testable import ProcFS

/// mbind(2) and migrate_pages(2) with the machine's kernel as the oracle:
/// each test maps real memory in this process, calls the system call, mirrors
/// the shape into a model address space and runs the model's mbind or
/// migrate_pages on both walkers: the return codes (0 or the errno) must be
/// equal, and where the call succeeded smaps, numa_maps (the policy it set)
/// and pagemap must still agree. Multi-node cases need a host with two or
/// more memory nodes; on one node they are skipped, saying so.
@Suite(.serialized) struct LiveMempolicyTests {
    static let page = 4096

    // include/uapi/linux/mempolicy.h
    static let mpolBind = 2
    static let mfStrict = 1
    static let mfMove = 2
    static let mfMoveAll = 4

    /// The syscall numbers (asm/unistd_64.h on x86-64, the generic table on
    /// arm64): Swift's Glibc module does not export `SYS_mbind`.
    #if arch(x86_64)
    static let sysMbind = 237
    static let sysMigratePages = 256
    #elseif arch(arm64)
    static let sysMbind = 235
    static let sysMigratePages = 238
    #endif

    /// glibc's `syscall()`, variadic in C and so not callable from Swift
    /// directly: called through its address with six integer arguments,
    /// which the x86-64 and arm64 calling conventions pass in registers
    /// either way.
    typealias Syscall = @convention(c) (Int, Int, Int, Int, Int, Int, Int) -> Int
    static let syscall6: Syscall? = {
        guard let h = dlopen(nil, RTLD_NOW), let s = dlsym(h, "syscall") else { return nil }
        return unsafeBitCast(s, to: Syscall.self)
    }()

    /// The host's memory nodes (/sys/devices/system/node/has_memory, or
    /// `online` when that is missing).
    static func memoryNodes() -> Int {
        for name in ["has_memory", "online"] {
            if let text = try? String(contentsOfFile: "/sys/devices/system/node/\(name)", encoding: .utf8) {
                return HostFacts.nodeCount(online: text.trimmingCharacters(in: .whitespacesAndNewlines))
            }
        }
        return 1
    }

    /// The kernel's mbind over `[start, start + length)` to MPOL_BIND of
    /// `nodes`: 0 or the errno.
    static func kernelMbind(_ start: UInt64, _ length: Int, nodes: UInt, flags: Int) throws -> Int32 {
        let call = try #require(syscall6, "glibc's syscall() not found")
        var mask = nodes
        let rc = withUnsafePointer(to: &mask) { p in
            call(sysMbind, Int(start), length, mpolBind, Int(bitPattern: UInt(bitPattern: p)), 64 + 1, flags)
        }
        return rc == 0 ? 0 : errno
    }

    /// The kernel's migrate_pages for this process: the folios not moved,
    /// or minus the errno.
    static func kernelMigratePages(from: UInt, to: UInt) throws -> Int {
        let call = try #require(syscall6, "glibc's syscall() not found")
        var old = from, new = to
        let rc = withUnsafePointer(to: &old) { o in
            withUnsafePointer(to: &new) { n in
                call(sysMigratePages, 0, 64 + 1, Int(bitPattern: UInt(bitPattern: o)), Int(bitPattern: UInt(bitPattern: n)), 0, 0)
            }
        }
        return rc >= 0 ? rc : -Int(errno)
    }

    /// The model's mbind on `walker`: 0 or the errno.
    static func modelMbind(_ mm: AddressSpace, _ start: UInt64, _ length: Int, nodes: [Int], flags: Int,
                           _ walker: WalkerKind) -> Int32 {
        do throws(MempolicyError) {
            try Mempolicy.mbind(mm, start, UInt64(length), policy: .bind(nodes),
                                flags: MempolicyFlags(rawValue: UInt32(flags)), walker: walker)
            return 0
        } catch {
            return error.errno
        }
    }

    /// `pages` written anonymous pages in this process (fenced, so they
    /// never merge) and their mirror; keep the fences alive with the
    /// mapping.
    static func writtenAnonymous(pages: Int) throws -> (FencedMappings, LiveMapping, Mirror) {
        let f = try FencedMappings()
        let m = try f.anonymous(pages * page)
        f.touch(m, write: true)
        let mirror = try Mirror()
        try mirror.map(m)
        try mirror.mm.fault(m.start, m.end, write: true)
        return (f, m, mirror)
    }

    func compare(_ mirror: Mirror, _ mappings: [LiveMapping], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let problems = try LiveComparison.mismatches(mirror, mappings.map { $0.start..<$0.end })
        for p in problems { Issue.record(Comment(rawValue: p), sourceLocation: sourceLocation) }
    }

    /// A hole in the range: -EFAULT from the kernel and the model, with or
    /// without STRICT and MOVE, and nothing changed.
    @Test func holeIsEFAULT() throws {
        let f = try FencedMappings()
        let m = try f.anonymous(8 * Self.page)
        f.touch(m, write: true)
        let hole = m.start + 4 * UInt64(Self.page)
        #expect(munmap(UnsafeMutableRawPointer(bitPattern: UInt(hole)), Self.page) == 0)
        let mirror = try Mirror()
        try mirror.map(m)
        try mirror.mm.fault(m.start, m.end, write: true)
        try mirror.mm.munmap(hole, hole + UInt64(Self.page))
        for flags in [0, Self.mfStrict, Self.mfMove, Self.mfStrict | Self.mfMove] {
            let k = try Self.kernelMbind(m.start, m.size, nodes: 1, flags: flags)
            print("LIVE mbind hole flags \(flags): kernel \(k)")
            #expect(k == EFAULT)
            for w in WalkerKind.allCases {
                #expect(Self.modelMbind(mirror.mm, m.start, m.size, nodes: [0], flags: flags, w) == k, "flags \(flags), \(w)")
            }
        }
    }

    /// STRICT, MOVE and both to the only node: 0 everywhere, nothing moves;
    /// the policy set shows in numa_maps (`bind:0`) on both sides.
    @Test func strictAndMoveOnTheOnlyNode() throws {
        let nodes = Self.memoryNodes()
        let (f, m, mirror) = try Self.writtenAnonymous(pages: 16)
        defer { withExtendedLifetime(f) {} }
        for flags in [Self.mfStrict, Self.mfMove, Self.mfStrict | Self.mfMove] {
            let k = try Self.kernelMbind(m.start, m.size, nodes: 1, flags: flags)
            print("LIVE mbind bind:0 flags \(flags) on a \(nodes)-node host: kernel \(k)")
            #expect(k == 0)
            for w in WalkerKind.allCases {
                #expect(Self.modelMbind(mirror.mm, m.start, m.size, nodes: [0], flags: flags, w) == k, "flags \(flags), \(w)")
            }
        }
        // Every folio is on node 0 already: a queue on the model moves none.
        let outcome = try Mempolicy.mbind(mirror.mm, m.start, UInt64(m.size), policy: .bind([0]), flags: .move)
        #expect(outcome.queued.isEmpty && outcome.migrated.isEmpty)
        try mirror.mirrorPageFlags(m)
        try compare(mirror, [m])
    }

    /// migrate_pages(2) from node 0 to node 0: nothing to move, 0.
    @Test func migratePagesToTheSameNode() throws {
        let (f, _, mirror) = try Self.writtenAnonymous(pages: 8)
        defer { withExtendedLifetime(f) {} }
        let k = try Self.kernelMigratePages(from: 1, to: 1)
        print("LIVE migrate_pages {0} -> {0}: kernel \(k)")
        #expect(k == 0)
        for w in WalkerKind.allCases {
            let outcome = try Mempolicy.migratePages(mirror.mm, from: [0], to: [0], walker: w)
            #expect(outcome.failed == k && outcome.migrated.isEmpty, "\(w)")
        }
    }

    /// Refusals: a node the host lacks, a flag outside MPOL_MF_VALID
    /// (MPOL_MF_LAZY), an unaligned start; migrate_pages(2) to a node the
    /// host lacks (EINVAL for a CAP_SYS_NICE caller, EPERM otherwise).
    @Test func refusalsMatchTheKernel() throws {
        let nodes = Self.memoryNodes()
        let (f, m, mirror) = try Self.writtenAnonymous(pages: 4)
        defer { withExtendedLifetime(f) {} }
        let missing = nodes   // the first node the host lacks
        let cases: [(String, UInt64, UInt, [Int], Int)] = [
            ("node \(missing)", m.start, 1 << UInt(missing), [missing], Self.mfMove),
            ("MPOL_MF_LAZY", m.start, 1, [0], 8),
            ("unaligned start", m.start + 1, 1, [0], 0),
        ]
        for (what, start, mask, modelNodes, flags) in cases {
            let k = try Self.kernelMbind(start, Self.page, nodes: mask, flags: flags)
            print("LIVE mbind \(what): kernel \(k)")
            #expect(k == EINVAL, "\(what)")
            for w in WalkerKind.allCases {
                #expect(Self.modelMbind(mirror.mm, start, Self.page, nodes: modelNodes, flags: flags, w) == k, "\(what), \(w)")
            }
        }
        let k = try Self.kernelMigratePages(from: 1, to: 1 << UInt(missing))
        print("LIVE migrate_pages {0} -> {\(missing)}: kernel \(k)")
        #expect(k == -Int(getuid() == 0 ? EINVAL : EPERM))
        if getuid() == 0 {
            for w in WalkerKind.allCases {
                #expect(throws: MempolicyError.self) { try Mempolicy.migratePages(mirror.mm, from: [0], to: [missing], walker: w) }
            }
        }
    }

    /// Moves between nodes need two memory nodes.
    @Test func movesBetweenNodes() throws {
        let nodes = Self.memoryNodes()
        guard nodes >= 2 else {
            print("LIVE mempolicy: skipping the multi-node cases (MOVE to another node, STRICT with a misplaced folio, MOVE_ALL of shared folios, migrate_pages between nodes): this host has \(nodes) memory node")
            try Test.cancel("this host has \(nodes) memory node; moves between nodes need two")
        }
        let f = try FencedMappings()
        let m = try f.anonymous(8 * Self.page)
        f.touch(m, write: true)
        // Bound to node 1 and moved there, then STRICT to node 0 without a
        // move fails with EIO in the kernel and the model alike.
        #expect(try Self.kernelMbind(m.start, m.size, nodes: 2, flags: Self.mfMove) == 0)
        let k = try Self.kernelMbind(m.start, m.size, nodes: 1, flags: Self.mfStrict)
        print("LIVE mbind STRICT to node 0 after a move to node 1: kernel \(k)")
        // The same shape in a model of as many nodes (not the live mirror,
        // which has one).
        let mm = try AddressSpace(geometry: .x86_64, memory: PhysicalMemory(budgetBytes: 64 << 20, nodes: nodes))
        try mm.mmap(start: m.start, end: m.end, access: [.read, .write], policy: .bind([1]))
        try mm.fault(m.start, m.end, write: true)
        for w in WalkerKind.allCases {
            #expect(Self.modelMbind(mm, m.start, m.size, nodes: [0], flags: Self.mfStrict, w) == k, "\(w)")
        }
        #expect(k == EIO)
    }
}
