import Testing
import MemoryModel
@testable import PageWalk

/// The update walk's capabilities, each checked on the entries and counters
/// it leaves behind.
@Suite struct UpdateWalkTests {
    func youngPages(_ mm: AddressSpace, _ start: UInt64, _ n: Int) -> Int {
        let l = mm.geometry.layout
        return (0..<n).filter { k in
            if case .present(_, let raw, _) = mm.translate(start + UInt64(k) * page) { return raw & l.young != 0 }
            return false
        }.count
    }

    @Test func clearYoungOverBatchesAndTLBNotOwed() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: 2 * mb2, access: [.read, .write])
        try mm.fault(mb2, mb2 + 32 * page, write: true)
        #expect(youngPages(mm, mb2, 32) == 32)
        var sawYoung = 0
        let tlb = try mm.withUpdateWalk(mb2..<(2 * mb2), options: UpdateWalkOptions(respect: [])) { (walk) throws(PageWalkError) in
            try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in
                if try e.testAndClearYoung() { sawYoung += 1 }
                return .next
            }
            return walk.tlb
        }
        #expect(sawYoung == 32)   // 32 order-0 folios: one entry each
        #expect(youngPages(mm, mb2, 32) == 0)
        #expect(tlb.flushCount == 0)
    }

    @Test func writeProtectIsGatheredIntoOneFlush() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: 2 * mb2, access: [.read, .write])
        try mm.fault(mb2 + 4 * page, mb2 + 12 * page, write: true)
        let tlb = try mm.withUpdateWalk(mb2..<(2 * mb2)) { (walk) throws(PageWalkError) in
            try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in
                try e.writeProtect()
                return .next
            }
            return walk.tlb
        }
        #expect(tlb.flushes == [TLBFlush(range: (mb2 + 4 * page)..<(mb2 + 12 * page), reason: .finish)])
        for k in 4..<12 {
            guard case .present(_, let raw, _) = mm.translate(mb2 + UInt64(k) * page) else { Issue.record("page \(k) gone"); continue }
            #expect(raw & mm.geometry.layout.write == 0)
        }
    }

    @Test func clearZapsWithAccounting() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: 2 * mb2, access: [.read, .write])
        try mm.fault(mb2, mb2 + 16 * page, write: true)
        let folios = mm.memory.folioCount
        try mm.withUpdateWalk(mb2..<(mb2 + 8 * page)) { (walk) throws(PageWalkError) in
            try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in
                try e.clear()
                return .next
            }
        }
        #expect(mm.counterSnapshot.anon == 8)
        #expect(mm.memory.folioCount == folios - 8)
        #expect(mm.translate(mb2) == .none(level: .pte))
    }

    @Test func markersAndUffdWP() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: 2 * mb2, access: [.read, .write])
        try mm.fault(mb2, mb2 + 2 * page, write: true)
        // A table exists: its none PTEs take markers; present ones refuse.
        try mm.withUpdateWalk(mb2..<(mb2 + 4 * page), options: UpdateWalkOptions(batching: false)) { (walk) throws(PageWalkError) in
            try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in
                if case .none = e.content { try e.setMarker(.guardRegion) } else { try e.setUffdWP() }
                return .next
            }
        }
        let l = mm.geometry.layout
        guard case .present(_, let raw, _) = mm.translate(mb2) else { Issue.record("page 0 gone"); return }
        #expect(raw & l.uffdWP != 0 && raw & l.write == 0)
        guard case .softLeaf(_, _, let leaf) = mm.translate(mb2 + 2 * page), case .marker(let m) = leaf.leaf else {
            Issue.record("no marker at page 2"); return
        }
        #expect(m == .guardRegion)
        #expect(throws: PageWalkError.misuse("setMarker over a populated PTE at 0x200000")) {
            try mm.withUpdateWalk(mb2..<(mb2 + page)) { (walk) throws(PageWalkError) in
                try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in try e.setMarker(.guardRegion); return .next }
            }
        }
    }

    @Test func installIsReservedAndRefusedOnHugetlb() throws {
        let mm = try makeSpace(budget: 64 << 20)
        try mm.mmap(start: mb2, end: 2 * mb2, access: [.read, .write])
        try mm.mmap(start: gb1, end: gb1 + mb2, access: [.read, .write], kind: .hugetlb(pageSize: mb2, file: nil))
        #expect(throws: PageWalkError.installNotPermitted) {
            try mm.withUpdateWalk(mb2..<(2 * mb2)) { (walk) throws(PageWalkError) in
                try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in try e.installMarker(.guardRegion); return .next }
            }
        }
        // The installing walk allocates the missing tables.
        let tablesBefore = mm.counterSnapshot.pteTables
        var filled = 0
        try mm.withInstallingWalk(mb2..<(mb2 + 8 * page)) { (walk) throws(PageWalkError) in
            try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in filled += try e.installMarker(.guardRegion); return .next }
        }
        #expect(filled == 8 && mm.counterSnapshot.pteTables == tablesBefore + 1)
        try mm.populateHugetlb(gb1, gb1 + mb2)
        #expect(throws: PageWalkError.hugetlbInstall(vmaStart: gb1)) {
            try mm.withInstallingWalk(gb1..<(gb1 + mb2)) { (walk) throws(PageWalkError) in
                try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in try e.installMarker(.guardRegion); return .next }
            }
        }
    }

    @Test func splitOnTheWayDownOrNever() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: 3 * mb2, access: [.read, .write], extraFlags: [.hugePage])
        try mm.populateTHP(mb2, 3 * mb2)
        // ACTION_CONTINUE: a walk that takes PMD leaves as they are splits nothing.
        var levels: [EntryLevel] = []
        try mm.withUpdateWalk(mb2..<(3 * mb2)) { (walk) throws(PageWalkError) in
            try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in levels.append(e.level); return .next }
        }
        #expect(levels == [.pmd, .pmd])
        // Asking for PTEs splits each PMD before the body sees it.
        var ptes = 0
        try mm.withUpdateWalk(mb2..<(2 * mb2), options: UpdateWalkOptions(batching: false, splitHugePMDs: true)) { (walk) throws(PageWalkError) in
            try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in
                #expect(e.level == .pte)
                ptes += 1
                return .next
            }
        }
        #expect(ptes == 512)
        // One entry's own choice: split the second PMD from the body.
        var seen: [(EntryLevel, Bool)] = []
        try mm.withUpdateWalk((2 * mb2)..<(3 * mb2)) { (walk) throws(PageWalkError) in
            try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in
                seen.append((e.level, e.isRetry))
                return e.level == .pmd ? .splitPMD : .next
            }
        }
        #expect(seen.map(\.0) == [.pmd, .pte] && seen.map(\.1) == [false, true])
        #expect(throws: PageWalkError.misuse("splitPMD on a pte entry at 0x400000: only PMD leaves split")) {
            try mm.withUpdateWalk((2 * mb2)..<(3 * mb2)) { (walk) throws(PageWalkError) in
                try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in .splitPMD }
            }
        }
    }

    @Test func unlockActResumeReadsTheTableAgain() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: 2 * mb2, access: [.read, .write])
        try mm.fault(mb2, mb2 + 4 * page, write: true)
        var seen: [(UInt64, WalkContent.Kind, Bool)] = []
        var zapped = false
        let resumes = try mm.withUpdateWalk(mb2..<(mb2 + 4 * page), options: UpdateWalkOptions(batching: false)) { (walk) throws(PageWalkError) in
            try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in
                seen.append((e.start, e.content.kind, e.isRetry))
                guard e.start == mb2 + page, !zapped else { return .next }
                zapped = true
                // With the table lock dropped, zap the page (and the table
                // may go): the walk must read what is there now.
                return .unlockAndRetry { () throws(PageWalkError) in
                    do throws(ModelError) { try mm.zapPageRangeSingle(mm.vma(containing: mb2)!, mb2 + page, mb2 + 2 * page) }
                    catch { throw PageWalkError.model(error) }
                }
            }
            return walk.resumes
        }
        #expect(resumes == 1)
        #expect(seen.map(\.0) == [mb2, mb2 + page, mb2 + page, mb2 + 2 * page, mb2 + 3 * page])
        #expect(seen[2].1 == .none && seen[2].2)
    }

    @Test func breakAndThrowDropTheLocks() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: 2 * mb2, access: [.read, .write])
        try mm.fault(mb2, mb2 + 8 * page, write: true)
        try mm.withUpdateWalk(mb2..<(2 * mb2)) { (walk) throws(PageWalkError) in
            try walk.forEach { (_) throws(PageWalkError) -> UpdateStep in .stop }
        }
        struct Boom: Error {}
        #expect(throws: PageWalkError.handlerError(-5)) {
            try mm.withUpdateWalk(mb2..<(2 * mb2)) { (walk) throws(PageWalkError) in
                try walk.forEach { (_) throws(PageWalkError) -> UpdateStep in throw .handlerError(-5) }
            }
        }
        // The PTE lock is free again: a fault on the same table goes through.
        try mm.fault(mb2 + 8 * page, mb2 + 9 * page, write: true)
        #expect(mm.counterSnapshot.anon == 9)
    }

    @Test func iteratedOnceAndLockChoice() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: 2 * mb2, access: [.read, .write])
        try mm.mmap(start: 3 * mb2, end: 4 * mb2, access: [.read])
        #expect(throws: PageWalkError.misuse("an update walk is iterated once")) {
            try mm.withUpdateWalk(mb2..<(2 * mb2)) { (walk) throws(PageWalkError) in
                try walk.forEach { _ in .next }
                try walk.forEach { _ in .next }
            }
        }
        let inside = try mm.withUpdateWalk(mb2..<(2 * mb2), lock: .vma) { (walk) throws(PageWalkError) in
            #expect(!mm.isMmapLockHeldByCurrentThread(.read))
            return walk.lock
        }
        #expect(inside == .vma)
        let across = try mm.withUpdateWalk(mb2..<(4 * mb2), lock: .vma) { (walk) throws(PageWalkError) in walk.lock }
        #expect(across == .mmapRead)
        let written = try mm.withUpdateWalk(mb2..<(4 * mb2), lock: .mmapWrite) { (walk) throws(PageWalkError) -> Bool in
            try walk.forEach { _ in .next }
            return mm.vmas.allSatisfy { mm.isVMAWriteLocked($0) }
        }
        #expect(written)
    }
}
