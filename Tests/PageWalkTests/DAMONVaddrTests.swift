import Testing
import MemoryModel
@testable import PageWalk
import TestKit
import ReferenceModel

/// DAMON's virtual-address walks (mm/damon/vaddr.c: `damon_mkold_ops`,
/// `damon_young_ops`, the stat walk) on both walkers, with the folio idle
/// flag (PG_idle) and young flag they set: results, entries and folio
/// flags agree, and follow the access history of the scenario.
@Suite struct DAMONVaddrTests {
    let anon = mb2, thp = 4 * mb2, mthp = 8 * mb2

    /// 16 written 4K pages at `anon`; a written PMD THP at `thp`; at
    /// `mthp` one 64K (order 4) folio followed by 16 written 4K pages; on
    /// node 0 of `nodes`.
    func space(nodes: Int = 1) throws -> AddressSpace {
        let mm = try AddressSpace(geometry: .x86_64, memory: PhysicalMemory(budgetBytes: 512 << 20, nodes: nodes))
        try mm.mmap(start: anon, end: anon + 16 * page, access: [.read, .write])
        try mm.fault(anon, anon + 16 * page, write: true)
        try mm.mmap(start: thp, end: thp + mb2, access: [.read, .write])
        try mm.populateTHP(thp, thp + mb2)
        try mm.mmap(start: mthp, end: mthp + 32 * page, access: [.read, .write])
        try mm.populateLargeFolios(mthp, mthp + 16 * page, order: 4)
        try mm.fault(mthp + 16 * page, mthp + 32 * page, write: true)
        return mm
    }

    func folio(_ mm: AddressSpace, _ a: UInt64) -> Folio? {
        guard case .present(_, _, let pfn) = mm.translate(a) else { return nil }
        return mm.memory.page(pfn)?.folio
    }

    func entryYoung(_ mm: AddressSpace, _ a: UInt64) -> Bool {
        guard case .present(let level, let raw, _) = mm.translate(a) else { return false }
        return level == .pte ? PTE(rawValue: raw, architecture: .x86_64).isYoung
                             : PMD(rawValue: raw, architecture: .x86_64).isYoung
    }

    /// The entries and the idle and young flags of every mapped page.
    func state(_ mm: AddressSpace) -> [String] {
        endState(mm) + [anon, thp, mthp].flatMap { base in
            (0..<32).map { (i: UInt64) -> String in
                let a = base + i * page
                guard let f = folio(mm, a) else { return "\(a): -" }
                return "\(a): idle \(f.test(.idle)) young \(f.test(.young))"
            }
        }
    }

    /// Runs `op` on each walker, each on its own space; records an issue
    /// when results or states differ; returns the range walker's.
    func twin<R: Equatable>(sourceLocation: SourceLocation = #_sourceLocation, _ prepare: (AddressSpace) throws -> Void = { _ in },
                            _ op: (AddressSpace, WalkerKind) throws -> R) throws -> (AddressSpace, R) {
        try walkerTwins({ try space() }, state: state, sourceLocation: sourceLocation, prepare, op)
    }

    @Test func mkoldMakesThePTEOldAndTheFolioIdle() throws {
        let a = anon + 5 * page
        // Written pages are young and not idle: accessed.
        let (_, before) = try twin { mm, w in try DAMONVaddr.young(mm, a + 0x123, walker: w) }
        #expect(before == .init(young: true, folioSize: page))
        let (mm, marked) = try twin { mm, w in try DAMONVaddr.mkold(mm, a + 0x123, walker: w) }
        #expect(marked)
        #expect(!entryYoung(mm, a) && entryYoung(mm, a + page) && entryYoung(mm, a - page))
        let f = try #require(folio(mm, a))
        #expect(f.test(.idle) && f.test(.young))
        #expect(folio(mm, a + page)?.test(.idle) == false)
        // Not accessed since: old and idle.
        let (_, after) = try twin({ mm in try DAMONVaddr.mkold(mm, a) }) { mm, w in try DAMONVaddr.young(mm, a, walker: w) }
        #expect(after == .init(young: false, folioSize: page))
        // An access sets the PTE's young bit again: accessed, though the
        // folio is still idle.
        let (m2, again) = try twin({ mm in
            try DAMONVaddr.mkold(mm, a)
            try mm.access(a, a + page, write: false)
        }) { mm, w in try DAMONVaddr.young(mm, a, walker: w) }
        #expect(again == .init(young: true, folioSize: page))
        #expect(folio(m2, a)?.test(.idle) == true)
    }

    @Test func mkoldOfAPMDTHP() throws {
        let a = thp + 77 * page
        let (mm, marked) = try twin { mm, w in try DAMONVaddr.mkold(mm, a, walker: w) }
        #expect(marked)
        #expect(!entryYoung(mm, thp))
        #expect(folio(mm, thp)?.test(.idle) == true && folio(mm, thp + mb2 - page)?.test(.young) == true)
        let (_, r) = try twin({ mm in try DAMONVaddr.mkold(mm, thp) }) { mm, w in try DAMONVaddr.young(mm, a, walker: w) }
        #expect(r == .init(young: false, folioSize: mb2))
    }

    @Test func nothingToCheckOutsideLRUFolios() throws {
        // A hole, and the zero page (no LRU folio): nothing found.
        let (_, hole) = try twin { mm, w in try DAMONVaddr.young(mm, 40 * mb2, walker: w) }
        #expect(hole == DAMONVaddr.YoungCheck())
        let (_, zero) = try twin({ mm in
            try mm.mmap(start: 40 * mb2, end: 40 * mb2 + page, access: [.read])
            try mm.fault(40 * mb2, 40 * mb2 + page, write: false)
        }) { mm, w in
            [try DAMONVaddr.mkold(mm, 40 * mb2, walker: w), try DAMONVaddr.young(mm, 40 * mb2, walker: w).folioSize != nil]
        }
        #expect(zero == [false, false])
    }

    @Test func hugetlbPagesAreMadeOldAndChecked() throws {
        let h = 40 * mb2
        let hugetlb = { (mm: AddressSpace) throws in
            try mm.mmap(start: h, end: h + mb2, access: [.read, .write], kind: .hugetlb(pageSize: mb2, file: nil))
            try mm.populateHugetlb(h, h + mb2)
        }
        let (_, r) = try twin(hugetlb) { mm, w in try DAMONVaddr.young(mm, h + 3 * page, walker: w) }
        #expect(r == .init(young: true, folioSize: mb2))
        let (mm, marked) = try twin(hugetlb) { mm, w in try DAMONVaddr.mkold(mm, h + 3 * page, walker: w) }
        #expect(marked && !entryYoung(mm, h))
        #expect(folio(mm, h)?.test(.idle) == true && folio(mm, h)?.test(.young) == true)
        let (_, after) = try twin({ mm in
            try hugetlb(mm)
            try DAMONVaddr.mkold(mm, h)
        }) { mm, w in try DAMONVaddr.young(mm, h + 100 * page, walker: w) }
        #expect(after == .init(young: false, folioSize: mb2))
    }

    @Test func aYoungFilePTEZappedMarksTheFolioAccessed() throws {
        // folio_mark_accessed() on zap: the idle flag goes, the folio
        // becomes referenced.
        let mm = try makeSpace()
        let file = mm.memory.file(path: "/data", device: DeviceNumber(major: 8, minor: 1), inode: 3)
        try mm.mmap(start: anon, end: anon + 4 * page, access: [.read, .write], shared: true, kind: .file(file, offset: 0))
        try mm.fault(anon, anon + 4 * page, write: true)
        for w in WalkerKind.allCases { try DAMONVaddr.mkold(mm, anon, walker: w) }
        let f = try #require(folio(mm, anon))
        #expect(f.test(.idle) && !f.test(.referenced))
        // Old: a zap is no access.
        try mm.zap(anon, anon + page)
        #expect(f.test(.idle))
        try mm.fault(anon, anon + page, write: false)
        #expect(f.test(.idle))          // the same cached folio, mapped again young
        try mm.zap(anon, anon + page)
        #expect(!f.test(.idle) && f.test(.referenced))
        // A second access of a referenced inactive folio activates it.
        try mm.fault(anon, anon + page, write: false)
        try mm.zap(anon, anon + page)
        #expect(f.test(.active) && !f.test(.referenced))
    }

    @Test func statCountsEachPassingFolioOnce() throws {
        let all = DAMOSFilter(.anon)
        // Every folio is anonymous: 16 small, the THP, the mTHP and 16 small.
        var scheme = DAMOSScheme(filters: [all])
        let (_, whole) = try twin { mm, w in
            var s = scheme
            return [try DAMONVaddr.stat(mm, anon..<anon + 16 * page, scheme: &s, walker: w),
                    try DAMONVaddr.stat(mm, thp..<thp + mb2, scheme: &s, walker: w),
                    try DAMONVaddr.stat(mm, mthp..<mthp + 32 * page, scheme: &s, walker: w)]
        }
        #expect(whole == [16 * page, mb2, 16 * page + 16 * page])
        // Two regions splitting the mTHP: it is counted in the first, and
        // passed over as the last one counted at the start of the second.
        let (_, split) = try twin { mm, w in
            var s = scheme
            return [try DAMONVaddr.stat(mm, mthp..<mthp + 8 * page, scheme: &s, walker: w),
                    try DAMONVaddr.stat(mm, mthp + 8 * page..<mthp + 32 * page, scheme: &s, walker: w)]
        }
        #expect(split == [16 * page, 16 * page])
        // From the middle of the mTHP with a fresh scheme: the folio is
        // counted there and the walk steps a whole folio's pages on, over
        // the first 8 small pages after it.
        let (_, mid) = try twin { mm, w in
            var s = DAMOSScheme(filters: [all])
            return try DAMONVaddr.stat(mm, mthp + 8 * page..<mthp + 32 * page, scheme: &s, walker: w)
        }
        #expect(mid == 16 * page + 8 * page)
        // A rejecting filter: nothing passes, and nothing without filters.
        scheme = DAMOSScheme(filters: [DAMOSFilter(.anon, allow: false)])
        let (_, none) = try twin { mm, w in
            var s = scheme
            var empty = DAMOSScheme(filters: [])
            return [try DAMONVaddr.stat(mm, anon..<anon + 16 * page, scheme: &s, walker: w),
                    try DAMONVaddr.stat(mm, anon..<anon + 16 * page, scheme: &empty, walker: w)]
        }
        #expect(none == [0, 0])
    }

    @Test func theYoungFilterPassesAccessedFoliosAndMakesThemOld() throws {
        let young = DAMOSFilter(.young)
        // Pages 0..<4 made old first; the rest are young.
        let prepare = { (mm: AddressSpace) throws in
            for i in 0..<4 { try DAMONVaddr.mkold(mm, self.anon + UInt64(i) * page) }
        }
        let (mm, r) = try twin(prepare) { mm, w in
            var s = DAMOSScheme(filters: [young])
            let first = try DAMONVaddr.stat(mm, anon..<anon + 16 * page, scheme: &s, walker: w)
            var t = DAMOSScheme(filters: [young])
            return [first, try DAMONVaddr.stat(mm, anon..<anon + 16 * page, scheme: &t, walker: w)]
        }
        // Young ones pass (the last filter allows, so the rest is rejected);
        // the filter made them old, so a second pass finds none.
        #expect(r == [12 * page, 0])
        #expect((0..<16).allSatisfy { !entryYoung(mm, anon + UInt64($0) * page) })
        #expect((0..<16).allSatisfy { folio(mm, anon + UInt64($0) * page)?.test(.idle) == true })
        // Not young, allowed: the old ones pass.
        let (_, old) = try twin(prepare) { mm, w in
            var s = DAMOSScheme(filters: [DAMOSFilter(.young, matching: false)])
            return try DAMONVaddr.stat(mm, anon..<anon + 16 * page, scheme: &s, walker: w)
        }
        #expect(old == 4 * page)
    }

    @Test func theReferenceModelAgreesOnIdleFolios() throws {
        for w in WalkerKind.allCases {
            let memory = try PhysicalMemory(budgetBytes: 256 << 20)
            let o = AddressSpaceOptions(softDirty: true, pid: 1)
            let mm = try AddressSpace(geometry: .x86_64, memory: memory, options: o)
            let model = ReferenceModel(geometry: .x86_64, options: o)
            model.addProcess(pid: 1)
            let file = memory.file(path: "/data", device: DeviceNumber(major: 8, minor: 1), inode: 9)
            try mm.mmap(start: anon, end: anon + 16 * page, access: [.read, .write])
            try model.mmap(pid: 1, start: anon, end: anon + 16 * page, access: [.read, .write])
            try mm.mmap(start: thp, end: thp + mb2, access: [.read, .write])
            try model.mmap(pid: 1, start: thp, end: thp + mb2, access: [.read, .write])
            try mm.mmap(start: mthp, end: mthp + 8 * page, access: [.read, .write], shared: true, kind: .file(file, offset: 0))
            try model.mmap(pid: 1, start: mthp, end: mthp + 8 * page, access: [.read, .write], shared: true,
                           kind: .file(file, offset: 0))
            try mm.fault(anon, anon + 8 * page, write: true)
            try model.fault(pid: 1, anon, anon + 8 * page, write: true)
            try mm.fault(anon + 8 * page, anon + 16 * page, write: false)     // zero pages
            try model.fault(pid: 1, anon + 8 * page, anon + 16 * page, write: false)
            try mm.populateTHP(thp, thp + mb2)
            try model.populateTHP(pid: 1, thp, thp + mb2)
            try mm.fault(mthp, mthp + 8 * page, write: true)
            try model.fault(pid: 1, mthp, mthp + 8 * page, write: true)
            let h = 20 * mb2
            try mm.mmap(start: h, end: h + mb2, access: [.read, .write], kind: .hugetlb(pageSize: mb2, file: nil))
            try model.mmap(pid: 1, start: h, end: h + mb2, access: [.read, .write], kind: .hugetlb(pageSize: mb2, file: nil))
            try mm.populateHugetlb(h, h + mb2)
            try model.populateHugetlb(pid: 1, h, h + mb2)
            // mkold of anonymous pages, a zero page, the THP, file pages, a
            // hugetlb page and a hole.
            for a in [anon, anon + 3 * page, anon + 9 * page, thp + 5 * page, mthp, mthp + page, mthp + 2 * page, h + 7 * page,
                      40 * mb2] {
                try DAMONVaddr.mkold(mm, a, walker: w)
                try model.damonMkold(pid: 1, a)
            }
            #expect(ReferenceChecker.check([mm], against: model).isEmpty)
            // File pages zapped while old stay idle; one mapped again (young)
            // and zapped is accessed, no longer idle.
            try mm.zap(mthp, mthp + 2 * page)
            try model.zap(pid: 1, mthp, mthp + 2 * page)
            #expect(ReferenceChecker.check([mm], against: model).isEmpty)
            try mm.fault(mthp, mthp + page, write: false)
            try model.fault(pid: 1, mthp, mthp + page, write: false)
            let f = try #require(folio(mm, mthp))
            #expect(f.test(.idle))
            try mm.zap(mthp, mthp + page)
            try model.zap(pid: 1, mthp, mthp + page)
            #expect(!f.test(.idle))
            let mismatches = ReferenceChecker.check([mm], against: model)
            #expect(mismatches.isEmpty, "\(mismatches)")
        }
    }
}
