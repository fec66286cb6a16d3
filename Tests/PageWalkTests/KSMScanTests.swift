import Testing
import MemoryModel
@testable import PageWalk
import Scenario

/// ksmd's next-page search (`ksm_next_page_ops`, mm/ksm.c) on both walkers:
/// the same page is found from every scan address, with one folio reference
/// taken per walk, over small pages, the zero pages, THPs, mTHPs, KSM pages,
/// swap, migration, device and hwpoison entries, hugetlb and PFN maps.
@Suite struct KSMScanTests {
    /// `nextPage` from `address` on both walkers; records an issue when they
    /// differ, checks that each took one reference, and drops them.
    func next(_ mm: AddressSpace, _ address: UInt64,
              sourceLocation: SourceLocation = #_sourceLocation) throws -> KSMScanPage? {
        let vma = try #require(mm.vma(containing: address), sourceLocation: sourceLocation)
        return try mm.withMmapReadLock { (lock) throws -> KSMScanPage? in
            let before = try KSMScan.nextPage(mm, vma, from: address, lock: lock, walker: .range)
                .map { p -> (KSMScanPage, Int) in (p, p.folio.refcount) }
            let callback = try KSMScan.nextPage(mm, vma, from: address, lock: lock, walker: .callback)
            #expect(before?.0 == callback, "walkers disagree from 0x\(String(address, radix: 16)): \(String(describing: before?.0)) vs \(String(describing: callback))",
                    sourceLocation: sourceLocation)
            if let (p, refs) = before, let c = callback {
                // The callback walk took one more reference on the same folio.
                #expect(c.folio.refcount == refs + 1, sourceLocation: sourceLocation)
                mm.memory.folioPut(c.folio)
                mm.memory.folioPut(p.folio)
            }
            return before?.0
        }
    }

    /// Both walkers' scan pass; records an issue when they differ.
    func pass(_ mm: AddressSpace, sourceLocation: SourceLocation = #_sourceLocation) throws -> [UInt64] {
        let r = try KSMScan.scanPass(mm, walker: .range)
        let c = try KSMScan.scanPass(mm, walker: .callback)
        #expect(r == c, sourceLocation: sourceLocation)
        return r
    }

    func pages(_ base: UInt64, _ r: Range<Int>) -> [UInt64] { r.map { base + UInt64($0) * page } }

    @Test func smallPagesSkipTheZeroPageAndHoles() throws {
        for g in allGeometries {
            let mm = try makeSpace(g)
            try mm.mmap(start: mb2, end: mb2 + 32 * page, access: [.read, .write], extraFlags: [.mergeable])
            try mm.fault(mb2 + 4 * page, mb2 + 8 * page, write: false)        // the zero page
            try mm.fault(mb2 + 8 * page, mb2 + 10 * page, write: true)
            try mm.fault(mb2 + 20 * page, mb2 + 21 * page, write: true)
            let first = try #require(try next(mm, mb2))
            #expect(first.address == mb2 + 8 * page, "\(g)")
            guard case .present(_, _, let pfn) = mm.translate(mb2 + 8 * page) else { Issue.record("not mapped"); return }
            #expect(first.page.pfn == pfn && first.folio.isAnon)
            #expect(try next(mm, mb2 + 10 * page)?.address == mb2 + 20 * page)
            #expect(try next(mm, mb2 + 21 * page) == nil)
            #expect(try pass(mm) == pages(mb2, 8..<10) + [mb2 + 20 * page], "\(g)")
        }
    }

    @Test func referenceIsTakenAndDropped() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + 4 * page, access: [.read, .write], extraFlags: [.mergeable])
        try mm.fault(mb2 + page, mb2 + 2 * page, write: true)
        let vma = try #require(mm.vma(containing: mb2))
        for walker in WalkerKind.allCases {
            let p = try #require(try mm.withMmapReadLock { (lock) throws(PageWalkError) in
                try KSMScan.nextPage(mm, vma, from: mb2, lock: lock, walker: walker)
            })
            // The mapping's reference and the walk's.
            #expect(p.folio.refcount == 2 && p.folio.mapcount == 1, "\(walker)")
            mm.memory.folioPut(p.folio)
            #expect(p.folio.refcount == 1)
        }
    }

    @Test func thpIsFoundAtTheScanAddressAndHugeZeroIsNot() throws {
        let mm = try makeSpace()
        try mm.mmap(start: 2 * mb2, end: 5 * mb2, access: [.read, .write], extraFlags: [.hugePage, .mergeable])
        try mm.populateTHP(2 * mb2, 3 * mb2, write: false)     // the huge zero page
        try mm.populateTHP(3 * mb2, 4 * mb2)
        let p = try #require(try next(mm, 2 * mb2))
        #expect(p.address == 3 * mb2 && p.folio.order == 9 && p.page.pfn == p.folio.pfn)
        // From inside the THP: that page of it, the same folio.
        let inside = try #require(try next(mm, 3 * mb2 + 37 * page))
        #expect(inside.address == 3 * mb2 + 37 * page && inside.page.pfn == p.folio.pfn + 37 && inside.folio == p.folio)
        #expect(try next(mm, 4 * mb2) == nil)
        // A pass finds every page of the THP, one walk each.
        #expect(try pass(mm) == pages(3 * mb2, 0..<512))
        // After a split the PTEs map the same pages.
        try mm.splitHugePMD(containing: 3 * mb2)
        #expect(try next(mm, 3 * mb2 + 37 * page)?.page.pfn == p.folio.pfn + 37)
    }

    @Test func mTHPAndKSMPagesAreFound() throws {
        for g in [Geometry.x86_64, .arm64] {
            let mm = try makeSpace(g)
            try mm.mmap(start: mb2, end: mb2 + 64 * page, access: [.read, .write], extraFlags: [.mergeable])
            try mm.populateLargeFolios(mb2 + 16 * page, mb2 + 48 * page, order: 4)
            try mm.fault(mb2, mb2 + 4 * page, write: true)
            try mm.ksmMerge(mb2, mb2 + 4 * page, distinct: 1)     // one KSM page mapped four times
            let k = try #require(try next(mm, mb2))
            #expect(k.address == mb2 && k.folio.isKSM, "\(g)")
            #expect(try next(mm, mb2 + 3 * page)?.folio == k.folio)
            let m = try #require(try next(mm, mb2 + 4 * page))
            #expect(m.address == mb2 + 16 * page && m.folio.order == 4, "\(g)")
            #expect(try pass(mm) == pages(mb2, 0..<4) + pages(mb2, 16..<48), "\(g)")
        }
    }

    @Test func nonPresentEntriesArePassedOver() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + 32 * page, access: [.read, .write], extraFlags: [.mergeable, .uffdWP])
        try mm.fault(mb2, mb2 + 20 * page, write: true)
        try mm.swapOut(mb2, mb2 + 4 * page)
        try mm.startMigration(mb2 + 4 * page, mb2 + 6 * page)
        try mm.makeDevicePrivate(mb2 + 6 * page, mb2 + 8 * page, writable: true)
        try mm.poison(mb2 + 8 * page)
        try madviseGuardInstall(mm, mb2 + 20 * page, mb2 + 22 * page)
        try mm.userfaultWriteProtect(mb2 + 22 * page, mb2 + 24 * page)    // uffd-wp markers on none PTEs
        #expect(try next(mm, mb2)?.address == mb2 + 9 * page)
        #expect(try pass(mm) == pages(mb2, 9..<20))
        // A PMD migration entry is not present: passed over whole.
        try mm.mmap(start: 4 * mb2, end: 6 * mb2, access: [.read, .write], extraFlags: [.hugePage, .mergeable])
        try mm.populateTHP(4 * mb2, 6 * mb2)
        try mm.startMigration(4 * mb2, 5 * mb2)
        #expect(try next(mm, 4 * mb2)?.address == 5 * mb2)
    }

    @Test func fileHugetlbAndPFNMapsHaveNoAnonymousPages() throws {
        let mm = try makeSpace(budget: 64 << 20)
        let file = mm.memory.file(path: "/data/k", device: DeviceNumber(major: 8, minor: 1), inode: 50)
        try mm.mmap(start: mb2, end: mb2 + 16 * page, access: [.read, .write], kind: .file(file, offset: 0),
                    extraFlags: [.mergeable])
        try mm.fault(mb2, mb2 + 8 * page, write: false)                // page-cache pages
        try mm.fault(mb2 + 6 * page, mb2 + 7 * page, write: true)      // one COW copy: anonymous
        #expect(try next(mm, mb2)?.address == mb2 + 6 * page)
        #expect(try next(mm, mb2 + 7 * page) == nil)
        try mm.mmap(start: gb1, end: gb1 + 2 * mb2, access: [.read, .write], kind: .hugetlb(pageSize: mb2, file: nil),
                    extraFlags: [.mergeable])
        try mm.populateHugetlb(gb1, gb1 + 2 * mb2)
        #expect(try next(mm, gb1) == nil)
        try mm.mmap(start: 4 * mb2, end: 4 * mb2 + 8 * page, access: [.read, .write], shared: true,
                    kind: .pfnMap(firstPFN: 0x5000), extraFlags: [.mergeable])
        try mm.remapPFN(4 * mb2, 4 * mb2 + 8 * page)
        #expect(try next(mm, 4 * mb2) == nil)
        // A VMA without VM_MERGEABLE is not scanned.
        try mm.mmap(start: 6 * mb2, end: 6 * mb2 + 4 * page, access: [.read, .write])
        try mm.fault(6 * mb2, 6 * mb2 + 4 * page, write: true)
        #expect(try pass(mm) == [mb2 + 6 * page])
    }
    /// Every VMA of the default scenario's processes, scanned page after
    /// page as ksmd scans: both walkers find the same pages, and they are
    /// exactly the pages that map a normal anonymous folio (worked out page
    /// by page from the translations: present, not special, anonymous, not
    /// a zero page), hugetlb VMAs excepted.
    @Test func defaultScenarioFindsEveryAnonymousPage() throws {
        let built = try ScenarioBuilder.buildDefault()
        var total = 0
        for p in built.processes {
            let mm = p.addressSpace
            let layout = mm.geometry.layout
            for vma in mm.vmas {
                var expected: [UInt64] = []
                if !vma.isHugetlb {
                    for a in stride(from: vma.start, to: vma.end, by: Int(page)) {
                        guard case .present(_, let raw, let pfn) = mm.translate(a), raw & layout.special == 0,
                              let f = mm.memory.folio(containing: pfn), f.isAnon, !f.isZero else { continue }
                        expected.append(a)
                    }
                }
                var found: [UInt64] = []
                var a = vma.start
                while a < vma.end, let hit = try next(mm, a) {
                    found.append(hit.address)
                    a = hit.address + page
                }
                #expect(found == expected, "\(p.name) \(vma)")
                total += found.count
            }
        }
        #expect(total > 0)
    }
}
