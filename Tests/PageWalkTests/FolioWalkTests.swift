import Testing
import MemoryModel
@testable import PageWalk

@Suite struct FolioWalkTests {
    @Test func normalZeroAndMigrationFolios() throws {
        let mm = try makeSpace()
        let vma = try mm.mmap(start: mb2, end: 2 * mb2, access: [.read, .write])
        try mm.fault(mb2 + page, mb2 + 2 * page, write: true)
        try mm.fault(mb2 + 2 * page, mb2 + 3 * page, write: false)
        guard case .present(.pte, _, let pfn) = mm.translate(mb2 + page) else { Issue.record("not mapped"); return }
        try locked(mm) { () throws in
            let fw = try #require(try folioWalkStart(mm, vma, mb2 + page + 100))
            #expect(fw.level == .pte && fw.page?.pfn == pfn && fw.folio.pfn == pfn)
            #expect(fw.lock.isHeldByCurrentThread)
            folioWalkEnd(fw)
            #expect(!fw.lock.isHeldByCurrentThread)
            // The zero page only on request, and never as a page.
            #expect(try folioWalkStart(mm, vma, mb2 + 2 * page) == nil)
            let zero = try #require(try folioWalkStart(mm, vma, mb2 + 2 * page, flags: .zeroPage))
            #expect(zero.folio == mm.memory.zeroPage && zero.page == nil)
            folioWalkEnd(zero)
            #expect(try folioWalkStart(mm, vma, mb2 + 3 * page) == nil)        // none
            #expect(try folioWalkStart(mm, vma, 3 * mb2, flags: .zeroPage) == nil)   // outside the VMA
        }
        try mm.startMigration(mb2 + page, mb2 + 2 * page)
        try locked(mm) { () throws in
            #expect(try folioWalkStart(mm, vma, mb2 + page) == nil)
            let m = try #require(try folioWalkStart(mm, vma, mb2 + page, flags: .migration))
            #expect(m.folio.pfn == pfn && m.page == nil && m.level == .pte)
            folioWalkEnd(m)
        }
        #expect(throws: PageWalkError.self) { try folioWalkStart(mm, vma, mb2 + page) }
    }

    @Test func pmdAndHugeZeroFolios() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: 2 * mb2, access: [.read, .write], extraFlags: [.hugePage])
        try mm.mmap(start: 2 * mb2, end: 3 * mb2, access: [.read, .write], extraFlags: [.hugePage])
        try mm.populateTHP(mb2, 2 * mb2)
        try mm.populateTHP(2 * mb2, 3 * mb2, write: false)
        // The two mappings are compatible neighbours, so they merged into one VMA.
        let thp = try #require(mm.vma(containing: mb2)), zero = thp
        #expect(thp.range == mb2..<(3 * mb2))
        try locked(mm) { () throws in
            let fw = try #require(try folioWalkStart(mm, thp, mb2 + 5 * page))
            #expect(fw.level == .pmd && fw.folio.order == 9 && fw.page?.pfn == fw.folio.pfn + 5)
            #expect(mm.lock(forEntriesOf: fw.slot.table, level: fw.slot.level).isHeldByCurrentThread)
            folioWalkEnd(fw)
            #expect(try folioWalkStart(mm, zero, 2 * mb2) == nil)
            let hz = try #require(try folioWalkStart(mm, zero, 2 * mb2 + page, flags: .zeroPage))
            #expect(hz.level == .pmd && hz.folio.test(.hugeZeroPage) && hz.page == nil)
            folioWalkEnd(hz)
        }
    }

    @Test func pudHugetlbAndPFNMap() throws {
        let mm = try makeSpace(budget: 3 << 30)
        let huge = try mm.mmap(start: gb1, end: 2 * gb1, access: [.read, .write], kind: .hugetlb(pageSize: gb1, file: nil))
        try mm.populateHugetlb(gb1, 2 * gb1)
        let pfnmap = try mm.mmap(start: mb2, end: mb2 + 4 * page, access: [.read, .write], shared: true,
                                 kind: .pfnMap(firstPFN: 0x5000))
        try mm.remapPFN(mb2, mb2 + 4 * page)
        try locked(mm) { () throws in
            let fw = try #require(try folioWalkStart(mm, huge, gb1 + 3 * page))
            #expect(fw.level == .pud && fw.page?.pfn == fw.folio.pfn + 3 && fw.folio.isHugetlb)
            #expect(mm.pageTableLock.ref.isHeldByCurrentThread)
            folioWalkEnd(fw)
            #expect(!mm.pageTableLock.ref.isHeldByCurrentThread)
            #expect(try folioWalkStart(mm, pfnmap, mb2, flags: [.zeroPage, .migration]) == nil)
        }
    }
}
