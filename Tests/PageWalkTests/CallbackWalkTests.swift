import Testing
import MemoryModel
@testable import PageWalk

@Suite struct CallbackWalkTests {
    /// A VMA spanning two top-level entries with one page mapped deep in the
    /// second: every real level has none entries beside the mapped path.
    @Test(arguments: zip(allGeometries, [[-1, 0, 1, 2, 3], [-1, 0, 2, 3], [-1, 0, 2, 3], [-1, 0, 3], [-1, 0]] as [Set<Int32>]))
    func holesAtEveryDepth(_ g: Geometry, _ expectedDepths: Set<Int32>) throws {
        let mm = try makeSpace(g)
        let top = g.entrySize(.pgd)
        var offset: UInt64 = 7 * page
        if !g.isFolded(.pmd) { offset += 5 * mb2 }
        if !g.isFolded(.pud) { offset += 3 * gb1 }
        if !g.isFolded(.p4d) { offset += 2 << 39 }
        let mapped = top + offset
        // The VMA starts inside the first (empty) top-level entry and ends
        // past the mapped page's PMD; small enough for the model to tear down.
        let vmaStart = top - (1 << 20), vmaEnd = mapped + mb2
        let start = vmaStart - page, end = vmaEnd + page
        try mm.mmap(start: vmaStart, end: vmaEnd, access: [.read, .write])
        try mm.fault(mapped, mapped + page, write: true)
        var log = WalkLog()
        let r = try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, start, end, ops: loggingOps(), private: &log) }
        #expect(r == 0)
        #expect(Set(log.holes.map(\.depth)) == expectedDepths)
        // Holes and PTEs tile the range in order.
        var at = start
        for (s, e) in log.covered {
            #expect(s == at, "gap or overlap at 0x\(String(at, radix: 16))")
            at = e
        }
        #expect(at == end)
        // Each hole inside the VMA is where translate() finds a none entry,
        // at the folded depth of that level.
        for h in log.holes where h.depth >= 0 {
            guard case .none(let level) = mm.translate(h.start) else { Issue.record("\(h) is mapped"); continue }
            #expect(Int32(g.realDepth(level.holeDepth)) == h.depth, "\(h) found none at \(level)")
        }
        #expect(log.holes.first == Hole(start: start, end: vmaStart, depth: -1))
        #expect(log.holes.last == Hole(start: vmaEnd, end: end, depth: -1))
        #expect(log.ptes.count == 512)
        #expect(log.ptes.filter { $0.raw != 0 }.map(\.addr) == [mapped])
    }

    /// Two PTE tables under [2M, 6M) of an anonymous VMA.
    func twoTables() throws -> AddressSpace {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: 3 * mb2, access: [.read, .write])
        try mm.fault(mb2, mb2 + page, write: true)
        try mm.fault(2 * mb2 + 8 * page, 2 * mb2 + 9 * page, write: true)
        return mm
    }

    @Test func againRewalksTheEntry() throws {
        let mm = try twoTables()
        var ops = loggingOps(pmd: true)
        let logPMD = ops.pmdEntry!
        ops.pmdEntry = { p, a, n, walk in
            _ = logPMD(p, a, n, &walk)
            if a == mb2 && walk.privateData.pmds.count == 1 { walk.action = .again }
            return 0
        }
        var log = WalkLog()
        _ = try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, mb2, 3 * mb2, ops: ops, private: &log) }
        #expect(log.pmds.map(\.addr) == [mb2, mb2, 2 * mb2])
        #expect(log.ptes.count == 1024)
    }

    @Test func continueSkipsTheSubtree() throws {
        let mm = try twoTables()
        var ops = loggingOps(pmd: true)
        ops.pmdEntry = { p, a, n, walk in
            walk.privateData.pmds.append((a, n, p.rawValue))
            if a == mb2 { walk.action = .continue }
            return 0
        }
        var log = WalkLog()
        _ = try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, mb2, 3 * mb2, ops: ops, private: &log) }
        #expect(log.pmds.count == 2)
        #expect(log.ptes.count == 512 && log.ptes.allSatisfy { $0.addr >= 2 * mb2 })
    }

    @Test func positiveReturnStopsAndIsReturned() throws {
        let mm = try twoTables()
        var ops = loggingOps()
        ops.pteEntry = { _, a, _, walk in
            walk.privateData.ptes.append((a, 0))
            return a == mb2 + 10 * page ? 42 : 0
        }
        var log = WalkLog()
        let r = try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, mb2, 3 * mb2, ops: ops, private: &log) }
        #expect(r == 42)
        #expect(log.ptes.count == 11)
        ops.pteEntry = { _, _, _, _ in -5 }
        #expect(throws: PageWalkError.handlerError(-5)) {
            try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, mb2, 3 * mb2, ops: ops, private: &log) }
        }
    }

    @Test func testWalkSkipsOrAborts() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: 2 * mb2, access: [.read, .write])
        try mm.mmap(start: 4 * mb2, end: 5 * mb2, access: [.read, .write])
        try mm.fault(mb2, 2 * mb2, write: true)
        try mm.fault(4 * mb2, 5 * mb2, write: true)
        var ops = loggingOps()
        var pre: [UInt64] = []
        ops.testWalk = { s, _, _ in s == mb2 ? 1 : 0 }
        ops.preVMA = { s, _, _ in pre.append(s); return 0 }
        var log = WalkLog()
        let r = try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, 0, 6 * mb2, ops: ops, private: &log) }
        #expect(r == 0 && pre == [4 * mb2])
        #expect(log.ptes.count == 512 && log.ptes.allSatisfy { $0.addr >= 4 * mb2 })
        // The skipped VMA is not a hole either: holes are only the gaps.
        #expect(log.holes.map(\.depth).allSatisfy { $0 == -1 })
        #expect(log.holes.map(\.start) == [0, 2 * mb2, 5 * mb2])
        ops.testWalk = { s, _, _ in s == 4 * mb2 ? -3 : 0 }
        log = WalkLog()
        #expect(throws: PageWalkError.handlerError(-3)) {
            try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, 0, 6 * mb2, ops: ops, private: &log) }
        }
        #expect(log.ptes.count == 512)   // the first VMA was walked before the abort
    }

    @Test func pfnMapSkippedUnlessAHoleHandlerWantsIt() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + 16 * page, access: [.read, .write], shared: true, kind: .pfnMap(firstPFN: 0x5000))
        try mm.remapPFN(mb2, mb2 + 16 * page)
        try mm.mmap(start: 2 * mb2, end: 2 * mb2 + 16 * page, access: [.read, .write])
        try mm.fault(2 * mb2, 2 * mb2 + page, write: true)
        // Without pte_hole: the PFN map is silently skipped.
        var ptes = 0
        var ops = MMWalkOps<Int>(pteEntry: { _, a, _, walk in if a < 2 * mb2 { walk.privateData += 1 }; return 0 })
        _ = try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, mb2, 3 * mb2, ops: ops, private: &ptes) }
        #expect(ptes == 0)
        // With pte_hole: one depth -1 hole covers it, and its positive return
        // is swallowed (walk_page_test() only steers the walk).
        var log = WalkLog()
        var logOps = loggingOps()
        let logHole = logOps.pteHole!
        logOps.pteHole = { s, e, d, walk in _ = logHole(s, e, d, &walk); return s == mb2 ? 9 : 0 }
        let r = try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, mb2, 3 * mb2, ops: logOps, private: &log) }
        #expect(r == 0)
        #expect(log.holes.first == Hole(start: mb2, end: mb2 + 16 * page, depth: -1))
        #expect(!log.ptes.contains { $0.addr < 2 * mb2 })
        #expect(log.ptes.count == 16)
        // walk_page_range_vma() has no walk_page_test(): the PFN PTEs are seen.
        let pfnVMA = try #require(mm.vma(containing: mb2))
        ptes = 0
        ops.pteEntry = { p, _, _, walk in if p.entry.isSpecial { walk.privateData += 1 }; return 0 }
        _ = try locked(mm) { () throws(PageWalkError) in try walkPageVMA(mm, pfnVMA, ops: ops, private: &ptes) }
        #expect(ptes == 16)
    }

    @Test func hugetlbOnlyThroughHugetlbEntry() throws {
        let mm = try makeSpace(budget: 64 << 20)
        try mm.mmap(start: gb1 - mb2, end: gb1 + mb2, access: [.read, .write], kind: .hugetlb(pageSize: mb2, file: nil))
        try mm.populateHugetlb(gb1 - mb2, gb1)
        var ops = loggingOps(pmd: true, pud: true)
        ops.hugetlbEntry = { p, hmask, a, n, walk in
            walk.privateData.hugetlb.append((a, n, hmask, p.slot.level, p.rawValue))
            return 0
        }
        var log = WalkLog()
        _ = try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, gb1 - mb2 + page, gb1 + mb2, ops: ops, private: &log) }
        #expect(log.pmds.isEmpty && log.puds.isEmpty && log.ptes.isEmpty)
        #expect(log.hugetlb.count == 1)
        let h = try #require(log.hugetlb.first)
        #expect(h.addr == gb1 - mb2 + page && h.next == gb1 && h.hmask == ~(mb2 - 1) && h.level == .pmd)
        #expect(PMD(rawValue: h.raw, architecture: .x86_64).isLeaf)
        // The second huge page has no PMD table: a depth -1 hole.
        #expect(log.holes == [Hole(start: gb1, end: gb1 + mb2, depth: -1)])
        // Without hugetlb_entry the VMA yields nothing at all.
        ops.hugetlbEntry = nil
        log = WalkLog()
        _ = try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, gb1 - mb2, gb1 + mb2, ops: ops, private: &log) }
        #expect(log.holes.isEmpty && log.pmds.isEmpty && log.ptes.isEmpty)
    }

    @Test func hugetlbContiguousPTEsOnArm64() throws {
        let mm = try makeSpace(.arm64, budget: 64 << 20)
        let size: UInt64 = 64 << 10
        try mm.mmap(start: mb2, end: mb2 + 4 * size, access: [.read, .write], kind: .hugetlb(pageSize: size, file: nil))
        try mm.populateHugetlb(mb2, mb2 + 4 * size)
        var log = WalkLog()
        var ops = loggingOps()
        ops.hugetlbEntry = { p, hmask, a, n, walk in
            walk.privateData.hugetlb.append((a, n, hmask, p.slot.level, p.rawValue))
            return 0
        }
        _ = try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, mb2, mb2 + 4 * size, ops: ops, private: &log) }
        #expect(log.hugetlb.map(\.addr) == (0..<4).map { mb2 + UInt64($0) * size })
        #expect(log.hugetlb.allSatisfy { $0.level == .pte && PTE(rawValue: $0.raw, architecture: .arm64).isContiguous })
        #expect(log.ptes.isEmpty)
    }

    /// Handlers as a type that would install PTEs.
    struct InstallingOps: MMWalkOpsProtocol {
        typealias Private = Void
        var hasInstallPTE: Bool { true }
        func installPTE(_ addr: UInt64, _ next: UInt64, _ pte: inout PTE, _ walk: inout MMWalk<Void>) -> Int32 { 0 }
    }

    @Test func installIsRefusedByEveryPublicEntryPoint() throws {
        let mm = try makeSpace()
        let vma = try mm.mmap(start: mb2, end: 2 * mb2, access: [.read, .write])
        let file = mm.memory.file(path: "/f", device: .none, inode: 1)
        var ops = MMWalkOps<Void>()
        ops.installPTE = { _, _, _, _ in 0 }
        var none: Void = ()
        try locked(mm, write: true) { () throws in
            #expect(throws: PageWalkError.installNotPermitted) { try walkPageRange(mm, mb2, 2 * mb2, ops: ops) }
            #expect(throws: PageWalkError.installNotPermitted) { try walkPageVMA(mm, vma, ops: ops, private: &none) }
            #expect(throws: PageWalkError.installNotPermitted) {
                try walkPageRangeVMA(mm, vma, mb2, 2 * mb2, ops: ops, private: &none)
            }
            #expect(throws: PageWalkError.installNotPermitted) {
                try walkPageMapping(mm.memory, file, firstIndex: 0, count: 1, ops: ops, private: &none)
            }
            #expect(throws: PageWalkError.installNotPermitted) {
                try walkPageRangeDebug(mm, mb2, 2 * mb2, ops: ops, private: &none)
            }
            #expect(throws: PageWalkError.installNotPermitted) {
                try walkPageRange(mm, mb2, 2 * mb2, ops: InstallingOps(), private: &none)
            }
        }
        let kernel = try AddressSpace(geometry: .x86_64, memory: mm.memory, kernel: true)
        try locked(kernel) { () throws in
            #expect(throws: PageWalkError.installNotPermitted) {
                try walkKernelPageTableRange(kernel, kernel.geometry.kernelAddressStart, ~0, ops: ops, private: &none)
            }
        }
        #expect(mm.translate(mb2) == .none(level: .p4d))
        // The internal entry point installs, but never into hugetlb VMAs.
        try mm.mmap(start: gb1, end: gb1 + mb2, access: [.read, .write], kind: .hugetlb(pageSize: mb2, file: nil))
        #expect(throws: PageWalkError.hugetlbInstall(vmaStart: gb1)) {
            try locked(mm) { () throws(PageWalkError) in try walkPageRangeMM(mm, gb1, gb1 + mb2, ops: ops, private: &none) }
        }
    }

    @Test func allocationFailureMidInstallLeavesAConsistentPrefix() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: 4 * mb2, access: [.read, .write])
        let marker = try guardMarker(mm)
        let ops = MMWalkOps<Int>(installPTE: { _, _, pte, walk in
            pte = PTE(rawValue: marker, architecture: .x86_64)
            walk.privateData += 1
            return 0
        })
        // PUD, PMD and the first PTE table succeed; the second PTE table fails.
        mm.memory.tables.injectAllocationFailure(after: 4)
        var installed = 0
        #expect(throws: PageWalkError.self) {
            try locked(mm) { () throws(PageWalkError) in try walkPageRangeMM(mm, mb2, 4 * mb2, ops: ops, private: &installed) }
        }
        #expect(installed == 512)
        for a in stride(from: mb2, to: 4 * mb2, by: Int(page)) {
            if a < 2 * mb2 { #expect(isGuard(mm.translate(a))) } else { #expect(mm.translate(a) == .none(level: .pmd)) }
        }
        let c = mm.counterSnapshot
        #expect(c.pudTables == 1 && c.pmdTables == 1 && c.pteTables == 1)
        let s = AddressSpaceProbe.pmdSlot(mm, mb2)
        #expect(mm.memory.tables.usedEntries(mm.lowerTable(mm.entry(at: s))) == 512)
        // Walking again installs only what is missing.
        installed = 0
        let r = try locked(mm) { () throws(PageWalkError) in try walkPageRangeMM(mm, mb2, 4 * mb2, ops: ops, private: &installed) }
        #expect(r == 0 && installed == 1024)
        #expect(mm.counterSnapshot.pteTables == 3)
        #expect(stride(from: mb2, to: 4 * mb2, by: Int(page)).allSatisfy { isGuard(mm.translate($0)) })
    }

    @Test func walkingWithoutTheLockIsATypedError() throws {
        let mm = try makeSpace()
        let vma = try mm.mmap(start: mb2, end: 2 * mb2, access: [.read, .write])
        var log = WalkLog()
        #expect(throws: PageWalkError.self) { try walkPageRange(mm, mb2, 2 * mb2, ops: loggingOps(), private: &log) }
        var writeOps = loggingOps()
        writeOps.walkLock = .write
        try locked(mm) { () throws in
            #expect(throws: PageWalkError.self) { try walkPageRange(mm, mb2, 2 * mb2, ops: writeOps, private: &log) }
            #expect(throws: PageWalkError.self) { try walkPageRangeDebug(mm, mb2, 2 * mb2, ops: loggingOps(), private: &log) }
            #expect(try walkPageVMA(mm, vma, ops: loggingOps(), private: &log) == 0)
        }
        try locked(mm, write: true) { () throws in
            #expect(try walkPageRange(mm, mb2, 2 * mb2, ops: writeOps, private: &log) == 0)
        }
        do {
            _ = try walkPageVMA(mm, vma, ops: loggingOps(), private: &log)
            Issue.record("walked without the mmap lock")
        } catch {
            guard case .lockNotHeld = error else { Issue.record("wrong error \(error)"); return }
            #expect(error.errno < 0)
        }
        let kernel = try AddressSpace(geometry: .x86_64, memory: mm.memory, kernel: true)
        #expect(throws: PageWalkError.self) {
            try walkKernelPageTableRange(kernel, kernel.geometry.kernelAddressStart, ~0, ops: loggingOps(), private: &log)
        }
        #expect(throws: PageWalkError.invalidRange(start: 2 * mb2, end: mb2)) {
            try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, 2 * mb2, mb2, ops: loggingOps(), private: &log) }
        }
    }

    @Test func thpIsSplitOnlyWhenPTEsAreNeeded() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: 3 * mb2, access: [.read, .write], extraFlags: [.hugePage])
        try mm.populateTHP(mb2, 2 * mb2)
        // A PMD handler alone sees the leaf and leaves it.
        var log = WalkLog()
        var pmdOnly = MMWalkOps<WalkLog>()
        pmdOnly.pmdEntry = loggingOps(pmd: true).pmdEntry
        _ = try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, mb2, 3 * mb2, ops: pmdOnly, private: &log) }
        #expect(log.pmds.count == 1 && PMD(rawValue: log.pmds[0].raw, architecture: .x86_64).isLeaf)
        // Installing only: the THP stays whole, the empty PMD gets a table.
        let marker = try guardMarker(mm)
        var n = 0
        let install = MMWalkOps<Int>(installPTE: { _, _, pte, walk in
            pte = PTE(rawValue: marker, architecture: .x86_64); walk.privateData += 1; return 0
        })
        _ = try locked(mm) { () throws(PageWalkError) in try walkPageRangeMM(mm, mb2, 3 * mb2, ops: install, private: &n) }
        #expect(n == 512)
        guard case .present(.pmd, _, _) = mm.translate(mb2) else { Issue.record("THP was split"); return }
        // A PTE handler with a VMA: the THP is split and its PTEs seen.
        log = WalkLog()
        _ = try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, mb2, 2 * mb2, ops: loggingOps(), private: &log) }
        guard case .present(.pte, _, _) = mm.translate(mb2) else { Issue.record("THP not split"); return }
        #expect(log.ptes.count == 512 && log.ptes.allSatisfy { PTE(rawValue: $0.raw, architecture: .x86_64).isPresent })
    }

    @Test func pteHandlersRunUnderThePTELockAndPMDHandlersDoNot() throws {
        let mm = try twoTables()
        var ops = MMWalkOps<WalkLog>()
        ops.pmdEntry = { p, _, _, walk in
            let tables = walk.mm.memory.tables
            if p.entry.isTable && tables.lock(walk.mm.lowerTable(p.rawValue)).isHeldByCurrentThread {
                walk.privateData.violations.append("pmd_entry under the PTE lock")
            }
            if walk.mm.lock(forEntriesOf: p.slot.table, level: p.slot.level).isHeldByCurrentThread {
                walk.privateData.violations.append("pmd_entry under the PMD lock")
            }
            return 0
        }
        ops.pteEntry = { p, a, _, walk in
            if !walk.mm.memory.tables.lock(p.slot.table).isHeldByCurrentThread {
                walk.privateData.violations.append("pte_entry at \(a) without the PTE lock")
            }
            walk.privateData.ptes.append((a, p.rawValue))
            return 0
        }
        var log = WalkLog()
        _ = try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, mb2, 3 * mb2, ops: ops, private: &log) }
        #expect(log.violations.isEmpty)
        #expect(log.ptes.count == 1024)
    }

    @Test func kernelTablesWalkWithoutVMAsOrPTELocks() throws {
        let mem = try PhysicalMemory(budgetBytes: 64 << 20)
        let k = try AddressSpace(geometry: .x86_64, memory: mem, kernel: true)
        let l = k.geometry.layout
        let base = k.geometry.kernelAddressStart
        k.setEntry(at: try slotAllocating(k, base, .pud), l.leaf(pfn: 0x40000, level: .pud, [.writable, .global]))
        k.setEntry(at: try slotAllocating(k, base + gb1, .pmd), l.leaf(pfn: 0x80000, level: .pmd, [.writable, .global]))
        for i in 0..<3 {
            let a = base + gb1 + mb2 + UInt64(i) * page
            k.setEntry(at: try slotAllocating(k, a, .pte), l.leaf(pfn: 0x90000 + UInt64(i), level: .pte, [.global]))
        }
        var ops = loggingOps(pmd: true, pud: true)
        let logPTE = ops.pteEntry!
        ops.pteEntry = { p, a, n, walk in
            if walk.mm.memory.tables.lock(p.slot.table).isHeldByCurrentThread { walk.privateData.violations.append("locked") }
            return logPTE(p, a, n, &walk)
        }
        var log = WalkLog()
        _ = try locked(k) { () throws(PageWalkError) in try walkKernelPageTableRange(k, base, base + 2 * gb1, ops: ops, private: &log) }
        #expect(log.puds.map(\.addr) == [base, base + gb1])
        #expect(log.pmds.count == 2)   // the 2M leaf and the table; the rest are holes
        #expect(log.holes.count == 510 && log.holes.allSatisfy { $0.depth == 3 })
        #expect(log.ptes.count == 512 && log.ptes.filter { $0.raw != 0 }.count == 3)
        #expect(log.ptes.allSatisfy { $0.addr >= base + gb1 + mb2 && $0.addr < base + gb1 + 2 * mb2 })
        #expect(log.violations.isEmpty)
        // walkPageRangeDebug forwards kernel address spaces.
        var again = WalkLog()
        _ = try locked(k) { () throws(PageWalkError) in try walkPageRangeDebug(k, base, base + 2 * gb1, ops: ops, private: &again) }
        #expect(again.ptes.count == 512 && again.holes.count == 510)
    }

    @Test func debugWalkIgnoresVMAs() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: 2 * mb2, access: [.read, .write])
        try mm.fault(mb2, mb2 + page, write: true)
        var log = WalkLog()
        _ = try locked(mm, write: true) { () throws(PageWalkError) in
            try walkPageRangeDebug(mm, 0, gb1, ops: loggingOps(), private: &log)
        }
        #expect(log.holes.allSatisfy { $0.depth == 3 })
        #expect(log.holes.count == 511 && log.ptes.count == 512)
        log = WalkLog()
        _ = try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, 0, gb1, ops: loggingOps(), private: &log) }
        #expect(log.holes == [Hole(start: 0, end: mb2, depth: -1), Hole(start: 2 * mb2, end: gb1, depth: -1)])
    }

    @Test func walkPageMappingVisitsEveryMapperOfTheFileRange() throws {
        let mem = try PhysicalMemory(budgetBytes: 64 << 20)
        let a = try AddressSpace(geometry: .x86_64, memory: mem, options: .init(pid: 10))
        let b = try AddressSpace(geometry: .x86_64, memory: mem, options: .init(pid: 20))
        let file = mem.file(path: "/data", device: DeviceNumber(major: 8, minor: 1), inode: 42)
        try a.mmap(start: mb2, end: mb2 + 16 * page, access: [.read], shared: true, kind: .file(file, offset: 0))
        try b.mmap(start: 4 * mb2, end: 4 * mb2 + 16 * page, access: [.read], shared: true, kind: .file(file, offset: 8 * page))
        try a.fault(mb2, mb2 + 16 * page, write: false)
        try b.fault(4 * mb2, 4 * mb2 + 16 * page, write: false)
        var seen: [(Int, UInt64)] = []
        var ops = MMWalkOps<[(Int, UInt64)]>(pteEntry: { p, addr, _, walk in
            if p.entry.isPresent { walk.privateData.append((walk.mm.options.pid, addr)) }
            return 0
        })
        _ = try walkPageMapping(mem, file, firstIndex: 4, count: 8, ops: ops, private: &seen)
        #expect(seen.map(\.0) == Array(repeating: 10, count: 8) + Array(repeating: 20, count: 4))
        let inA: [UInt64] = (4..<12).map { (i: Int) -> UInt64 in mb2 + UInt64(i) * page }
        let inB: [UInt64] = (0..<4).map { (i: Int) -> UInt64 in 4 * mb2 + UInt64(i) * page }
        let addresses: [UInt64] = seen.map(\.1)
        #expect(addresses == inA + inB)
        // A positive test_walk ends the whole walk (not just one VMA).
        seen = []
        ops.testWalk = { _, _, _ in 1 }
        #expect(try walkPageMapping(mem, file, firstIndex: 0, count: 32, ops: ops, private: &seen) == 0)
        #expect(seen.isEmpty)
    }
}

/// Reads a PMD slot for tests (the model's lookup is internal).
enum AddressSpaceProbe {
    static func pmdSlot(_ mm: AddressSpace, _ addr: UInt64) -> EntrySlot {
        var table = mm.root
        for lv in mm.tableLevels {
            let s = EntrySlot(table, mm.geometry.tableIndex(addr, lv), lv)
            if lv == .pmd { return s }
            table = mm.lowerTable(mm.entry(at: s))
        }
        fatalError("no PMD level")
    }
}
