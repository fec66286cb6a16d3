import Testing
import Foundation
import MemoryModel
import PageWalk
import ProcFS

/// The API misuse matrix: bad ranges for every walker entry point, producer
/// and model mutation; walking without the required lock; `install_pte`
/// through the public entry points; a torn-down address space. Each row
/// must fail with a typed error of the expected kind (never succeed, never
/// crash), and leave the address space as it was.
@Suite struct APIMisuseTests {
    static let lo: UInt64 = 0x40_0000, hi: UInt64 = 0x80_0000

    /// A populated address space, a kernel one, and a token that escaped
    /// its lock (proof of nothing).
    final class Fixture: @unchecked Sendable {
        let memory: PhysicalMemory
        let mm: AddressSpace
        let vma: VMA
        let kernel: KernelAddressSpace
        let escaped: AddressSpace.MmapLockToken
        init() throws {
            memory = try PhysicalMemory(budgetBytes: 256 << 20, nodes: 2)
            mm = try AddressSpace(geometry: .x86_64, memory: memory, options: AddressSpaceOptions(pid: 42))
            vma = try mm.mmap(start: APIMisuseTests.lo, end: APIMisuseTests.hi, access: [.read, .write])
            try mm.fault(APIMisuseTests.lo, APIMisuseTests.lo + 0x10_0000, write: true)
            kernel = try KernelLayout.x86_64().build(on: memory)
            escaped = mm.withMmapReadLock { $0 }
        }
    }

    /// What a row must throw.
    enum Expect {
        case invalidRange, lockNotHeld, installNotPermitted, tornDown, wrongAddressSpace, anyTyped

        func matches(_ e: Error) -> Bool {
            switch (self, e) {
            case (.invalidRange, PageWalkError.invalidRange), (.invalidRange, ModelError.invalidRange),
                 (.invalidRange, ModelError.unaligned), (.invalidRange, ModelError.noVMA),
                 (.invalidRange, PagemapScan.ScanError.invalidArgument), (.invalidRange, PagemapScan.ScanError.badAddress),
                 (.invalidRange, MadviseError.unmapped), (.invalidRange, MadviseError.invalidRange):
                return true
            case (.lockNotHeld, PageWalkError.lockNotHeld), (.lockNotHeld, ModelError.lockNotHeld): return true
            case (.installNotPermitted, PageWalkError.installNotPermitted): return true
            case (.tornDown, PageWalkError.model(.tornDown)), (.tornDown, ModelError.tornDown),
                 (.tornDown, MadviseError.walk(.model(.tornDown))),
                 (.tornDown, PagemapScan.ScanError.walk(.model(.tornDown))): return true
            case (.wrongAddressSpace, PageWalkError.wrongAddressSpace): return true
            case (.anyTyped, is PageWalkError), (.anyTyped, is ModelError), (.anyTyped, is PagemapScan.ScanError),
                 (.anyTyped, is MadviseError): return true
            default: return false
            }
        }
    }

    struct Row: CustomStringConvertible, Sendable {
        let name: String
        let expect: Expect
        let body: @Sendable (Fixture) throws -> Void
        var description: String { name }
    }

    static func noop() -> MMWalkOps<Void> {
        var ops = MMWalkOps<Void>()
        ops.pteEntry = { _, _, _, _ in 0 }
        ops.pteHole = { _, _, _, _ in 0 }
        return ops
    }

    static func installing() -> MMWalkOps<Void> {
        var ops = noop()
        ops.installPTE = { _, _, pte, _ in pte = PTE(rawValue: 0, architecture: .x86_64); return 0 }
        return ops
    }

    /// Bad ranges: empty, unaligned start or end, beyond user space, in the
    /// kernel half, ending past 2^64 - 4096 (unaligned).
    static let badRanges: [(String, UInt64, UInt64)] = [
        ("empty", lo, lo),
        ("unaligned start", lo + 1, hi),
        ("unaligned end", lo, hi - 0x800),
        ("beyond user space", lo, 0x8000_0000_0000 + 0x20_0000),
        ("kernel half", 0xffff_8880_0000_0000, 0xffff_8880_0020_0000),
        ("to 2^64-1 on a user walk", lo, UInt64.max),
    ]

    static var rows: [Row] {
        var rows: [Row] = []
        for (what, s, e) in badRanges {
            func walkRow(_ n: String, _ body: @escaping @Sendable (Fixture) throws -> Void) {
                rows.append(Row(name: "\(n) — \(what) \(hx(s))-\(hx(e))", expect: .invalidRange, body: body))
            }
            if s < e {
                walkRow("range walker") { f in try f.mm.withMmapReadLock { l in _ = try f.mm.walk(s..<e, lock: l) } }
            }
            // pagemap is read like the file: an empty read or one past
            // TASK_SIZE returns nothing (kernelAccepts below); unaligned is refused.
            if s <= e {
                walkRow("pagemap (range)") { f in _ = try Pagemap.words(f.mm, s..<e, privileged: true, options: ProcOptions(walker: .range)) }
                walkRow("pagemap (callback)") { f in _ = try Pagemap.words(f.mm, s..<e, privileged: true, options: ProcOptions(walker: .callback)) }
            }
            walkRow("walk_page_range") { f in try f.mm.withMmapReadLock { (_) throws(PageWalkError) in _ = try walkPageRange(f.mm, s, e, ops: noop()) } }
            walkRow("walk_page_range_vma") { f in
                var none: Void = ()
                try f.mm.withMmapReadLock { (_) throws(PageWalkError) in _ = try walkPageRangeVMA(f.mm, f.vma, s, e, ops: noop(), private: &none) }
            }
            if e != UInt64.max {
                walkRow("walk_page_range_debug") { f in
                    var none: Void = ()
                    try f.mm.withMmapWriteLock { (_) throws(PageWalkError) in _ = try walkPageRangeDebug(f.mm, s, e, ops: noop(), private: &none) }
                }
            }
            if what.hasPrefix("un") || what == "empty" {
                walkRow("walk_kernel_page_table_range") { f in
                    var none: Void = ()
                    let k = f.kernel.mm, base = k.geometry.kernelAddressStart
                    try k.withMmapReadLock { (_) throws(PageWalkError) in
                        _ = try walkKernelPageTableRange(k, base + (s - lo), base + (e - lo), ops: noop(), private: &none)
                    }
                }
            }
            walkRow("PAGEMAP_SCAN (range)") { f in _ = try PagemapScan.scan(f.mm, .init(start: s, end: e)) }
            walkRow("PAGEMAP_SCAN (callback)") { f in _ = try PagemapScan.scan(f.mm, .init(start: s, end: e), options: ProcOptions(walker: .callback)) }
            walkRow("madvise guard install") { f in try madviseGuardInstall(f.mm, s, e) }
            walkRow("madvise guard remove") { f in try madviseGuardRemove(f.mm, s, e) }
            let mutations: [(String, @Sendable (AddressSpace) throws -> Void)] = [
                ("fault", { try $0.fault(s, e, write: true) }), ("access", { try $0.access(s, e, write: false) }),
                ("zap", { try $0.zap(s, e) }), ("munmap", { try $0.munmap(s, e) }),
                ("swapOut", { try $0.swapOut(s, e) }), ("swapIn", { try $0.swapIn(s, e) }),
                ("migrate", { try $0.migrate(s, e, toNode: 1) }), ("startMigration", { try $0.startMigration(s, e) }),
                ("finishMigration", { try $0.finishMigration(s, e) }), ("populateTHP", { try $0.populateTHP(s, e) }),
                ("populateLargeFolios", { try $0.populateLargeFolios(s, e, order: 4) }), ("populateHugetlb", { try $0.populateHugetlb(s, e) }),
                ("collapse", { try $0.collapse(s, e) }), ("mprotect", { try $0.mprotect(s, e, access: [.read]) }),
                ("mlock", { try $0.mlock(s, e) }), ("munlock", { try $0.munlock(s, e) }),
                ("madviseFree", { try $0.madviseFree(s, e) }), ("ksmMerge", { try $0.ksmMerge(s, e, distinct: 2) }),
                ("userfaultWriteProtect", { try $0.userfaultWriteProtect(s, e) }), ("makeDevicePrivate", { try $0.makeDevicePrivate(s, e, writable: true) }),
                ("makeDeviceExclusive", { try $0.makeDeviceExclusive(s, e) }), ("remapPFN", { try $0.remapPFN(s, e) }),
                ("mmap", { _ = try $0.mmap(start: s == lo ? 0x1000_0000 : s, end: s == lo ? 0x1000_0000 &+ (e &- s) : e, access: [.read]) }),
            ]
            for (n, m) in mutations {
                rows.append(Row(name: "\(n) — \(what) \(hx(s))-\(hx(e))", expect: .invalidRange) { f in try m(f.mm) })
            }
        }
        rows.append(Row(name: "poison outside every VMA", expect: .invalidRange) { f in try f.mm.poison(hi + 0x1000) })
        rows.append(Row(name: "splitHugePMD outside every VMA", expect: .invalidRange) { f in try f.mm.splitHugePMD(containing: hi + 0x1000) })

        // Walking without the lock the walk needs.
        let unlocked: [(String, Expect, @Sendable (Fixture) throws -> Void)] = [
            ("range walker, escaped token", .lockNotHeld, { f in _ = try f.mm.walk(lo..<hi, lock: f.escaped) }),
            ("range walker, another mm's token", .wrongAddressSpace, { f in
                try f.kernel.mm.withMmapReadLock { l in _ = try f.mm.walk(lo..<hi, lock: l) } }),
            ("walk_page_range, no lock", .lockNotHeld, { f in _ = try walkPageRange(f.mm, lo, hi, ops: noop()) }),
            ("walk_page_range, write mode under read lock", .lockNotHeld, { f in
                var ops = noop(); ops.walkLock = .write
                try f.mm.withMmapReadLock { (_) throws(PageWalkError) in _ = try walkPageRange(f.mm, lo, hi, ops: ops) } }),
            ("walk_page_vma, no lock", .lockNotHeld, { f in var n: Void = (); _ = try walkPageVMA(f.mm, f.vma, ops: noop(), private: &n) }),
            ("walk_page_range_vma, no lock", .lockNotHeld, { f in var n: Void = (); _ = try walkPageRangeVMA(f.mm, f.vma, lo, hi, ops: noop(), private: &n) }),
            ("walk_page_range_debug under the read lock", .lockNotHeld, { f in
                var n: Void = ()
                try f.mm.withMmapReadLock { (_) throws(PageWalkError) in _ = try walkPageRangeDebug(f.mm, lo, hi, ops: noop(), private: &n) } }),
            ("walk_kernel_page_table_range, no lock", .lockNotHeld, { f in
                var n: Void = (); let k = f.kernel.mm
                _ = try walkKernelPageTableRange(k, k.geometry.kernelAddressStart, UInt64.max, ops: noop(), private: &n) }),
            ("walk_kernel_page_table_range on a user mm", .wrongAddressSpace, { f in
                var n: Void = ()
                try f.mm.withMmapReadLock { (_) throws(PageWalkError) in _ = try walkKernelPageTableRange(f.mm, lo, hi, ops: noop(), private: &n) } }),
            ("folio_walk_start, no lock", .lockNotHeld, { f in _ = try folioWalkStart(f.mm, f.vma, lo) }),
            ("folio_walk_start, a foreign VMA", .wrongAddressSpace, { f in
                let other = try AddressSpace(geometry: .x86_64, memory: f.memory)
                let v = try other.mmap(start: lo, end: hi, access: [.read])
                try f.mm.withMmapReadLock { (_) throws(PageWalkError) in _ = try folioWalkStart(f.mm, v, lo) } }),
            ("smaps gather (range), escaped token", .lockNotHeld, { f in _ = try Smaps.gather(f.mm, f.vma, lock: f.escaped, options: ProcOptions(walker: .range)) }),
            ("smaps gather (callback), escaped token", .lockNotHeld, { f in _ = try Smaps.gather(f.mm, f.vma, lock: f.escaped, options: ProcOptions(walker: .callback)) }),
            ("numa_maps gather (range), escaped token", .lockNotHeld, { f in _ = try NumaMaps.gather(f.mm, f.vma, lock: f.escaped, options: ProcOptions(walker: .range)) }),
            ("numa_maps gather (callback), escaped token", .lockNotHeld, { f in _ = try NumaMaps.gather(f.mm, f.vma, lock: f.escaped, options: ProcOptions(walker: .callback)) }),
        ]
        for (n, e, b) in unlocked { rows.append(Row(name: n, expect: e, body: b)) }

        // install_pte through every public entry point (check_ops_valid()).
        let installs: [(String, @Sendable (Fixture) throws -> Void)] = [
            ("walk_page_range", { f in try f.mm.withMmapReadLock { (_) throws(PageWalkError) in _ = try walkPageRange(f.mm, lo, hi, ops: installing()) } }),
            ("walk_page_range_vma", { f in var n: Void = ()
                try f.mm.withMmapReadLock { (_) throws(PageWalkError) in _ = try walkPageRangeVMA(f.mm, f.vma, lo, hi, ops: installing(), private: &n) } }),
            ("walk_page_vma", { f in var n: Void = ()
                try f.mm.withMmapReadLock { (_) throws(PageWalkError) in _ = try walkPageVMA(f.mm, f.vma, ops: installing(), private: &n) } }),
            ("walk_page_range_debug", { f in var n: Void = ()
                try f.mm.withMmapWriteLock { (_) throws(PageWalkError) in _ = try walkPageRangeDebug(f.mm, lo, hi, ops: installing(), private: &n) } }),
            ("walk_kernel_page_table_range", { f in var n: Void = (); let k = f.kernel.mm
                try k.withMmapReadLock { (_) throws(PageWalkError) in
                    _ = try walkKernelPageTableRange(k, k.geometry.kernelAddressStart, UInt64.max, ops: installing(), private: &n) } }),
            ("walk_page_mapping", { f in var n: Void = ()
                let file = f.memory.file(path: "/x", device: .none, inode: 1)
                _ = try walkPageMapping(f.memory, file, firstIndex: 0, count: 4, ops: installing(), private: &n) }),
        ]
        for (n, b) in installs { rows.append(Row(name: "install_pte through \(n)", expect: .installNotPermitted, body: b)) }
        return rows
    }

    /// Rows where the kernel itself succeeds, so the model must too: an
    /// empty or past-TASK_SIZE pagemap read returns nothing; PAGEMAP_SCAN
    /// rounds an unaligned end up and scans nothing for start == end;
    /// madvise of length 0 is a no-op and rounds its length up.
    static func kernelAccepts(_ name: String) -> Bool {
        if name.hasPrefix("pagemap") { return name.contains("— empty") || name.contains("beyond user space") || name.contains("kernel half") || name.contains("2^64") }
        if name.hasPrefix("PAGEMAP_SCAN") { return name.contains("— empty") || name.contains("unaligned end") }
        if name.hasPrefix("madvise") { return name.contains("— empty") || name.contains("unaligned end") }   // PAGE_ALIGN(len)
        // walk_page_range_debug() walks a user mm's tables over any range
        // (ptdump of user tables reaches into the kernel half).
        if name.hasPrefix("walk_page_range_debug") { return name.contains("beyond user space") || name.contains("kernel half") }
        return false
    }

    @Test func misuseMatrixGivesTypedErrors() throws {
        let f = try Fixture()
        let before = f.mm.counterSnapshot, tables = f.memory.tables.liveTables, bytes = f.memory.allocatedBytes
        let vmas = f.mm.vmas.map { $0.range }
        var failures: [String] = []
        // madvise applies to the mapped parts of a range before reporting
        // the unmapped rest (-ENOMEM), as the kernel does: those rows run
        // last, after the "nothing changed" check.
        let all = Self.rows
        let rows = all.filter { !$0.name.hasPrefix("madvise") } + all.filter { $0.name.hasPrefix("madvise") }
        let verbose = ProcessInfo.processInfo.environment["PAGEWALK_VERBOSE"] != nil
        var unchanged: [String] = []
        for row in rows {
            if row.name.hasPrefix("madvise") && unchanged.isEmpty {
                if f.mm.counterSnapshot != before { unchanged.append("counters \(f.mm.counterSnapshot) vs \(before)") }
                if f.memory.tables.liveTables != tables { unchanged.append("tables \(f.memory.tables.liveTables) vs \(tables)") }
                if f.memory.allocatedBytes != bytes { unchanged.append("allocated \(f.memory.allocatedBytes) vs \(bytes)") }
                if f.mm.vmas.map({ $0.range }) != vmas { unchanged.append("VMAs changed") }
                unchanged.append("checked")
            }
            if verbose { FileHandle.standardError.write(Data("row: \(row.name)\n".utf8)) }
            do {
                try row.body(f)
                if Self.kernelAccepts(row.name) { continue }
                failures.append("\(row.name): succeeded, expected \(row.expect)")
            } catch {
                if !row.expect.matches(error) && !Self.kernelAccepts(row.name) { failures.append("\(row.name): \(type(of: error)) \(error), expected \(row.expect)") }
                if "\(error)".isEmpty { failures.append("\(row.name): empty error text") }
            }
            #expect(!f.mm.mmapLock.isLocked, "\(row.name) left the mmap lock held")
        }
        #expect(failures.isEmpty, "\(failures.count) of \(rows.count) rows:\n\(failures.joined(separator: "\n"))")
        // The refused operations changed nothing.
        #expect(unchanged == ["checked"], "\(unchanged)")
        print("[API misuse] \(rows.count) rows, \(failures.count) failures")
    }

    /// A torn-down address space: every walker and mutation refuses it with
    /// `.tornDown`; producers print what /proc of an exited process shows
    /// (nothing) or refuse it.
    @Test func tornDownAddressSpaceIsATypedError() throws {
        let f = try Fixture()
        let vma = f.vma
        try f.mm.tearDown()
        let mm = f.mm
        let lo = Self.lo, hi = Self.hi
        let noop = Self.noop
        let tornRows: [(String, () throws -> Void)] = [
            ("range walker", { try mm.withMmapReadLock { l in _ = try mm.walk(lo..<hi, lock: l) } }),
            ("walk_page_range", { try mm.withMmapReadLock { (_) throws(PageWalkError) in _ = try walkPageRange(mm, lo, hi, ops: noop()) } }),
            ("walk_page_vma", { var n: Void = (); try mm.withMmapReadLock { (_) throws(PageWalkError) in _ = try walkPageVMA(mm, vma, ops: noop(), private: &n) } }),
            ("walk_page_range_vma", { var n: Void = (); try mm.withMmapReadLock { (_) throws(PageWalkError) in _ = try walkPageRangeVMA(mm, vma, lo, hi, ops: noop(), private: &n) } }),
            ("walk_page_range_debug", { var n: Void = (); try mm.withMmapWriteLock { (_) throws(PageWalkError) in _ = try walkPageRangeDebug(mm, lo, hi, ops: noop(), private: &n) } }),
            ("folio_walk_start", { try mm.withMmapReadLock { (_) throws(PageWalkError) in _ = try folioWalkStart(mm, vma, lo) } }),
            ("madvise guard install", { try madviseGuardInstall(mm, lo, hi) }),
            ("fault", { try mm.fault(lo, hi, write: true) }), ("zap", { try mm.zap(lo, hi) }),
            ("swapOut", { try mm.swapOut(lo, hi) }), ("fork", { _ = try mm.fork(childPID: 9) }),
            ("mmap", { _ = try mm.mmap(start: lo, end: hi, access: [.read]) }), ("tearDown", { try mm.tearDown() }),
            ("clearRefs", { try mm.clearRefs(.all) }),
        ]
        for (name, body) in tornRows {
            do {
                try body()
                Issue.record("\(name) on a torn-down mm succeeded")
            } catch {
                #expect(Expect.tornDown.matches(error), "\(name): \(error)")
            }
        }
        for options in [ProcOptions(walker: .range), ProcOptions(walker: .callback)] {
            #expect((try? Smaps.text(mm, options: options)) ?? "" == "")
            #expect((try? NumaMaps.text(mm, options: options)) ?? "" == "")
            #expect((try? Pagemap.words(mm, lo..<hi, privileged: true, options: options))?.allSatisfy { $0 == 0 } ?? true)
        }
    }
}
