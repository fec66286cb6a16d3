import Testing
import Glibc
import MemoryModel
@testable import PageWalk
import Scenario

/// `kill_accessing_process()` (`hwpoison_walk_ops`, mm/memory-failure.c) on
/// both walkers: the address found for a frame in small pages, THPs, the
/// zero pages, hwpoison entries, hugetlb and PFN maps, and the frames not
/// found (swap, PMD migration entries, hugetlb tails, frames mapped nowhere).
@Suite struct MemoryFailureTests {
    /// The outcome on both walkers; records an issue when they differ.
    func search(_ mm: AddressSpace, _ pfn: UInt64,
                sourceLocation: SourceLocation = #_sourceLocation) -> Result<HWPoisonToKill, MemoryFailureError> {
        let outcomes = WalkerKind.allCases.map { (w) -> Result<HWPoisonToKill, MemoryFailureError> in
            do throws(MemoryFailureError) { return .success(try MemoryFailure.killAccessingProcess(mm, pfn: pfn, walker: w)) }
            catch { return .failure(error) }
        }
        #expect(outcomes[0] == outcomes[1], "walkers disagree for pfn 0x\(String(pfn, radix: 16)): \(outcomes)",
                sourceLocation: sourceLocation)
        return outcomes[0]
    }

    func hit(_ address: UInt64, _ shift: Int = 12) -> Result<HWPoisonToKill, MemoryFailureError> {
        .success(HWPoisonToKill(address: address, sizeShift: shift))
    }

    func pfn(_ mm: AddressSpace, _ address: UInt64) throws -> UInt64 {
        guard case .present(_, _, let pfn) = mm.translate(address) else {
            Issue.record("0x\(String(address, radix: 16)) is not mapped"); throw MemoryFailureError.noAddressSpace
        }
        return pfn
    }

    @Test func smallPagesAndTheirHWPoisonEntries() throws {
        for g in allGeometries {
            let mm = try makeSpace(g)
            try mm.mmap(start: mb2, end: mb2 + 16 * page, access: [.read, .write])
            try mm.fault(mb2, mb2 + 16 * page, write: true)
            let p5 = try pfn(mm, mb2 + 5 * page), p9 = try pfn(mm, mb2 + 9 * page)
            #expect(search(mm, p5) == hit(mb2 + 5 * page), "\(g)")
            // memory_failure() unmapped page 9: its hwpoison entry names the frame.
            try mm.poison(mb2 + 9 * page)
            #expect(search(mm, p9) == hit(mb2 + 9 * page), "\(g)")
            // Swapped out, a frame is mapped nowhere.
            let p2 = try pfn(mm, mb2 + 2 * page)
            try mm.swapOut(mb2 + 2 * page, mb2 + 3 * page)
            #expect(search(mm, p2) == .failure(.notMapped(pfn: p2)), "\(g)")
            #expect(search(mm, 0x7fff_ffff) == .failure(.notMapped(pfn: 0x7fff_ffff)))
        }
    }

    @Test func thpPagesHugeZeroAndPMDMigration() throws {
        let mm = try makeSpace()
        try mm.mmap(start: 2 * mb2, end: 5 * mb2, access: [.read, .write], extraFlags: [.hugePage])
        try mm.populateTHP(2 * mb2, 3 * mb2)
        try mm.populateTHP(3 * mb2, 4 * mb2, write: false)          // the huge zero page
        try mm.populateTHP(4 * mb2, 5 * mb2)
        let head = try pfn(mm, 2 * mb2)
        #expect(search(mm, head + 100) == hit(2 * mb2 + 100 * page))
        #expect(search(mm, head + 511) == hit(2 * mb2 + 511 * page))
        let zero = try pfn(mm, 3 * mb2)
        #expect(search(mm, zero + 7) == hit(3 * mb2 + 7 * page))
        // A PMD migration entry is not present: not searched.
        let third = try pfn(mm, 4 * mb2)
        try mm.startMigration(4 * mb2, 5 * mb2)
        #expect(search(mm, third + 1) == .failure(.notMapped(pfn: third + 1)))
    }

    @Test func zeroPageIsFoundAtItsFirstMapping() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + 8 * page, access: [.read, .write])
        try mm.mmap(start: 4 * mb2, end: 4 * mb2 + 8 * page, access: [.read])
        try mm.fault(4 * mb2 + 3 * page, 4 * mb2 + 4 * page, write: false)
        try mm.fault(mb2 + 6 * page, mb2 + 8 * page, write: false)
        #expect(search(mm, mm.memory.zeroPage.pfn) == hit(mb2 + 6 * page))
    }

    @Test func hugetlbHeadMatchesTailDoesNot() throws {
        let mm = try makeSpace(budget: 64 << 20)
        try mm.mmap(start: gb1, end: gb1 + 2 * mb2, access: [.read, .write], kind: .hugetlb(pageSize: mb2, file: nil))
        try mm.populateHugetlb(gb1, gb1 + 2 * mb2)
        let second = try pfn(mm, gb1 + mb2)
        #expect(search(mm, second) == hit(gb1 + mb2, 21))
        // 6.18 compares the entry's frame only: a tail frame is not found.
        #expect(search(mm, second + 3) == .failure(.notMapped(pfn: second + 3)))
        let arm = try makeSpace(.arm64, budget: 64 << 20)
        try arm.mmap(start: gb1, end: gb1 + mb2, access: [.read, .write], kind: .hugetlb(pageSize: 64 << 10, file: nil))
        try arm.populateHugetlb(gb1 + (64 << 10), gb1 + (192 << 10))
        let block = try pfn(arm, gb1 + (128 << 10))
        #expect(search(arm, block) == hit(gb1 + (128 << 10), 16))
    }

    @Test func pfnMapsAreSearched() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + 8 * page, access: [.read, .write], shared: true, kind: .pfnMap(firstPFN: 0x5000))
        try mm.remapPFN(mb2, mb2 + 4 * page)
        #expect(search(mm, 0x5002) == hit(mb2 + 2 * page))
        #expect(search(mm, 0x5004) == .failure(.notMapped(pfn: 0x5004)))
        try mm.mmap(start: 2 * mb2, end: 2 * mb2 + 8 * page, access: [.read], kind: .mixedMap(firstPFN: 0x6000))
        try mm.remapPFN(2 * mb2 + 4 * page, 2 * mb2 + 8 * page)
        #expect(search(mm, 0x6005) == hit(2 * mb2 + 5 * page))
    }

    @Test func twoMappingsTheLowerWins() throws {
        let mm = try makeSpace()
        let file = mm.memory.file(path: "/data/mf", device: DeviceNumber(major: 8, minor: 1), inode: 60)
        try mm.mmap(start: 4 * mb2, end: 4 * mb2 + 8 * page, access: [.read], shared: true, kind: .file(file, offset: 0))
        try mm.mmap(start: mb2, end: mb2 + 8 * page, access: [.read], shared: true, kind: .file(file, offset: 0))
        try mm.fault(4 * mb2 + 3 * page, 4 * mb2 + 4 * page, write: false)
        let frame = try pfn(mm, 4 * mb2 + 3 * page)
        #expect(search(mm, frame) == hit(4 * mb2 + 3 * page))
        try mm.fault(mb2 + 3 * page, mb2 + 4 * page, write: false)
        #expect(try pfn(mm, mb2 + 3 * page) == frame)
        #expect(search(mm, frame) == hit(mb2 + 3 * page))
        #expect(MemoryFailureError.notMapped(pfn: 1).errno == -EFAULT)
        #expect(MemoryFailure.EHWPOISON == 133)
    }
    /// The default scenario's processes: for a sample of the frames they
    /// map, both walkers name the lowest address that maps the frame, as
    /// worked out page by page from the translations (present entries and
    /// hwpoison entries; for hugetlb only the head frame, at the huge page's
    /// start, with the huge page's shift).
    @Test func defaultScenarioFindsTheLowestMapping() throws {
        let built = try ScenarioBuilder.buildDefault()
        for p in built.processes {
            let mm = p.addressSpace
            var first: [UInt64: HWPoisonToKill] = [:]
            var order: [UInt64] = []
            func note(_ pfn: UInt64, _ hit: HWPoisonToKill) {
                guard pfn != 0, first[pfn] == nil else { return }
                first[pfn] = hit
                order.append(pfn)
            }
            for vma in mm.vmas {
                let step = vma.isHugetlb ? vma.hugePageSize : page
                let shift = vma.isHugetlb ? vma.hugePageSize.trailingZeroBitCount : 12
                for a in stride(from: vma.start, to: vma.end, by: Int(step)) {
                    switch mm.translate(a) {
                    case .present(_, _, let pfn): note(pfn, HWPoisonToKill(address: a, sizeShift: shift))
                    case .softLeaf(_, _, let e):
                        if case .hwpoison(let pfn) = e.leaf { note(pfn, HWPoisonToKill(address: a, sizeShift: shift)) }
                    case .none: break
                    }
                }
            }
            #expect(order.count > 100)
            let sample = stride(from: 0, to: order.count, by: max(1, order.count / 40)).map { order[$0] }
            for pfn in sample {
                #expect(search(mm, pfn) == .success(first[pfn]!), "\(p.name) pfn 0x\(String(pfn, radix: 16))")
            }
        }
    }
}
