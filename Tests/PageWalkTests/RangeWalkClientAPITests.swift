import Testing
import MemoryModel
import PageWalk
import Scenario

/// What a `for`-`in` client of the range walker relies on: kinds to count
/// by, the one-call walk under the mmap lock, and its errors.
@Suite struct RangeWalkClientAPITests {
    /// Every content maps to the kind of the same name, and the kinds are
    /// all listed.
    @Test func contentKinds() throws {
        let memory = try PhysicalMemory(budgetBytes: 1 << 24)
        let folio: Folio = memory.zeroPage
        let contents: [WalkContent] = [
            .none, .hole(depth: 4), .folio(folio, firstPage: 0, pageCount: 1), .pfn(7), .present(firstPFN: 7),
            .marker(.guardRegion),
            .swap(SwapEntry(type: 0, offset: 1)), .migration(.read, pfn: 1, folio: nil),
            .device(exclusive: false, writable: true, pfn: 1, folio: nil), .hwpoison(pfn: 1),
        ]
        #expect(contents.map(\.kind) == WalkContent.Kind.allCases)
        #expect(WalkContent.Kind.allCases.map(\.description)
                == ["none", "hole", "folio", "pfn", "present", "marker", "swap", "migration", "device", "hwpoison"])
        #expect(EntryLevel.allCases.count == 7)
        #expect(Set(EntryLevel.allCases.map(\.tableLevel)) == [.pte, .pmd, .pud, .p4d, .pgd])
    }

    /// `withRangeWalk` holds the mmap lock for the body only, yields what a
    /// walk under `withMmapReadLock` yields, and covers every page of the
    /// default scenario's VMAs (PFN maps walked).
    @Test(arguments: [LockMode.read, .write])
    func withRangeWalkMatchesTheTwoStepForm(mode: LockMode) throws {
        let built = try ScenarioBuilder.buildDefault()
        let mm = try #require(built.addressSpace(pid: 1000))
        let options = RangeWalkOptions(pfnMap: .walk)
        let range = 0..<mm.geometry.userAddressLimit
        let oneCall = try mm.withRangeWalk(range, lock: mode, options: options) { walk in
            #expect(mm.mmapLock.isLocked)
            return walk.map { "\($0)" }
        }
        #expect(!mm.mmapLock.isLocked)
        let twoStep = try mm.withMmapReadLock { (lock) throws(PageWalkError) in
            try mm.walk(range, lock: lock, options: options).map { "\($0)" }
        }
        #expect(oneCall == twoStep)
        var pages: [ObjectIdentifier: Int] = [:]
        try mm.withRangeWalk(range, options: options) { walk in
            for e in walk { if let v = (try? e.vma) ?? nil { pages[ObjectIdentifier(v), default: 0] += e.pageCount } }
        }
        for v in mm.vmas { #expect(pages[ObjectIdentifier(v)] == Int(v.size / Geometry.pageSize), "\(v)") }
    }

    /// The walk's errors come before the body runs, and the lock is dropped.
    @Test func withRangeWalkErrors() throws {
        let mm = try makeSpace()
        var ran = false
        #expect(throws: PageWalkError.invalidRange(start: 0x1000, end: 0x1000)) {
            try mm.withRangeWalk(0x1000..<0x1000) { _ in ran = true }
        }
        #expect(throws: PageWalkError.invalidRange(start: 0x1001, end: 0x2000)) {
            try mm.withRangeWalk(0x1001..<0x2000) { _ in ran = true }
        }
        #expect(!ran && !mm.mmapLock.isLocked)
    }
}
