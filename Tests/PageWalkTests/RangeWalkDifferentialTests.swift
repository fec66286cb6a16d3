import Testing
import MemoryModel
import Scenario
@testable import PageWalk

/// Checks every page a range walk reports against an independent
/// single-address translation of the same page.
func verifyAgainstTranslation(_ mm: AddressSpace, options: RangeWalkOptions, sourceLocation: SourceLocation = #_sourceLocation) throws {
    try mm.withMmapReadLock { lock in
        for vma in mm.vmas where !vma.isPFNMap || options.pfnMap == .walk {
            var covered = vma.start
            for entry in try mm.walk(vma.start..<vma.end, lock: lock, options: options) {
                #expect(entry.start == covered, "gap before \(entry)", sourceLocation: sourceLocation)
                covered = entry.end
                #expect(try entry.vma === vma, sourceLocation: sourceLocation)
                if !options.batching { #expect(entry.count == 1 || entry.level.tableLevel != .pte, "unbatched \(entry)", sourceLocation: sourceLocation) }
                for k in 0..<entry.pageCount {
                    let a = entry.start + UInt64(k) * 4096
                    let t = mm.translate(a)
                    switch (entry.content, t) {
                    case (.none, .none): break
                    case (.folio(let f, let first, let n), .present(_, _, let pfn)):
                        #expect(n == entry.pageCount && pfn == f.pfn + UInt64(first + k), "\(entry) page \(k)", sourceLocation: sourceLocation)
                    case (.pfn(let p), .present(_, _, let pfn)):
                        #expect(p + (entry.level.tableLevel == .pte ? UInt64(k) : UInt64(k)) == pfn || entry.count == 1 && p == pfn,
                                "\(entry) page \(k)", sourceLocation: sourceLocation)
                    case (.present(let first), .present(_, let raw, let pfn)):
                        // A run not looked up: present pages, all normal or
                        // all special, starting at the first entry's frame.
                        #expect(k > 0 || pfn == first, "\(entry) page \(k)", sourceLocation: sourceLocation)
                        let special = raw & mm.geometry.layout.special != 0
                        #expect(special == entry.entryAttributesContain(.special), "\(entry) page \(k)", sourceLocation: sourceLocation)
                    case (.swap(let s), .softLeaf(_, _, let leaf)):
                        #expect(leaf.leaf == .swap(SwapEntry(type: s.type, offset: s.offset + UInt64(k))), "\(entry) page \(k)", sourceLocation: sourceLocation)
                    case (.marker(let m), .softLeaf(_, _, let leaf)):
                        #expect(leaf.leaf == .marker(m), sourceLocation: sourceLocation)
                    case (.migration(let kind, let pfn, _), .softLeaf(_, _, let leaf)):
                        if case .migration(let k2, let p2, _, _) = leaf.leaf { #expect(k2 == kind && p2 == pfn + UInt64(k), sourceLocation: sourceLocation) }
                        else { Issue.record("expected migration at \(a)", sourceLocation: sourceLocation) }
                    case (.device(let ex, _, let pfn, _), .softLeaf(_, _, let leaf)):
                        switch leaf.leaf {
                        case .devicePrivate(_, let p): #expect(!ex && p == pfn, sourceLocation: sourceLocation)
                        case .deviceExclusive(let p): #expect(ex && p == pfn, sourceLocation: sourceLocation)
                        default: Issue.record("expected device entry at \(a)", sourceLocation: sourceLocation)
                        }
                    case (.hwpoison(let pfn), .softLeaf(_, _, let leaf)):
                        #expect(leaf.leaf == .hwpoison(pfn: pfn), sourceLocation: sourceLocation)
                    default:
                        Issue.record("walk says \(entry) but translate(\(String(a, radix: 16))) says \(t)", sourceLocation: sourceLocation)
                    }
                }
            }
            #expect(covered == vma.end, "walk of \(vma) stopped at \(String(covered, radix: 16))", sourceLocation: sourceLocation)
        }
    }
}

@Suite struct RangeWalkDifferentialTests {
    @Test(arguments: [true, false])
    func defaultScenarioMatchesTranslation(batching: Bool) throws {
        let built = try ScenarioBuilder.buildDefault()
        for p in built.processes {
            try verifyAgainstTranslation(p.addressSpace, options: RangeWalkOptions(batching: batching, pfnMap: .walk))
        }
    }

    @Test(arguments: [true, false])
    func defaultScenarioUnresolvedRunsMatchTranslation(batching: Bool) throws {
        let built = try ScenarioBuilder.buildDefault()
        for p in built.processes {
            try verifyAgainstTranslation(p.addressSpace, options: RangeWalkOptions(batching: batching, respect: [], pfnMap: .walk,
                                                                                  lookUpFolios: false))
        }
    }

    /// Without lookups a run of present PTEs spans folios, and ends only
    /// where a respected attribute or `pte_special()` changes, at a
    /// non-present entry, or at the table's end.
    @Test func unresolvedRunsSpanFoliosAndStopAtSpecialPages() throws {
        let memory = try PhysicalMemory(budgetBytes: 64 << 20)
        let mm = try AddressSpace(geometry: .x86_64, memory: memory)
        try mm.mmap(start: 0x3f0000, end: 0x440000, access: [.read, .write])
        try mm.fault(0x3f0000, 0x410000, write: true)              // 32 order-0 folios across a table boundary
        try mm.fault(0x410000, 0x414000, write: false)             // 4 zero-page (special) PTEs
        try mm.populateLargeFolios(0x420000, 0x440000, order: 4)  // two 64K folios
        try mm.clearRefs(.all)
        try mm.access(0x428000, 0x429000, write: false)            // one young page
        try mm.withMmapReadLock { lock in
            let plain = RangeWalkOptions(respect: [], lookUpFolios: false)
            let runs = Array(try mm.walk(0x3f0000..<0x440000, lock: lock, options: plain))
            let ranges = runs.map { ($0.start, $0.end) }
            #expect(ranges.contains { $0 == (0x3f0000, 0x400000) })    // to the table's end
            #expect(ranges.contains { $0 == (0x400000, 0x410000) })    // 16 folios, one run
            #expect(ranges.contains { $0 == (0x410000, 0x414000) })    // the special pages
            #expect(ranges.contains { $0 == (0x420000, 0x440000) })    // two folios, one run
            for r in runs where r.start == 0x410000 { #expect(r.entryAttributesContain(.special)) }
            for r in runs where r.start == 0x400000 {
                #expect(!r.entryAttributesContain(.special) && r.count == 16)
                guard case .present(let first) = r.content, case .present(_, _, let pfn) = mm.translate(0x400000) else {
                    Issue.record("\(r)"); continue
                }
                #expect(first == pfn)
            }
            var young = plain
            young.respect = [.young]
            let split = Array(try mm.walk(0x420000..<0x440000, lock: lock, options: young)).map(\.count)
            #expect(split == [8, 1, 23])
            // With lookups, the same pages come a folio at a time.
            let folios = Array(try mm.walk(0x400000..<0x410000, lock: lock, options: RangeWalkOptions(respect: [])))
            #expect(folios.count == 16)
        }
    }

    @Test func batchesFollowFoliosTablesAndVMAs() throws {
        let memory = try PhysicalMemory(budgetBytes: 64 << 20)
        let mm = try AddressSpace(geometry: .x86_64, memory: memory)
        // 64K folios spanning a PTE-table boundary region, split by mprotect.
        try mm.mmap(start: 0x3fe000 - 0x1e000, end: 0x420000, access: [.read, .write])
        try mm.populateLargeFolios(0x3e0000, 0x420000, order: 4)
        try mm.mprotect(0x3f8000, 0x400000, access: [.read])
        try mm.withMmapReadLock { lock in
            let entries = Array(try mm.walk(0x3e0000..<0x420000, lock: lock))
            // Folio 0x3f0000-0x400000 is cut by the VMA boundary at 0x3f8000;
            // the table boundary at 0x400000 ends batches too.
            let ranges = entries.map { ($0.start, $0.end) }
            #expect(ranges.contains { $0 == (0x3f0000, 0x3f8000) })
            #expect(ranges.contains { $0 == (0x3f8000, 0x400000) })
            #expect(ranges.contains { $0 == (0x400000, 0x410000) })
            #expect(entries.allSatisfy { $0.end <= 0x400000 || $0.start >= 0x400000 })
            for e in entries { if case .folio(let f, let first, let n) = e.content { #expect(first + n <= f.pageCount) } }
        }
    }

    @Test func respectedAttributesSplitBatches() throws {
        let memory = try PhysicalMemory(budgetBytes: 64 << 20)
        let mm = try AddressSpace(geometry: .x86_64, memory: memory)
        try mm.mmap(start: 0x400000, end: 0x410000, access: [.read, .write])
        try mm.populateLargeFolios(0x400000, 0x410000, order: 4)
        try mm.clearRefs(.all)                        // all old
        try mm.access(0x404000, 0x405000, write: false)   // one young page
        try mm.withMmapReadLock { lock in
            let exact = Array(try mm.walk(0x400000..<0x410000, lock: lock))
            #expect(exact.map(\.count) == [4, 1, 11])
            #expect(exact[1].attributes.contains(.young) && !exact[0].attributes.contains(.young))
            var relaxed = RangeWalkOptions()
            relaxed.respect.remove(.young)
            let merged = Array(try mm.walk(0x400000..<0x410000, lock: lock, options: relaxed))
            #expect(merged.count == 1 && merged[0].count == 16 && merged[0].attributes.contains(.young))
        }
    }

    @Test func swapRunsStopAtGaps() throws {
        let memory = try PhysicalMemory(budgetBytes: 64 << 20)
        let mm = try AddressSpace(geometry: .x86_64, memory: memory)
        try mm.mmap(start: 0x400000, end: 0x420000, access: [.read, .write])
        try mm.fault(0x400000, 0x408000, write: true)
        try mm.swapOut(0x400000, 0x404000)
        try mm.swapOut(0x405000, 0x408000)
        try mm.swapIn(0x402000, 0x403000)
        try mm.withMmapReadLock { lock in
            let swaps = try mm.walk(0x400000..<0x408000, lock: lock).filter { if case .swap = $0.content { return true }; return false }
            #expect(swaps.map(\.count) == [2, 1, 3])
        }
    }

    @Test func contiguousPMDHugetlbIsOneEntry() throws {
        let memory = try PhysicalMemory(budgetBytes: 128 << 20)
        let mm = try AddressSpace(geometry: .arm64, memory: memory)
        try mm.mmap(start: 0x4000_0000, end: 0x4400_0000, access: [.read, .write], kind: .hugetlb(pageSize: 32 << 20, file: nil))
        try mm.populateHugetlb(0x4000_0000, 0x4200_0000)
        try mm.withMmapReadLock { lock in
            let entries = Array(try mm.walk(0x4000_0000..<0x4400_0000, lock: lock))
            #expect(entries.count == 2)
            #expect(entries[0].level == .contPMD && entries[0].count == 16)
            if case .folio(let f, 0, 8192) = entries[0].content { #expect(f.order == 13 && f.isHugetlb) }
            else { Issue.record("expected the 32M folio, got \(entries[0])") }
            #expect(entries[1].content == .none && entries[1].level == .contPMD)
        }
    }
}
