import Testing
import MemoryModel
@testable import PageWalk
import TestKit

@Suite struct GuardRegionTests {
    /// The range walker's install and remove leave what the callback
    /// walker's `install_pte` ops leave: over none entries with and without
    /// tables, populated pages, a THP, swap-like and uffd-wp entries.
    @Test func bothWalkersLeaveOneEndState() throws {
        func run(_ walker: WalkerKind) throws -> [String] {
            let mm = try makeSpace()
            try mm.mmap(start: mb2, end: 4 * mb2, access: [.read, .write], extraFlags: [.hugePage])
            try mm.fault(mb2 + 4 * page, mb2 + 40 * page, write: true)
            try mm.populateTHP(2 * mb2, 3 * mb2)
            try madviseGuardInstall(mm, mb2 + 30 * page, mb2 + 34 * page, walker: walker)
            try madviseGuardInstall(mm, mb2, 3 * mb2 + 64 * page, walker: walker)
            try madviseGuardRemove(mm, mb2 + 16 * page, 2 * mb2 + 8 * page, walker: walker)
            return endState(mm)
        }
        let r = try run(.range), c = try run(.callback)
        #expect(r == c, "\(endStateDifferences(r, c).joined(separator: "\n"))")
        #expect(r.contains { $0.contains("marker") })
    }

    @Test func installOverNoneAndPopulatedEntries() throws {
        let mm = try makeSpace()
        let vma = try mm.mmap(start: mb2, end: 3 * mb2, access: [.read, .write])
        try mm.fault(mb2 + 4 * page, mb2 + 8 * page, write: true)
        let folios = mm.memory.folioCount
        try madviseGuardInstall(mm, mb2, mb2 + 16 * page)
        #expect((0..<16).allSatisfy { isGuard(mm.translate(mb2 + UInt64($0) * page)) })
        #expect(mm.translate(mb2 + 16 * page) == .none(level: .pte))
        #expect(mm.counterSnapshot.anon == 0 && mm.memory.folioCount == folios - 4)
        #expect(vma.hasAnonVMA)
        // Again over existing markers: nothing changes.
        try madviseGuardInstall(mm, mb2, mb2 + 16 * page)
        #expect((0..<16).allSatisfy { isGuard(mm.translate(mb2 + UInt64($0) * page)) })
    }

    @Test func installOverATHPZapsItAndNeverSplitsForInstalling() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: 2 * mb2, access: [.read, .write], extraFlags: [.hugePage])
        try mm.populateTHP(mb2, 2 * mb2)
        try madviseGuardInstall(mm, mb2, 2 * mb2)
        #expect(stride(from: mb2, to: 2 * mb2, by: Int(page)).allSatisfy { isGuard(mm.translate($0)) })
        #expect(mm.counterSnapshot.anon == 0)
    }

    /// Linux 6.18 (checked live): VM_MAYBE_GUARD is sticky, so a fresh
    /// mapping placed inside a VMA with guard pages merges back with both
    /// neighbours and the whole VMA keeps `gu`.
    @Test func maybeGuardDoesNotStopAMerge() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + 96 * page, access: [.read, .write])
        try madviseGuardInstall(mm, mb2, mb2 + 35 * page)
        try mm.munmap(mb2 + 30 * page, mb2 + 46 * page)
        try mm.mmap(start: mb2 + 30 * page, end: mb2 + 46 * page, access: [.read, .write])
        let vma = try #require(mm.vma(containing: mb2))
        #expect(vma.range == mb2..<(mb2 + 96 * page))
        #expect(vma.flags.contains(.maybeGuard))
        #expect(isGuard(mm.translate(mb2 + 29 * page)) && !isGuard(mm.translate(mb2 + 30 * page)))
    }

    @Test func refusedForHugetlbLockedAndPFNMaps() throws {
        let mm = try makeSpace(budget: 64 << 20)
        try mm.mmap(start: gb1, end: gb1 + mb2, access: [.read, .write], kind: .hugetlb(pageSize: mb2, file: nil))
        try mm.mmap(start: mb2, end: 2 * mb2, access: [.read, .write])
        try mm.mmap(start: 4 * mb2, end: 4 * mb2 + 16 * page, access: [.read, .write], shared: true, kind: .pfnMap(firstPFN: 0x5000))
        for start in [gb1, 4 * mb2] {
            #expect(throws: MadviseError.invalidVMA(address: start, reason: "guard regions need a VMA that is not hugetlb, locked or special")) {
                try madviseGuardInstall(mm, start, start + page)
            }
        }
        try madviseGuardInstall(mm, mb2, mb2 + 4 * page)
        // Populating for mlock gives up at the first guard page (mlock(2)
        // returns ENOMEM, as on Linux 6.18); the VMA is locked all the same.
        #expect(throws: ModelError.faultFailed(address: mb2, reason: "a guard or poison marker or a PROT_NONE VMA met while populating for mlock")) {
            try mm.mlock(mb2, 2 * mb2)
        }
        #expect(mm.vma(containing: mb2)?.flags.contains(.locked) == true)
        #expect(mm.counterSnapshot.anon == 0)
        #expect(throws: MadviseError.self) { try madviseGuardInstall(mm, mb2 + 4 * page, mb2 + 8 * page) }
        // Removal is allowed on locked VMAs.
        try madviseGuardRemove(mm, mb2, 2 * mb2)
        #expect(!isGuard(mm.translate(mb2)))
        #expect(throws: MadviseError.self) { try madviseGuardRemove(mm, gb1, gb1 + page) }
    }

    @Test func removeClearsOnlyGuardMarkers() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: 2 * mb2, access: [.read, .write])
        try mm.fault(mb2, mb2 + 4 * page, write: true)
        try mm.fault(mb2 + 4 * page, mb2 + 8 * page, write: true)
        try mm.swapOut(mb2 + 4 * page, mb2 + 8 * page)
        try madviseGuardInstall(mm, mb2 + 8 * page, mb2 + 12 * page)
        let before = (0..<8).map { mm.translate(mb2 + UInt64($0) * page) }
        try madviseGuardRemove(mm, mb2, 2 * mb2)
        #expect((0..<8).map { mm.translate(mb2 + UInt64($0) * page) } == before)
        #expect((8..<12).allSatisfy { mm.translate(mb2 + UInt64($0) * page) == .none(level: .pte) })
        if case .softLeaf(.pte, _, let e) = before[4], case .swap = e.leaf {} else { Issue.record("swap entry expected") }
    }

    @Test func gapsReportUnmappedAfterDoingTheMappedParts() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + 4 * page, access: [.read, .write])
        try mm.mmap(start: mb2 + 8 * page, end: mb2 + 12 * page, access: [.read, .write])
        #expect(throws: MadviseError.unmapped(address: mb2 + 4 * page)) {
            try madviseGuardInstall(mm, mb2, mb2 + 12 * page)
        }
        #expect(isGuard(mm.translate(mb2)) && isGuard(mm.translate(mb2 + 11 * page)))
        #expect(throws: MadviseError.invalidRange(start: mb2 + 1, end: mb2 + page)) {
            try madviseGuardInstall(mm, mb2 + 1, mb2 + page)
        }
    }
}
