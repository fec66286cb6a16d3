import Testing
import MemoryModel
import PageWalk
import Scenario
import TestKit
import ProcFS

/// clear_refs on both walkers: one end state, and the kernel's rules for
/// each type. The live kernel checks are in LiveWriterTests.
@Suite struct ClearRefsTests {
    static let kinds: [AddressSpace.ClearRefs] = [.all, .anonymous, .file, .softDirty, .hiwaterRSS]

    /// Young entries mapping normal pages (`vm_normal_folio()`): the ones
    /// clear_refs makes old. The zero page and PFN maps keep their bit.
    func youngPTEs(_ mm: AddressSpace) -> Int {
        let l = mm.geometry.layout
        var n = 0
        for vma in mm.vmas where !vma.isHugetlb && !vma.isPFNMap {
            var a = vma.start
            while a < vma.end {
                if case .present(let level, let raw, _) = mm.translate(a), raw & l.young != 0,
                   level != .pte || raw & l.special == 0 { n += 1 }
                a += Geometry.pageSize
            }
        }
        return n
    }

    @Test(arguments: kinds)
    func bothWalkersLeaveOneEndState(_ kind: AddressSpace.ClearRefs) throws {
        let range = try ScenarioBuilder.buildDefault()
        let callback = try ScenarioBuilder.buildDefault()
        #expect(range.processes.map { youngPTEs($0.addressSpace) }.reduce(0, +) > 0, "the default scenario has young entries")
        for (r, c) in zip(range.processes, callback.processes) {
            let tr = try r.addressSpace.clearRefs(kind, walker: .range)
            let tc = try c.addressSpace.clearRefs(kind, walker: .callback)
            let a = endState(r.addressSpace), b = endState(c.addressSpace)
            #expect(a == b, "pid \(r.pid) after clear_refs \(kind):\n\(endStateDifferences(a, b).joined(separator: "\n"))")
            #expect(tr.flushes.map(\.reason) == tc.flushes.map(\.reason))
            if kind == .all { #expect(youngPTEs(r.addressSpace) == 0) }
        }
    }

    /// Type 4 on a model x86-64 with CONFIG_MEM_SOFT_DIRTY: the bit goes,
    /// the entry is write-protected, and the next write sets it again
    /// through the write-protect fault. (The host kernel has no soft-dirty
    /// tracking, so this is checked in the model only.)
    @Test(arguments: WalkerKind.allCases)
    func softDirtyIsClearedAndComesBackOnWrite(_ walker: WalkerKind) throws {
        let mm = try AddressSpace(geometry: .x86_64, memory: PhysicalMemory(budgetBytes: 64 << 20),
                                  options: AddressSpaceOptions(softDirty: true))
        let start: UInt64 = 1 << 30, n: UInt64 = 8
        try mm.mmap(start: start, end: start + n * 4096, access: [.read, .write])
        try mm.fault(start, start + n * 4096, write: true)
        func bits() throws -> [UInt64] {
            try Pagemap.words(mm, start..<(start + n * 4096), privileged: true).map { $0 & PagemapBits.softDirty }
        }
        #expect(try bits().allSatisfy { $0 != 0 })
        let tlb = try mm.clearRefs(.softDirty, walker: walker)
        #expect(try bits().allSatisfy { $0 == 0 })
        #expect(tlb.flushes == [TLBFlush(range: start..<(start + n * 4096), reason: .finish)])
        #expect(!(mm.vma(containing: start)?.flags.contains(.softDirty) ?? true))
        guard case .present(_, let raw, _) = mm.translate(start) else { Issue.record("page gone"); return }
        #expect(raw & mm.geometry.layout.write == 0)
        try mm.access(start + 4096, start + 2 * 4096, write: true)
        #expect(try bits() == [0, PagemapBits.softDirty, 0, 0, 0, 0, 0, 0])
    }

    /// Type 5: the peak RSS the last unmap saw starts again from the RSS now.
    @Test func hiwaterRSSResets() throws {
        let mm = try AddressSpace(geometry: .x86_64, memory: PhysicalMemory(budgetBytes: 64 << 20))
        let start: UInt64 = 1 << 30
        try mm.mmap(start: start, end: start + 16 * 4096, access: [.read, .write])
        try mm.fault(start, start + 10 * 4096, write: true)
        try mm.zap(start, start + 6 * 4096)
        #expect(mm.hiwaterRSSPages == 10)
        try mm.clearRefs(.hiwaterRSS)
        #expect(mm.hiwaterRSSPages == 4)
    }
}
