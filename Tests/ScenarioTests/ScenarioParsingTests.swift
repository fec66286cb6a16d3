import Foundation
import Testing
import MemoryModel
@testable import Scenario

// MARK: - Helpers

/// A one-process document (pid 100) with the given VMAs and ops, plus any
/// further raw process objects.
private func document(
    architecture: String = "x86_64",
    top: String = "",
    vmas: [String],
    ops: [String] = [],
    more: [String] = []
) -> String {
    let first = #"{"pid":100,"name":"test","vmas":[\#(vmas.joined(separator: ","))],"ops":[\#(ops.joined(separator: ","))]}"#
    let processes = ([first] + more).joined(separator: ",")
    return #"{"version":1,"architecture":"\#(architecture)"\#(top.isEmpty ? "" : "," + top),"processes":[\#(processes)]}"#
}

/// The error parsing `json` throws, or nil when it parses.
private func parseError(_ json: String) -> ScenarioError? {
    do {
        _ = try ScenarioDocument.parse(json)
        return nil
    } catch {
        return error
    }
}

private func parsed(_ json: String) throws -> ScenarioDocument {
    try ScenarioDocument.parse(json)
}

// Common VMAs (all 2M aligned).
private let anon8M = #"{"start":"0x10000000","size":"8M","perms":"rw-p","kind":"anon"}"#          // 0x10000000-0x10800000
private let anonNext = #"{"start":"0x10800000","size":"2M","perms":"rw-p","kind":"anon"}"#        // 0x10800000-0x10a00000
private let hugetlb4M = #"{"start":"0x20000000","size":"4M","perms":"rw-p","kind":"hugetlb"}"#    // 0x20000000-0x20400000
private let pfnmap64K = #"{"start":"0x30000000","size":"64K","perms":"rw-s","kind":"pfnmap"}"#
private let fileRO = #"{"start":"0x40000000","size":"1M","perms":"r--p","kind":"file","file":{"path":"/lib/x.so","dev":"fd:01","inode":42,"offset":"0x2000"}}"#
private let shmem1M = #"{"start":"0x50000000","size":"1M","perms":"rw-s","kind":"shmem","file":{"path":"/dev/shm/x"}}"#
private let sharedFile = #"{"start":"0x60000000","size":"1M","perms":"rw-s","kind":"file","file":{"path":"/data/f"}}"#

// Parametrized cases with integer arithmetic, typed up front for the type checker.
private let sizeSuffixCases: [(String, UInt64)] = [
        ("4096", UInt64(4096)), ("\"4K\"", 4 << 10), ("\"2M\"", 2 << 20), ("\"1G\"", 1 << 30),
        ("\"512M\"", 512 << 20), ("\"4G\"", 4 << 30), ("\"1T\"", 1 << 40), ("\"0x1000\"", 0x1000),
        ("\"8192\"", 8192), ("\"64k\"", 64 << 10), ("\"2MiB\"", 2 << 20), ("\"1_048_576\"", 1 << 20),
]

private let unalignedCases: [(String, String, UInt64, UInt64)] = [
        (document(vmas: [#"{"start":"0x1001","size":"4K","perms":"rw-p","kind":"anon"}"#]), "processes[0].vmas[0].start", UInt64(0x1001), UInt64(4096)),
        (document(vmas: [#"{"start":"0x1000","end":"0x2800","perms":"rw-p","kind":"anon"}"#]), "processes[0].vmas[0].end", 0x2800, 4096),
        (document(vmas: [#"{"start":"0x1000","size":100,"perms":"rw-p","kind":"anon"}"#]), "processes[0].vmas[0].size", 100, 4096),
        (document(vmas: [#"{"start":"0x201000","size":"2M","perms":"rw-p","kind":"hugetlb"}"#]), "processes[0].vmas[0].start", 0x201000, 2 << 20),
        (document(vmas: [#"{"start":"0x200000","size":"3M","perms":"rw-p","kind":"hugetlb"}"#]), "processes[0].vmas[0].size", 0x500000, 2 << 20),
        (document(vmas: [#"{"start":"0x1000","size":"4K","perms":"r--p","kind":"file","file":{"path":"/a","offset":512}}"#]),
         "processes[0].vmas[0].file.offset", 512, 4096),
        (document(vmas: [anon8M], ops: [#"{"op":"fault","start":"0x10000800","size":"4K"}"#]), "processes[0].ops[0].start", 0x1000_0800, 4096),
        (document(vmas: [anon8M], ops: [#"{"op":"thp","start":"0x10001000","size":"2M"}"#]), "processes[0].ops[0].start", 0x1000_1000, 2 << 20),
        (document(vmas: [anon8M], ops: [#"{"op":"thp","start":"0x10000000","size":"3M"}"#]), "processes[0].ops[0].size", 0x1030_0000, 2 << 20),
        (document(vmas: [anon8M], ops: [#"{"op":"collapse","start":"0x10000000","end":"0x10100000"}"#]), "processes[0].ops[0].end", 0x1010_0000, 2 << 20),
        (document(vmas: [anon8M], ops: [#"{"op":"mthp","start":"0x10008000","size":"64K","order":4}"#]), "processes[0].ops[0].start", 0x1000_8000, 64 << 10),
        (document(vmas: [hugetlb4M], ops: [#"{"op":"hugetlb","start":"0x20000000","size":"1M"}"#]), "processes[0].ops[0].size", 0x2010_0000, 2 << 20),
        (document(vmas: [hugetlb4M], ops: [#"{"op":"munmap","start":"0x20100000","size":"1M"}"#]), "processes[0].ops[0].start", 0x2010_0000, 2 << 20),
        (document(vmas: [anon8M], ops: [#"{"op":"hwpoison","address":"0x10000010"}"#]), "processes[0].ops[0].address", 0x1000_0010, 4096),
]

// MARK: - The default scenario

@Suite("Default scenario")
struct DefaultScenarioTests {
    @Test func parsesAndValidates() throws {
        let doc = try DefaultScenario.load()
        #expect(doc.version == 1)
        #expect(doc.architecture == .x86_64)
        #expect(doc.levels == 4)
        #expect(doc.numaNodes == 2)
        #expect(doc.memoryBudget == 64 << 20)
        #expect(doc.processes.map(\.pid) == [1000, 1001])
        #expect(doc.processes.map(\.name) == ["python3", "python3"])
    }

    @Test func parentHasTheExpectedVMAs() throws {
        let doc = try DefaultScenario.load()
        let python = try #require(doc.process(pid: 1000))
        #expect(python.parent == nil)
        #expect(python.vmas.count == 18)

        let exe = python.vmas.filter { $0.file?.path == "/usr/bin/python3.11" }
        #expect(exe.map(\.perms.description) == ["r--p", "r-xp", "r--p", "rw-p"])
        #expect(exe.map { $0.file!.offset } == [0, 0x70000, 0x2d0000, 0x540000])
        #expect(exe[0].file?.device == VMASpec.DeviceNumber(major: 0xfd, minor: 1))
        #expect(exe[0].file?.inode == 1839474)

        let libc = python.vmas.filter { $0.file?.path.hasSuffix("libc.so.6") == true }
        #expect(libc.count == 4)

        let heap = try #require(python.vmas.first { $0.name == "[heap]" })
        #expect(heap.kind == .anon)
        #expect(heap.start == 0x5555_55b3_e000 && heap.end == 0x5555_5600_0000)

        let stack = try #require(python.vmas.first { $0.name == "[stack]" })
        #expect(stack.flags == [.growsdown])
        #expect(stack.end == 0x7fff_ffff_f000)

        let hugetlb = try #require(python.vmas.first { $0.kind == .hugetlb })
        #expect(hugetlb.hugePageSize == .size2M)
        #expect(hugetlb.size == 4 << 20)

        let shm = try #require(python.vmas.first { $0.kind == .shmem })
        #expect(shm.perms.shared)
        #expect(shm.file?.path.hasPrefix("/dev/shm/") == true)

        let vvar = try #require(python.vmas.first { $0.name == "[vvar]" })
        #expect(vvar.kind == .pfnmap)
        #expect(python.vmas.contains { $0.name == "[vdso]" && $0.kind == .anon })

        let arena = try #require(python.vmas.first { $0.policy != .default })
        #expect(arena.policy == .interleave([0, 1]))
    }

    @Test func parentOpsCoverTheIntendedStates() throws {
        let doc = try DefaultScenario.load()
        let ops = try #require(doc.process(pid: 1000)).ops
        let kinds = Set(ops.map(\.kind))
        for kind: OperationSpec.Kind in [.fault, .thp, .mthp, .swapout, .guardInstall, .hugetlb, .remapPFN, .migrate, .fork] {
            #expect(kinds.contains(kind), "missing \(kind)")
        }
        #expect(ops.contains(.thp(AddressRange(start: 0x5555_55c0_0000, size: 2 << 20))))
        #expect(ops.contains(.mthp(AddressRange(start: 0x7fff_f600_0000, size: 1 << 20), order: 4)))
        #expect(ops.last == .fork(child: 1001))
    }

    @Test func childIsForkedAndWrites() throws {
        let doc = try DefaultScenario.load()
        let child = try #require(doc.process(pid: 1001))
        #expect(child.parent == 1000)
        #expect(child.isForked)
        #expect(child.vmas.isEmpty)
        #expect(!child.ops.isEmpty)
        #expect(child.ops.allSatisfy { if case .fault(_, true) = $0 { true } else { false } })
    }

    @Test func populatesOnlyAFewMebibytes() throws {
        let doc = try DefaultScenario.load()
        var total: UInt64 = 0
        for process in doc.processes {
            for op in process.ops {
                switch op {
                case .fault(let r, _), .thp(let r), .mthp(let r, _), .hugetlb(let r), .migrate(let r, _):
                    total += r.size
                default: break
                }
            }
        }
        #expect(total > 4 << 20)
        #expect(total < 32 << 20)
    }
}

// MARK: - Well-formed input

@Suite("Accepted input")
struct AcceptedInputTests {
    @Test func defaultsApply() throws {
        let doc = try parsed(document(vmas: [anon8M]))
        #expect(doc.levels == 4)
        #expect(doc.numaNodes == 1)
        #expect(doc.memoryBudget == 4 << 30)
        #expect(doc.swapSlots == ScenarioDocument.defaultSwapSlots)
        #expect(doc.processes[0].vmas[0].policy == .default)
        #expect(doc.processes[0].vmas[0].pkey == 0)
        #expect(doc.processes[0].vmas[0].flags.isEmpty)
    }

    @Test(arguments: sizeSuffixCases)
    func sizeSuffixes(_ literal: String, _ bytes: UInt64) throws {
        let vma = #"{"start":"0x10000000","size":\#(literal),"perms":"rw-p","kind":"anon"}"#
        let doc = try parsed(document(top: #""memoryBudget":\#(literal)"#, vmas: [vma]))
        #expect(doc.processes[0].vmas[0].size == bytes)
        #expect(doc.memoryBudget == bytes)
    }

    @Test(arguments: ["\"0x7f0000000000\"", "\"0x7F00_0000_0000\"", "139637976727552", "\"139637976727552\""])
    func hexAndIntegerAddresses(_ literal: String) throws {
        let vma = #"{"start":\#(literal),"size":"4K","perms":"r--p","kind":"anon"}"#
        let doc = try parsed(document(vmas: [vma]))
        #expect(doc.processes[0].vmas[0].start == 0x7f00_0000_0000)
        #expect(doc.processes[0].vmas[0].end == 0x7f00_0000_1000)
    }

    @Test func endAndSizeAreEquivalent() throws {
        let a = try parsed(document(vmas: [#"{"start":"0x1000","end":"0x3000","perms":"rw-p","kind":"anon"}"#]))
        let b = try parsed(document(vmas: [#"{"start":4096,"size":"8K","perms":"rw-p","kind":"anon"}"#]))
        #expect(a == b)
    }

    @Test func everyFieldIsDecoded() throws {
        let vma = #"""
        {"start":"0x10000000","size":"2M","perms":"rwxp","kind":"anon","name":"[anon:jit]",
         "flags":["hugepage","locked","softdirty","uffd_wp","mergeable"],"policy":"bind:0-1,3","pkey":3}
        """#
        let doc = try parsed(document(top: #""numaNodes":4"#, vmas: [vma, fileRO]))
        let v = doc.processes[0].vmas[0]
        #expect(v.perms == VMASpec.Permissions(read: true, write: true, execute: true, shared: false))
        #expect(v.name == "[anon:jit]")
        #expect(v.flags == [.hugepage, .locked, .softdirty, .uffdWP, .mergeable])
        #expect(v.policy == .bind([0, 1, 3]))
        #expect(v.policy.description == "bind:0-1,3")
        #expect(v.pkey == 3)
        let f = doc.processes[0].vmas[1]
        #expect(f.file == VMASpec.FileMapping(path: "/lib/x.so", device: .init(major: 0xfd, minor: 1), inode: 42, offset: 0x2000))
        #expect(f.file?.device.description == "fd:01")
    }

    @Test func everyOperationDecodes() throws {
        let vmas = [
            #"{"start":"0x10000000","size":"8M","perms":"rw-p","kind":"anon","flags":["uffd_wp","mergeable"]}"#,
            hugetlb4M, pfnmap64K,
        ]
        let ops = [
            #"{"op":"fault","start":"0x10000000","size":"8K","write":true}"#,
            #"{"op":"thp","start":"0x10200000","size":"2M"}"#,
            #"{"op":"mthp","start":"0x10400000","size":"64K","order":4}"#,
            #"{"op":"hugetlb","start":"0x20000000","size":"4M"}"#,
            #"{"op":"zap","start":"0x10000000","size":"4K"}"#,
            #"{"op":"split","address":"0x10200000"}"#,
            #"{"op":"collapse","start":"0x10600000","size":"2M"}"#,
            #"{"op":"swapout","start":"0x10000000","size":"4K"}"#,
            #"{"op":"swapin","start":"0x10000000","size":"4K"}"#,
            #"{"op":"migrate","start":"0x10000000","size":"4K","node":1}"#,
            #"{"op":"migration_entries","start":"0x10001000","size":"4K"}"#,
            #"{"op":"device_private","start":"0x10002000","size":"4K","writable":true}"#,
            #"{"op":"device_exclusive","start":"0x10003000","size":"4K"}"#,
            #"{"op":"hwpoison","address":"0x10004000"}"#,
            #"{"op":"uffd_wp","start":"0x10005000","size":"4K"}"#,
            #"{"op":"guard_install","start":"0x10006000","size":"4K"}"#,
            #"{"op":"guard_remove","start":"0x10006000","size":"4K"}"#,
            #"{"op":"remap_pfn","start":"0x30000000","size":"64K","pfn":"0x80000"}"#,
            #"{"op":"mprotect","start":"0x10007000","size":"4K","perms":"r--p"}"#,
            #"{"op":"mlock","start":"0x10008000","size":"4K"}"#,
            #"{"op":"munlock","start":"0x10008000","size":"4K"}"#,
            #"{"op":"madv_free","start":"0x10009000","size":"4K"}"#,
            #"{"op":"ksm","start":"0x1000a000","size":"16K","distinct":2}"#,
            #"{"op":"clear_refs","kind":"soft_dirty"}"#,
            #"{"op":"touch","start":"0x1000a000","size":"4K","write":true}"#,
            #"{"op":"munmap","start":"0x107ff000","size":"4K"}"#,
            #"{"op":"fork","child":101}"#,
            #"{"op":"madv_cold","start":"0x10000000","size":"8K"}"#,
            #"{"op":"madv_pageout","start":"0x10000000","size":"8K"}"#,
            #"{"op":"madv_willneed","start":"0x10000000","size":"8K"}"#,
            #"{"op":"mlock2_onfault","start":"0x10008000","size":"4K"}"#,
        ]
        let child = #"{"pid":101,"name":"child","parent":100,"ops":[{"op":"fault","start":"0x10000000","size":"4K","write":true}]}"#
        let doc = try parsed(document(top: #""numaNodes":2"#, vmas: vmas, ops: ops, more: [child]))
        let decoded = doc.processes[0].ops
        #expect(decoded.count == ops.count)
        #expect(Set(decoded.map(\.kind)) == Set(OperationSpec.Kind.allCases))
        #expect(decoded[0] == .fault(AddressRange(start: 0x1000_0000, end: 0x1000_2000), write: true))
        #expect(decoded[2] == .mthp(AddressRange(start: 0x1040_0000, size: 64 << 10), order: 4))
        #expect(decoded[5] == .split(address: 0x1020_0000))
        #expect(decoded[9] == .migrate(AddressRange(start: 0x1000_0000, size: 4096), node: 1))
        #expect(decoded[17] == .remapPFN(AddressRange(start: 0x3000_0000, size: 64 << 10), pfn: 0x80000))
        #expect(decoded[18] == .mprotect(AddressRange(start: 0x1000_7000, size: 4096), perms: VMASpec.Permissions("r--p")!))
        #expect(decoded[22] == .ksm(AddressRange(start: 0x1000_a000, size: 16 << 10), distinct: 2))
        #expect(decoded[23] == .clearRefs(.softDirty))
        #expect(decoded[26] == .fork(child: 101))
        // Defaults of optional booleans.
        let plain = try parsed(document(vmas: [anon8M], ops: [#"{"op":"fault","start":"0x10000000","size":"4K"}"#]))
        #expect(plain.processes[0].ops[0] == .fault(AddressRange(start: 0x1000_0000, size: 4096), write: false))
    }

    @Test(arguments: [
        ("x86_64", 4, UInt64(0x7fff_ffff_f000)), ("x86_64", 5, 0x00ff_ffff_ffff_f000),
        ("arm64", 4, 1 << 48), ("arm64", 3, 1 << 39), ("arm64", 2, 1 << 30),
    ])
    func lastPageOfUserSpaceIsUsable(_ arch: String, _ levels: Int, _ limit: UInt64) throws {
        let vma = #"{"start":"\#(hex(limit - 4096))","end":"\#(hex(limit))","perms":"rw-p","kind":"anon"}"#
        let doc = try parsed(document(architecture: arch, top: #""levels":\#(levels)"#, vmas: [vma]))
        #expect(doc.userAddressLimit == limit)
    }

    /// `vsyscall`: the kernel's default (xonly) on x86_64 when absent, none
    /// on arm64 (which has no gate VMA); each mode's name on x86_64.
    @Test(arguments: [
        ("x86_64", nil, VsyscallMode.xonly), ("arm64", nil, .none),
        ("x86_64", "none", .none), ("x86_64", "xonly", .xonly), ("x86_64", "emulate", .emulate), ("arm64", "none", .none),
    ])
    func vsyscallModes(_ arch: String, _ key: String?, _ mode: VsyscallMode) throws {
        let doc = try parsed(document(architecture: arch, top: key.map { #""vsyscall":"\#($0)""# } ?? "", vmas: [anon8M]))
        #expect(doc.vsyscall == mode)
    }

    @Test func arm64HugePageSizes() throws {
        let vmas = [
            #"{"start":"0x40000000","size":"64K","perms":"rw-p","kind":"hugetlb","hugePageSize":"64K"}"#,
            #"{"start":"0x42000000","size":"32M","perms":"rw-p","kind":"hugetlb","hugePageSize":"32M"}"#,
            #"{"start":"0x80000000","size":"1G","perms":"rw-p","kind":"hugetlb","hugePageSize":"1G"}"#,
        ]
        let doc = try parsed(document(architecture: "arm64", vmas: vmas, ops: [#"{"op":"hugetlb","start":"0x40000000","size":"64K"}"#]))
        #expect(doc.processes[0].vmas.map(\.hugePageSize) == [.size64K, .size32M, .size1G])
    }

    @Test(arguments: [
        ("default", VMASpec.Policy.default), ("local", .local), ("bind:0", .bind([0])),
        ("interleave:0-1", .interleave([0, 1])), ("interleave:1,0", .interleave([0, 1])),
        ("bind:0,2-3", .bind([0, 2, 3])), ("prefer:1", .preferred(1)),
    ])
    func policies(_ text: String, _ policy: VMASpec.Policy) throws {
        let vma = #"{"start":"0x1000","size":"4K","perms":"rw-p","kind":"anon","policy":"\#(text)"}"#
        let doc = try parsed(document(top: #""numaNodes":4"#, vmas: [vma]))
        #expect(doc.processes[0].vmas[0].policy == policy)
    }

    @Test func nullMeansAbsentForOptionalKeys() throws {
        let json = #"{"version":1,"architecture":"x86_64","levels":null,"processes":[{"pid":1,"name":"a","parent":null,"vmas":null}]}"#
        let doc = try parsed(json)
        #expect(doc.levels == 4)
        #expect(doc.processes[0].parent == nil)
        #expect(doc.processes[0].vmas.isEmpty)
    }

    @Test func permissionsRoundTrip() {
        for text in ["r--p", "rw-p", "r-xp", "rwxs", "---p", "-w-s"] {
            #expect(VMASpec.Permissions(text)?.description == text)
        }
        for text in ["rw-", "rw-x", "wr-p", "rw-pp", "RW-P"] {
            #expect(VMASpec.Permissions(text) == nil)
        }
    }

    @Test func opsSeeTheLayoutAsChangedByEarlierOps() throws {
        // After mprotect to r--p, a write fault is refused; after a second
        // mprotect back to rw-p it is accepted.
        let ops = [
            #"{"op":"mprotect","start":"0x10000000","size":"4K","perms":"r--p"}"#,
            #"{"op":"mprotect","start":"0x10000000","size":"4K","perms":"rw-p"}"#,
            #"{"op":"fault","start":"0x10000000","size":"8K","write":true}"#,
        ]
        _ = try parsed(document(vmas: [anon8M], ops: ops))
        #expect(parseError(document(vmas: [anon8M], ops: Array(ops.prefix(1)) + [ops[2]]))
            == .incompatibleOperation(
                path: "processes[0].ops[1]", op: "fault", vma: "processes[0].vmas[0]",
                reason: "fault writes, but the VMA is not writable (r--p)"))
    }

    @Test func parseContentsOfURL() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("scenario-\(UUID().uuidString).json")
        try Data(DefaultScenario.json.utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        #expect(try ScenarioDocument.parse(contentsOf: url) == DefaultScenario.load())

        let missing = url.appendingPathExtension("missing")
        do {
            _ = try ScenarioDocument.parse(contentsOf: missing)
            Issue.record("expected an error")
        } catch {
            guard case .unreadableFile(let path, _) = error else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(path == missing.path)
        }
    }
}

// MARK: - Errors, one test per kind

@Suite("Errors")
struct ErrorTests {
    @Test(arguments: [
        (#"{"version":1,}"#, 1, 14),
        ("{\"version\":1,\n \"architecture\": x86_64}", 2, 18),
        ("", 1, 1),
        (#"{"a":"\u00zz"}"#, 1, 11),
        (#"{"a":01}"#, 1, 6),
        (#"{"a":1} x"#, 1, 9),
        (#"{"a":"unterminated"#, 1, 6),
    ])
    func invalidJSON(_ json: String, _ line: Int, _ column: Int) throws {
        let error = try #require(parseError(json))
        guard case .invalidJSON(let offset, let l, let c, _) = error else {
            Issue.record("expected invalidJSON, got \(error)")
            return
        }
        #expect((l, c) == (line, column), "\(error)")
        #expect(offset >= 0)
        #expect(error.description.contains("line \(line), column \(column)"))
    }

    @Test func deepNestingIsAnErrorNotACrash() throws {
        let json = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        let error = try #require(parseError(json))
        guard case .invalidJSON = error else {
            Issue.record("expected invalidJSON, got \(error)")
            return
        }
    }

    @Test(arguments: [
        (#"{"architecture":"x86_64","processes":[]}"#, "version"),
        (#"{"version":1,"processes":[]}"#, "architecture"),
        (#"{"version":1,"architecture":"x86_64"}"#, "processes"),
        (#"{"version":1,"architecture":"x86_64","processes":[{"name":"a"}]}"#, "processes[0].pid"),
        (#"{"version":1,"architecture":"x86_64","processes":[{"pid":1}]}"#, "processes[0].name"),
        (document(vmas: [#"{"size":"4K","perms":"rw-p","kind":"anon"}"#]), "processes[0].vmas[0].start"),
        (document(vmas: [#"{"start":"0x1000","perms":"rw-p","kind":"anon"}"#]), "processes[0].vmas[0].end"),
        (document(vmas: [#"{"start":"0x1000","size":"4K","kind":"anon"}"#]), "processes[0].vmas[0].perms"),
        (document(vmas: [#"{"start":"0x1000","size":"4K","perms":"rw-p"}"#]), "processes[0].vmas[0].kind"),
        (document(vmas: [#"{"start":"0x1000","size":"4K","perms":"rw-p","kind":"file"}"#]), "processes[0].vmas[0].file"),
        (document(vmas: [#"{"start":"0x1000","size":"4K","perms":"rw-p","kind":"file","file":{"inode":1}}"#]), "processes[0].vmas[0].file.path"),
        (document(vmas: [anon8M], ops: [#"{"start":"0x10000000","size":"4K"}"#]), "processes[0].ops[0].op"),
        (document(vmas: [anon8M], ops: [#"{"op":"mthp","start":"0x10000000","size":"64K"}"#]), "processes[0].ops[0].order"),
        (document(vmas: [anon8M], ops: [#"{"op":"fork"}"#]), "processes[0].ops[0].child"),
        (document(vmas: [anon8M], ops: [#"{"op":"split"}"#]), "processes[0].ops[0].address"),
    ])
    func missingField(_ json: String, _ path: String) {
        #expect(parseError(json) == .missingField(path: path))
    }

    @Test func missingEndSaysEndOrSize() {
        let error = parseError(document(vmas: [#"{"start":"0x1000","perms":"rw-p","kind":"anon"}"#]))
        #expect(error?.description == "processes[0].vmas[0].end: missing required field (give end or size)")
    }

    @Test(arguments: [
        (#"[1,2]"#, "", "object", "array"),
        (#"{"version":"1","architecture":"x86_64","processes":[]}"#, "version", "integer", "string"),
        (#"{"version":1.5,"architecture":"x86_64","processes":[]}"#, "version", "integer", "number"),
        (#"{"version":1,"architecture":"x86_64","processes":{}}"#, "processes", "array", "object"),
        (#"{"version":1,"architecture":"x86_64","levels":true,"processes":[]}"#, "levels", "integer", "boolean"),
        (document(vmas: [#"{"start":true,"size":"4K","perms":"rw-p","kind":"anon"}"#]),
         "processes[0].vmas[0].start", "address (hex string or integer)", "boolean"),
        (document(vmas: [#"{"start":"0x1000","size":[4096],"perms":"rw-p","kind":"anon"}"#]),
         "processes[0].vmas[0].size", "size (integer or string like \"2M\")", "array"),
        (document(vmas: [#"{"start":"0x1000","size":"4K","perms":"rw-p","kind":"anon","flags":"locked"}"#]),
         "processes[0].vmas[0].flags", "array", "string"),
        (document(vmas: [anon8M], ops: [#"{"op":"fault","start":"0x10000000","size":"4K","write":"yes"}"#]),
         "processes[0].ops[0].write", "boolean", "string"),
        (document(vmas: [anon8M], ops: [#"["fault"]"#]), "processes[0].ops[0]", "object", "array"),
    ])
    func wrongType(_ json: String, _ path: String, _ expected: String, _ found: String) {
        #expect(parseError(json) == .wrongType(path: path, expected: expected, found: found))
    }

    @Test(arguments: [
        (#"{"version":1,"architecture":"x86_64","verison":1,"processes":[]}"#, "verison", ScenarioDecoder.documentKeys),
        (document(vmas: [#"{"start":"0x1000","size":"4K","prems":"rw-p","kind":"anon"}"#]), "processes[0].vmas[0].prems", ScenarioDecoder.vmaKeys),
        (document(vmas: [anon8M], ops: [#"{"op":"fault","start":"0x10000000","size":"4K","wirte":true}"#]),
         "processes[0].ops[0].wirte", ["op", "start", "end", "size", "write"]),
        (document(vmas: [anon8M], ops: [#"{"op":"thp","start":"0x10000000","size":"2M","write":true}"#]),
         "processes[0].ops[0].write", ["op", "start", "end", "size"]),
        (document(vmas: [#"{"start":"0x1000","size":"4K","perms":"r--p","kind":"file","file":{"path":"/a","inod":1}}"#]),
         "processes[0].vmas[0].file.inod", ScenarioDecoder.fileKeys),
        (#"{"version":1,"architecture":"x86_64","processes":[{"pid":1,"name":"a","vma":[]}]}"#,
         "processes[0].vma", ScenarioDecoder.processKeys),
    ])
    func unknownKey(_ json: String, _ path: String, _ allowed: [String]) {
        #expect(parseError(json) == .unknownKey(path: path, allowed: allowed))
    }

    @Test func unknownKeyIsReportedBeforeTheFieldItMisspells() {
        // "strat" is a typo of "start": the typo is what gets reported.
        let json = document(vmas: [#"{"strat":"0x1000","size":"4K","perms":"rw-p","kind":"anon"}"#])
        #expect(parseError(json) == .unknownKey(path: "processes[0].vmas[0].strat", allowed: ScenarioDecoder.vmaKeys))
    }

    /// A vsyscall mode's exact error: the allowed names, the architecture.
    @Test func vsyscallErrorsNameTheModes() {
        #expect(parseError(document(top: #""vsyscall":"XONLY""#, vmas: [anon8M]))
                == .unknownValue(path: "vsyscall", value: "XONLY", allowed: ["none", "xonly", "emulate"]))
        #expect(parseError(document(top: #""vsyscall":true"#, vmas: [anon8M]))
                == .wrongType(path: "vsyscall", expected: "string", found: "boolean"))
        let arm = parseError(document(architecture: "arm64", top: #""vsyscall":"xonly""#, vmas: [anon8M]))
        #expect(arm == .unsupportedOnArchitecture(path: "vsyscall", value: "vsyscall xonly", architecture: .arm64))
        #expect(arm?.description == "vsyscall: vsyscall xonly is not supported on arm64")
    }

    @Test func duplicateKey() {
        let json = document(vmas: [#"{"start":"0x1000","size":"4K","perms":"rw-p","kind":"anon","kind":"file"}"#])
        #expect(parseError(json) == .duplicateKey(path: "processes[0].vmas[0].kind"))
    }

    @Test(arguments: [
        (document(architecture: "riscv64", vmas: []), "architecture", "riscv64"),
        (document(vmas: [#"{"start":"0x1000","size":"4K","perms":"rw-p","kind":"anonymous"}"#]), "processes[0].vmas[0].kind", "anonymous"),
        (document(vmas: [anon8M], ops: [#"{"op":"faultt","start":"0x10000000","size":"4K"}"#]), "processes[0].ops[0].op", "faultt"),
        (document(vmas: [#"{"start":"0x1000","size":"4K","perms":"rw-p","kind":"anon","flags":["locked","hugepages"]}"#]),
         "processes[0].vmas[0].flags[1]", "hugepages"),
        (document(vmas: [#"{"start":"0x0","size":"4M","perms":"rw-p","kind":"hugetlb","hugePageSize":"4M"}"#]),
         "processes[0].vmas[0].hugePageSize", "4M"),
        (document(vmas: [anon8M], ops: [#"{"op":"clear_refs","kind":"dirty"}"#]), "processes[0].ops[0].kind", "dirty"),
        (document(vmas: [#"{"start":"0x1000","size":"4K","perms":"rw-p","kind":"anon","policy":"weighted:0"}"#]),
         "processes[0].vmas[0].policy", "weighted:0"),
        (document(top: #""vsyscall":"native""#, vmas: [anon8M]), "vsyscall", "native"),
    ])
    func unknownValue(_ json: String, _ path: String, _ value: String) throws {
        let error = try #require(parseError(json))
        guard case .unknownValue(let p, let v, let allowed) = error else {
            Issue.record("expected unknownValue, got \(error)")
            return
        }
        #expect(p == path)
        #expect(v == value)
        #expect(!allowed.isEmpty)
    }

    @Test(arguments: [
        (document(vmas: [anon8M], ops: [#"{"op":"migrate","start":"0x10000000","size":"4K","node":1}"#]), "processes[0].ops[0].node"),
        (document(vmas: [#"{"start":"0x1000","size":"4K","perms":"rw-x","kind":"anon"}"#]), "processes[0].vmas[0].perms"),
        (document(vmas: [#"{"start":"0x1000","size":"4K","perms":"rw-s","kind":"anon"}"#]), "processes[0].vmas[0].perms"),
        (document(vmas: [#"{"start":"0x1000","size":"4K","perms":"rw-p","kind":"anon","policy":"bind:1"}"#]), "processes[0].vmas[0].policy"),
        (document(vmas: [#"{"start":"0x1000","size":"4K","perms":"rw-p","kind":"anon","pkey":16}"#]), "processes[0].vmas[0].pkey"),
        (document(vmas: [#"{"start":"0x1000","size":"4K","perms":"rw-p","kind":"anon","flags":["hugepage","nohugepage"]}"#]), "processes[0].vmas[0].flags"),
        (document(vmas: [#"{"start":"0x1000","size":"4K","perms":"rw-p","kind":"anon","hugePageSize":"2M"}"#]), "processes[0].vmas[0].hugePageSize"),
        (document(vmas: [#"{"start":"0x1000","size":"4K","perms":"rw-p","kind":"anon","file":{"path":"/a"}}"#]), "processes[0].vmas[0].file"),
        (document(vmas: [#"{"start":"0x1000","size":"4M?","perms":"rw-p","kind":"anon"}"#]), "processes[0].vmas[0].size"),
        (document(vmas: [#"{"start":"0x1000","end":"0x3000","size":"8K","perms":"rw-p","kind":"anon"}"#]), "processes[0].vmas[0]"),
        (document(vmas: [#"{"start":-4096,"size":"4K","perms":"rw-p","kind":"anon"}"#]), "processes[0].vmas[0].start"),
        (document(vmas: [anon8M], ops: [#"{"op":"mthp","start":"0x10000000","size":"2M","order":9}"#]), "processes[0].ops[0].order"),
        (document(vmas: [anon8M], ops: [#"{"op":"ksm","start":"0x10000000","size":"8K","distinct":3}"#]), "processes[0].ops[0].distinct"),
        (document(vmas: [#"{"start":"0x1000","size":"4K","perms":"rw-s","kind":"file","file":{"path":"/a","dev":"fd-01"}}"#]), "processes[0].vmas[0].file.dev"),
        (#"{"version":2,"architecture":"x86_64","processes":[]}"#, "version"),
        (#"{"version":1,"architecture":"x86_64","levels":6,"processes":[]}"#, "levels"),
    ])
    func invalidValue(_ json: String, _ path: String) throws {
        let error = try #require(parseError(json))
        guard case .invalidValue(let p, _) = error else {
            Issue.record("expected invalidValue, got \(error)")
            return
        }
        #expect(p == path)
    }

    @Test(arguments: [
        (#"{"version":1,"architecture":"arm64","levels":5,"processes":[]}"#, "levels"),
        (#"{"version":1,"architecture":"x86_64","levels":3,"processes":[]}"#, "levels"),
        (document(vmas: [#"{"start":"0x0","size":"64K","perms":"rw-p","kind":"hugetlb","hugePageSize":"64K"}"#]),
         "processes[0].vmas[0].hugePageSize"),
        (document(vmas: [#"{"start":"0x0","size":"32M","perms":"rw-p","kind":"hugetlb","hugePageSize":"32M"}"#]),
         "processes[0].vmas[0].hugePageSize"),
        (document(architecture: "arm64", top: #""vsyscall":"xonly""#, vmas: [anon8M]), "vsyscall"),
        (document(architecture: "arm64", top: #""vsyscall":"emulate""#, vmas: [anon8M]), "vsyscall"),
    ])
    func unsupportedOnArchitecture(_ json: String, _ path: String) throws {
        let error = try #require(parseError(json))
        guard case .unsupportedOnArchitecture(let p, _, _) = error else {
            Issue.record("expected unsupportedOnArchitecture, got \(error)")
            return
        }
        #expect(p == path)
    }

    @Test(arguments: unalignedCases)
    func unalignedAddress(_ json: String, _ path: String, _ address: UInt64, _ alignment: UInt64) {
        #expect(parseError(json) == .unalignedAddress(path: path, address: address, alignment: alignment))
    }

    @Test func thpMayNotStraddleAVMABoundaryInsideItsRange() {
        // Two contiguous VMAs meeting at 0x10001000: coverage is fine, but no
        // PMD can span the boundary.
        let vmas = [
            #"{"start":"0x10000000","end":"0x10001000","perms":"rw-p","kind":"anon"}"#,
            #"{"start":"0x10001000","end":"0x10400000","perms":"rw-p","kind":"anon"}"#,
        ]
        let json = document(vmas: vmas, ops: [#"{"op":"thp","start":"0x10000000","size":"2M"}"#])
        #expect(parseError(json) == .unalignedAddress(path: "processes[0].ops[0]", address: 0x1000_1000, alignment: 2 << 20))
    }

    @Test(arguments: [
        (document(vmas: [#"{"start":"0x3000","end":"0x3000","perms":"rw-p","kind":"anon"}"#]), "processes[0].vmas[0].end", UInt64(0x3000), UInt64(0x3000)),
        (document(vmas: [#"{"start":"0x3000","end":"0x1000","perms":"rw-p","kind":"anon"}"#]), "processes[0].vmas[0].end", 0x3000, 0x1000),
        (document(vmas: [#"{"start":"0x3000","size":0,"perms":"rw-p","kind":"anon"}"#]), "processes[0].vmas[0].size", 0x3000, 0x3000),
        (document(vmas: [anon8M], ops: [#"{"op":"zap","start":"0x10002000","end":"0x10001000"}"#]), "processes[0].ops[0].end", 0x1000_2000, 0x1000_1000),
    ])
    func emptyRange(_ json: String, _ path: String, _ start: UInt64, _ end: UInt64) {
        #expect(parseError(json) == .emptyRange(path: path, start: start, end: end))
    }

    @Test(arguments: [
        ("x86_64", 4, UInt64(0x7fff_ffff_f000)), ("x86_64", 5, 0x00ff_ffff_ffff_f000),
        ("arm64", 4, 1 << 48), ("arm64", 3, 1 << 39), ("arm64", 2, 1 << 30),
    ])
    func beyondAddressSpace(_ arch: String, _ levels: Int, _ limit: UInt64) {
        let vma = #"{"start":"\#(hex(limit - 4096))","size":"8K","perms":"rw-p","kind":"anon"}"#
        let json = document(architecture: arch, top: #""levels":\#(levels)"#, vmas: [vma])
        #expect(parseError(json) == .beyondAddressSpace(path: "processes[0].vmas[0].size", address: limit + 4096, limit: limit))
    }

    @Test func beyondAddressSpaceForOpsAndOverflow() {
        let op = document(vmas: [anon8M], ops: [#"{"op":"split","address":"0x800000000000"}"#])
        #expect(parseError(op) == .beyondAddressSpace(path: "processes[0].ops[0].address", address: 0x8000_0000_0000, limit: 0x7fff_ffff_f000))
        let wrap = document(vmas: [#"{"start":"0xfffffffffffff000","size":"8K","perms":"rw-p","kind":"anon"}"#])
        #expect(parseError(wrap) == .beyondAddressSpace(path: "processes[0].vmas[0].size", address: .max, limit: 0x7fff_ffff_f000))
    }

    @Test func overlappingVMAs() throws {
        let vmas = [
            #"{"start":"0x10000","end":"0x20000","perms":"rw-p","kind":"anon"}"#,
            #"{"start":"0x1000","end":"0x3000","perms":"rw-p","kind":"anon"}"#,
            #"{"start":"0x2000","end":"0x4000","perms":"r--p","kind":"anon"}"#,
        ]
        let error = try #require(parseError(document(vmas: vmas)))
        #expect(error == .overlappingVMAs(path: "processes[0].vmas[2]", other: "processes[0].vmas[1]", otherStart: 0x1000, otherEnd: 0x3000))
        #expect(error.description == "processes[0].vmas[2]: overlaps processes[0].vmas[1] (0x1000-0x3000)")
    }

    @Test(arguments: [
        // Past the end of the only VMA.
        ([anon8M], #"{"op":"fault","start":"0x107ff000","size":"8K"}"#, [String](), UInt64(0x1080_0000)),
        // Before any VMA.
        ([anon8M], #"{"op":"zap","start":"0x1000","size":"4K"}"#, [], 0x1000),
        // Across a gap between two VMAs.
        ([anon8M, #"{"start":"0x10801000","size":"4K","perms":"rw-p","kind":"anon"}"#],
         #"{"op":"fault","start":"0x107ff000","size":"12K"}"#, [], 0x1080_0000),
        // After an earlier munmap of the same range.
        ([anon8M], #"{"op":"fault","start":"0x10000000","size":"4K"}"#,
         [#"{"op":"munmap","start":"0x10000000","size":"4K"}"#], 0x1000_0000),
    ])
    func outsideVMAs(_ vmas: [String], _ op: String, _ before: [String], _ address: UInt64) {
        let json = document(vmas: vmas, ops: before + [op])
        #expect(parseError(json) == .outsideVMAs(path: "processes[0].ops[\(before.count)]", address: address))
    }

    @Test func rangeAcrossContiguousVMAsIsAccepted() throws {
        let json = document(vmas: [anon8M, anonNext], ops: [#"{"op":"thp","start":"0x10600000","size":"4M"}"#])
        _ = try parsed(json)
    }

    @Test(arguments: [
        // (vmas, ops, failing op index, op name, vma index)
        ([hugetlb4M], [#"{"op":"thp","start":"0x20000000","size":"2M"}"#], 0, "thp", 0),
        ([anon8M], [#"{"op":"hugetlb","start":"0x10000000","size":"2M"}"#], 0, "hugetlb", 0),
        ([anon8M], [#"{"op":"remap_pfn","start":"0x10000000","size":"4K","pfn":1}"#], 0, "remap_pfn", 0),
        ([pfnmap64K], [#"{"op":"fault","start":"0x30000000","size":"4K"}"#], 0, "fault", 0),
        ([hugetlb4M], [#"{"op":"fault","start":"0x20000000","size":"2M"}"#], 0, "fault", 0),
        ([fileRO], [#"{"op":"fault","start":"0x40000000","size":"4K","write":true}"#], 0, "fault", 0),
        ([shmem1M], [#"{"op":"madv_free","start":"0x50000000","size":"4K"}"#], 0, "madv_free", 0),
        ([hugetlb4M], [#"{"op":"madv_cold","start":"0x20000000","size":"2M"}"#], 0, "madv_cold", 0),
        ([pfnmap64K], [#"{"op":"madv_pageout","start":"0x30000000","size":"4K"}"#], 0, "madv_pageout", 0),
        ([anon8M], [#"{"op":"mlock","start":"0x10000000","size":"4K"}"#, #"{"op":"madv_pageout","start":"0x10000000","size":"4K"}"#], 1, "madv_pageout", 0),
        ([anon8M], [#"{"op":"ksm","start":"0x10000000","size":"8K","distinct":1}"#], 0, "ksm", 0),
        ([anon8M], [#"{"op":"uffd_wp","start":"0x10000000","size":"4K"}"#], 0, "uffd_wp", 0),
        ([anon8M], [#"{"op":"mlock","start":"0x10000000","size":"4K"}"#, #"{"op":"guard_install","start":"0x10000000","size":"4K"}"#], 1, "guard_install", 0),
        ([anon8M], [#"{"op":"mlock","start":"0x10000000","size":"4K"}"#, #"{"op":"zap","start":"0x10000000","size":"4K"}"#], 1, "zap", 0),
        ([anon8M], [#"{"op":"mprotect","start":"0x10000000","size":"4K","perms":"rw-s"}"#], 0, "mprotect", 0),
        ([#"{"start":"0x10000000","size":"2M","perms":"rw-p","kind":"anon","flags":["nohugepage"]}"#],
         [#"{"op":"thp","start":"0x10000000","size":"2M"}"#], 0, "thp", 0),
        ([sharedFile], [#"{"op":"swapout","start":"0x60000000","size":"4K"}"#], 0, "swapout", 0),
        ([pfnmap64K], [#"{"op":"guard_install","start":"0x30000000","size":"4K"}"#], 0, "guard_install", 0),
        ([pfnmap64K], [#"{"op":"zap","start":"0x30000000","size":"4K"}"#], 0, "zap", 0),
        ([fileRO], [#"{"op":"device_private","start":"0x40000000","size":"4K"}"#], 0, "device_private", 0),
        ([hugetlb4M], [#"{"op":"split","address":"0x20000000"}"#], 0, "split", 0),
        ([anon8M, hugetlb4M], [#"{"op":"collapse","start":"0x20000000","size":"2M"}"#], 0, "collapse", 1),
        ([#"{"start":"0x10000000","size":"4K","perms":"---p","kind":"anon"}"#], [#"{"op":"fault","start":"0x10000000","size":"4K"}"#], 0, "fault", 0),
        ([#"{"start":"0x10000000","size":"4K","perms":"r--p","kind":"anon"}"#],
         [#"{"op":"device_private","start":"0x10000000","size":"4K","writable":true}"#], 0, "device_private", 0),
    ])
    func incompatibleOperation(_ vmas: [String], _ ops: [String], _ failing: Int, _ op: String, _ vma: Int) throws {
        let error = try #require(parseError(document(vmas: vmas, ops: ops)))
        guard case .incompatibleOperation(let path, let name, let vmaPath, let reason) = error else {
            Issue.record("expected incompatibleOperation, got \(error)")
            return
        }
        #expect(path == "processes[0].ops[\(failing)]")
        #expect(name == op)
        #expect(vmaPath == "processes[0].vmas[\(vma)]")
        #expect(!reason.isEmpty)
        #expect(error.description.hasPrefix("processes[0].ops[\(failing)]: \(op) cannot apply to processes[0].vmas[\(vma)]: "))
    }

    @Test func duplicatePID() {
        let json = document(vmas: [anon8M], more: [#"{"pid":7,"name":"b"}"#, #"{"pid":100,"name":"c"}"#])
        #expect(parseError(json) == .duplicatePID(path: "processes[2].pid", pid: 100, first: "processes[0].pid"))
    }

    @Test(arguments: [
        (document(vmas: [anon8M], ops: [#"{"op":"fork","child":555}"#]), "processes[0].ops[0].child", 555),
        (document(vmas: [anon8M], more: [#"{"pid":101,"name":"c","parent":99}"#]), "processes[1].parent", 99),
    ])
    func undeclaredPID(_ json: String, _ path: String, _ pid: Int) {
        #expect(parseError(json) == .undeclaredPID(path: path, pid: pid))
    }

    @Test func duplicateFork() {
        let ops = [#"{"op":"fork","child":101}"#, #"{"op":"fork","child":101}"#]
        let json = document(vmas: [anon8M], ops: ops, more: [#"{"pid":101,"name":"c","parent":100}"#])
        #expect(parseError(json) == .duplicateFork(path: "processes[0].ops[1].child", pid: 101, first: "processes[0].ops[0].child"))
    }

    @Test(arguments: [
        // The child lists VMAs of its own.
        (document(vmas: [anon8M], ops: [#"{"op":"fork","child":101}"#], more: [#"{"pid":101,"name":"c","parent":100,"vmas":[\#(anon8M)]}"#]),
         "processes[1].vmas"),
        // The parent never forks it.
        (document(vmas: [anon8M], more: [#"{"pid":101,"name":"c","parent":100}"#]), "processes[1].parent"),
        // The forked process does not name the forker as its parent.
        (document(vmas: [anon8M], ops: [#"{"op":"fork","child":101}"#], more: [#"{"pid":101,"name":"c"}"#]), "processes[0].ops[0].child"),
        (document(vmas: [anon8M], ops: [#"{"op":"fork","child":102}"#],
                  more: [#"{"pid":101,"name":"b","vmas":[]}"#, #"{"pid":102,"name":"c","parent":101}"#]), "processes[0].ops[0].child"),
        // A process forks itself.
        (document(vmas: [anon8M], ops: [#"{"op":"fork","child":100}"#]), "processes[0].ops[0].child"),
        // A parent declared after its child.
        (#"{"version":1,"architecture":"x86_64","processes":[{"pid":2,"name":"c","parent":1},{"pid":1,"name":"p","ops":[{"op":"fork","child":2}]}]}"#,
         "processes[0].parent"),
    ])
    func inconsistentParent(_ json: String, _ path: String) throws {
        let error = try #require(parseError(json))
        guard case .inconsistentParent(let p, _) = error else {
            Issue.record("expected inconsistentParent, got \(error)")
            return
        }
        #expect(p == path)
    }

    @Test func childInheritsTheLayoutAtTheFork() throws {
        let vmas = [anon8M, #"{"start":"0x20000000","size":"1M","perms":"rw-p","kind":"anon","flags":["dontcopy"]}"#]
        let child = #"{"pid":101,"name":"c","parent":100,"ops":[{"op":"fault","start":"0x10000000","size":"4K","write":true}]}"#
        _ = try parsed(document(vmas: vmas, ops: [#"{"op":"fork","child":101}"#], more: [child]))

        // A VM_DONTCOPY VMA is not inherited.
        let dontcopy = #"{"pid":101,"name":"c","parent":100,"ops":[{"op":"fault","start":"0x20000000","size":"4K"}]}"#
        #expect(parseError(document(vmas: vmas, ops: [#"{"op":"fork","child":101}"#], more: [dontcopy]))
            == .outsideVMAs(path: "processes[1].ops[0]", address: 0x2000_0000))

        // Unmapped before the fork: gone in the child; unmapped after: still there.
        let unmap = #"{"op":"munmap","start":"0x10000000","size":"8M"}"#
        #expect(parseError(document(vmas: vmas, ops: [unmap, #"{"op":"fork","child":101}"#], more: [child]))
            == .outsideVMAs(path: "processes[1].ops[0]", address: 0x1000_0000))
        _ = try parsed(document(vmas: vmas, ops: [#"{"op":"fork","child":101}"#, unmap], more: [child]))
    }

    @Test func budgetExceeded() throws {
        let ops = [
            #"{"op":"fault","start":"0x10000000","size":"1M","write":true}"#,
            #"{"op":"thp","start":"0x10200000","size":"2M"}"#,
            #"{"op":"hugetlb","start":"0x20000000","size":"4M"}"#,
        ]
        let json = document(top: #""memoryBudget":"4M""#, vmas: [anon8M, hugetlb4M], ops: ops)
        let error = try #require(parseError(json))
        #expect(error == .budgetExceeded(path: "processes[0].ops[2]", needed: 7 << 20, budget: 4 << 20))
        #expect(error.description.hasPrefix("processes[0].ops[2]: populated memory would reach 7M"))
        // Within budget when the hugetlb op is dropped; non-populating ops are free.
        _ = try parsed(document(top: #""memoryBudget":"3M""#, vmas: [anon8M, hugetlb4M],
                                ops: Array(ops.prefix(2)) + [#"{"op":"zap","start":"0x10000000","size":"8M"}"#]))
    }

    @Test func budgetCountsEveryProcess() {
        let child = #"{"pid":101,"name":"c","parent":100,"ops":[{"op":"fault","start":"0x10000000","size":"2M","write":true}]}"#
        let json = document(top: #""memoryBudget":"3M""#, vmas: [anon8M],
                            ops: [#"{"op":"thp","start":"0x10000000","size":"2M"}"#, #"{"op":"fork","child":101}"#], more: [child])
        #expect(parseError(json) == .budgetExceeded(path: "processes[1].ops[0]", needed: 4 << 20, budget: 3 << 20))
    }

    @Test func swapExceeded() {
        let ops = [#"{"op":"fault","start":"0x10000000","size":"64K","write":true}"#, #"{"op":"swapout","start":"0x10000000","size":"64K"}"#]
        let json = document(top: #""swapSlots":8"#, vmas: [anon8M], ops: ops)
        #expect(parseError(json) == .swapExceeded(path: "processes[0].ops[1]", needed: 16, available: 8))
    }

    @Test func everyDescriptionStartsWithItsPath() {
        let errors: [ScenarioError] = [
            .missingField(path: "processes[0].name"),
            .wrongType(path: "levels", expected: "integer", found: "string"),
            .unknownKey(path: "processes[0].vmas[1].prems", allowed: ["perms"]),
            .unalignedAddress(path: "processes[1].vmas[3].end", address: 0x1234, alignment: 4096),
            .outsideVMAs(path: "processes[0].ops[2]", address: 0x1000),
            .budgetExceeded(path: "processes[0].ops[9]", needed: 5 << 30, budget: 4 << 30),
        ]
        for error in errors {
            #expect(error.description.hasPrefix(error.path + ": "))
        }
        #expect(ScenarioError.unalignedAddress(path: "processes[1].vmas[3].end", address: 0x1234, alignment: 4096).description
            == "processes[1].vmas[3].end: 0x1234 is not aligned to 4K")
    }
}

// MARK: - madvise LRU and read-ahead ops

@Suite struct MadviseOpParsingTests {
    /// madv_cold, madv_pageout and madv_willneed decode to their ranges,
    /// take no other key, and build: pageout sends the faulted pages to
    /// swap, willneed reads them back into the swap cache, cold makes the
    /// rest old.
    @Test func decodeAndBuild() throws {
        let ops = [
            #"{"op":"fault","start":"0x10000000","size":"64K","write":true}"#,
            #"{"op":"madv_pageout","start":"0x10000000","size":"16K"}"#,
            #"{"op":"madv_willneed","start":"0x10000000","size":"16K"}"#,
            #"{"op":"madv_cold","start":"0x10004000","size":"48K"}"#,
        ]
        let doc = try parsed(document(vmas: [anon8M], ops: ops))
        #expect(Array(doc.processes[0].ops.dropFirst()) == [
            .madvPageout(AddressRange(start: 0x1000_0000, size: 16 << 10)),
            .madvWillNeed(AddressRange(start: 0x1000_0000, size: 16 << 10)),
            .madvCold(AddressRange(start: 0x1000_4000, size: 48 << 10)),
        ])
        #expect(doc.processes[0].ops.dropFirst().map(\.kind) == [.madvPageout, .madvWillNeed, .madvCold])
        #expect(parseError(document(vmas: [anon8M], ops: [#"{"op":"madv_cold","start":"0x10000000","size":"4K","write":true}"#])) != nil)
        let built = try ScenarioBuilder.build(doc)
        let mm = try #require(built.addressSpace(pid: 100))
        guard case .softLeaf(_, _, let leaf) = mm.translate(0x1000_0000), case .swap(let e) = leaf.leaf else {
            Issue.record("madv_pageout left \(mm.translate(0x1000_0000))"); return
        }
        #expect(mm.memory.swap.cachedFolioPFN(Int(e.offset)) != nil, "madv_willneed read the slot into the swap cache")
        guard case .present(_, let raw, _) = mm.translate(0x1000_4000) else { Issue.record("page gone"); return }
        #expect(raw & mm.geometry.layout.young == 0, "madv_cold made the page old")
    }
}
