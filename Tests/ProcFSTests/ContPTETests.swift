import Testing
import MemoryModel
import PageWalk
import ProcFS
import ReferenceModel
import TestKit

/// arm64 contiguous PTEs (`CONFIG_ARM64_CONTPTE`, arch/arm64/mm/contpte.c):
/// `ptep_get()` gathers young and dirty over the 16 entries of a folded
/// block, access-flag updates and whole-block write-protects keep the block
/// folded, and a PTE write that completes a uniform block of one large
/// folio folds it again. Each scenario runs on the model and on the
/// reference, which must agree page by page.
@Suite struct ContPTETests {
    static let base: UInt64 = 0x4000_0000
    static let block: UInt64 = 64 << 10
    static let page = Geometry.pageSize
    static let mthpOrder = 4

    /// The model and the reference, one process each.
    final class Pair {
        let mm: AddressSpace
        let model: ReferenceModel
        init() throws {
            let memory = try PhysicalMemory(budgetBytes: 256 << 20)
            let o = AddressSpaceOptions(pid: 1)
            mm = try AddressSpace(geometry: .arm64, memory: memory, options: o)
            model = ReferenceModel(geometry: .arm64, options: o, nodes: 1)
            model.addProcess(pid: 1)
        }
        func both(_ real: (AddressSpace) throws -> Void, _ ref: (ReferenceModel) throws -> Void) throws {
            try real(mm)
            try ref(model)
        }
        var mismatches: [Mismatch] { ReferenceChecker.check([mm], against: model) }

        /// `echo 1 > clear_refs`, then a read of the page at `a`.
        func makeOldThenRead(_ a: UInt64) throws {
            try both({ try $0.clearRefs(.all) }, { try $0.clearRefs(pid: 1, .all) })
            try both({ try $0.fault(a, a + ContPTETests.page, write: false) },
                     { try $0.fault(pid: 1, a, a + ContPTETests.page, write: false) })
        }

        /// An anonymous read-write VMA of `blocks` 64K blocks, each one
        /// folded 64K mTHP.
        static func folded(blocks: UInt64 = 1) throws -> Pair {
            let p = try Pair()
            let end = base + blocks * block
            try p.both({ try $0.mmap(start: base, end: end, access: [.read, .write]) },
                       { try $0.mmap(pid: 1, start: base, end: end, access: [.read, .write]) })
            try p.both({ try $0.populateLargeFolios(base, end, order: mthpOrder) },
                       { try $0.populateLargeFolios(pid: 1, base, end, order: mthpOrder) })
            return p
        }
    }

    /// The range walk's entries over `[start, end)` as "level xcount".
    static func shape(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64,
                      respect: EntryAttributes = .batchable) throws -> [String] {
        try mm.withMmapReadLock { (lock) throws(PageWalkError) in
            var out: [String] = []
            for e in try mm.walk(start..<end, lock: lock, options: RangeWalkOptions(respect: respect)) {
                out.append("\(e.level) x\(e.count)")
            }
            return out
        }
    }

    /// One smaps field summed over the VMAs, in kB.
    static func smapsField(_ mm: AddressSpace, _ name: String) throws -> Int? {
        let text = try Smaps.text(mm)
        var sum: Int?
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            sum = (sum ?? 0) + (Int(line.dropFirst(name.count + 1).split(separator: " ").first ?? "") ?? 0)
        }
        return sum
    }

    /// numa_maps' dirty= count of the (only) VMA.
    static func numaDirty(_ mm: AddressSpace) throws -> Int {
        let text = try NumaMaps.text(mm)
        guard let r = text.range(of: " dirty=") else { return 0 }
        return Int(text[r.upperBound...].prefix { $0.isNumber }) ?? 0
    }

    // MARK: The issue's example

    /// A folded 64K mTHP made old by clear_refs, then read on one page:
    /// the block stays folded and `ptep_get()` reports every page young,
    /// so smaps' Referenced is the whole 64K.
    @Test(arguments: [WalkerKind.range, .callback])
    func clearRefsThenOneReadKeepsTheBlockYoung(walker: WalkerKind) throws {
        let p = try Pair.folded()
        let b = Self.base
        #expect(try Self.shape(p.mm, b, b + Self.block) == ["cont-pte x16"])
        try p.both({ try $0.clearRefs(.all, walker: walker) }, { try $0.clearRefs(pid: 1, .all) })
        #expect(try Self.shape(p.mm, b, b + Self.block) == ["cont-pte x16"])   // test-and-clear-young does not unfold
        #expect(try Self.smapsField(p.mm, "Referenced") == 0)
        try p.both({ try $0.fault(b + 5 * Self.page, b + 6 * Self.page, write: false) },
                   { try $0.fault(pid: 1, b + 5 * Self.page, b + 6 * Self.page, write: false) })
        #expect(try Self.shape(p.mm, b, b + Self.block) == ["cont-pte x16"])
        #expect(try Self.smapsField(p.mm, "Referenced") == 64)
        #expect(p.mismatches.isEmpty, "\(p.mismatches.prefix(4))")
    }

    /// `ptep_get()` itself: one young word in a folded block makes every
    /// entry of it read young, through both walkers and `translate`.
    @Test func ptepGetGathersYoungAndDirtyOverTheBlock() throws {
        let p = try Pair.folded()
        let mm = p.mm, l = mm.geometry.layout
        try mm.madviseFree(Self.base, Self.base + Self.block)   // old and clean, still folded
        guard case .present(_, let raw0, _) = mm.translate(Self.base) else { Issue.record("not mapped"); return }
        #expect(raw0 & l.contiguous != 0 && !l.attributes(of: raw0, level: .pte).contains(.young))
        // Hardware sets the access flag and clears PTE_RDONLY on page 9 only.
        let table = try #require(pteTable(mm, Self.base))
        let first = mm.geometry.tableIndex(Self.base, .pte)
        let w9 = mm.memory.tables.entries(table)[first + 9].load(ordering: .relaxed)
        mm.memory.tables.entries(table)[first + 9].store((w9 | l.young) & ~l.readOnly, ordering: .relaxed)
        for k in [0, 9, 15] {
            guard case .present(_, let raw, _) = mm.translate(Self.base + UInt64(k) * Self.page) else { continue }
            let a = l.attributes(of: raw, level: .pte)
            #expect(a.contains(.young) && a.contains(.dirty), "page \(k)")
        }
        #expect(try Self.shape(mm, Self.base, Self.base + Self.block) == ["cont-pte x16"])
        #expect(try Self.smapsField(mm, "Referenced") == 64)
        #expect(try Self.numaDirty(mm) == 16)
        var ops = MMWalkOps<[Bool]>()
        ops.pteEntry = { ptr, _, _, walk in
            walk.privateData.append(ptr.entry.isYoung)
            return 0
        }
        var young: [Bool] = []
        _ = try mm.withMmapReadLock { (_) throws(PageWalkError) in
            try walkPageRange(mm, Self.base, Self.base + Self.block, ops: ops, private: &young)
        }
        #expect(young == Array(repeating: true, count: 16))
    }

    // MARK: Access-flag updates keep the block

    /// A write to one page of a clean folded block (after MADV_FREE)
    /// dirties the block without unfolding it: numa_maps counts 16 dirty
    /// pages, smaps 64K Private_Dirty.
    @Test func writeToOnePageDirtiesTheFoldedBlock() throws {
        let p = try Pair.folded()
        let b = Self.base
        try p.both({ try $0.madviseFree(b, b + Self.block) }, { try $0.madviseFree(pid: 1, b, b + Self.block) })
        #expect(try Self.numaDirty(p.mm) == 0)
        try p.both({ try $0.fault(b + 3 * Self.page, b + 4 * Self.page, write: true) },
                   { try $0.fault(pid: 1, b + 3 * Self.page, b + 4 * Self.page, write: true) })
        #expect(try Self.shape(p.mm, b, b + Self.block) == ["cont-pte x16"])
        #expect(try Self.numaDirty(p.mm) == 16)
        #expect(try Self.smapsField(p.mm, "Private_Dirty") == 64)
        #expect(try Self.smapsField(p.mm, "Referenced") == 64)
        #expect(p.mismatches.isEmpty, "\(p.mismatches.prefix(4))")
    }

    // MARK: Unfold and fold again

    /// mprotect of half a block changes part of it: the block unfolds, and
    /// the young/dirty bits it had are kept by all 16 entries
    /// (`contpte_convert()`). mprotect back rewrites the block's last
    /// entry with the same bits as the others: it folds again.
    @Test func partialMprotectUnfoldsAndRestoringFolds() throws {
        let p = try Pair.folded()
        let b = Self.base
        let half = b + 8 * Self.page
        try p.makeOldThenRead(b)
        try p.both({ try $0.mprotect(half, b + Self.block, access: [.read]) },
                   { try $0.mprotect(pid: 1, half, b + Self.block, access: [.read]) })
        #expect(try Self.shape(p.mm, b, b + Self.block, respect: []) == ["pte x8", "pte x8"])
        // Unfolding kept the gathered young bit on every entry.
        #expect(try Self.smapsField(p.mm, "Referenced") == 64)
        #expect(p.mismatches.isEmpty, "\(p.mismatches.prefix(4))")
        // Now page 0 alone is made old and touched again: an unfolded block
        // reports each page for itself.
        try p.makeOldThenRead(b)
        #expect(try Self.smapsField(p.mm, "Referenced") == 4)
        try p.both({ try $0.mprotect(half, b + Self.block, access: [.read, .write]) },
                   { try $0.mprotect(pid: 1, half, b + Self.block, access: [.read, .write]) })
        #expect(try Self.shape(p.mm, b, b + Self.block) == ["cont-pte x16"])
        // Folding gathered page 0's young bit over the block.
        #expect(try Self.smapsField(p.mm, "Referenced") == 64)
        #expect(p.mismatches.isEmpty, "\(p.mismatches.prefix(4))")
    }

    /// Only the write of a block's last entry tries to fold
    /// (`contpte_try_fold()` checks the address is the last of the block):
    /// mprotect back over the first half only leaves it unfolded.
    @Test func restoringWithoutTheLastEntryDoesNotFold() throws {
        let p = try Pair.folded()
        let b = Self.base
        let half = b + 8 * Self.page
        try p.both({ try $0.mprotect(b, half, access: [.read]) }, { try $0.mprotect(pid: 1, b, half, access: [.read]) })
        try p.both({ try $0.mprotect(b, half, access: [.read, .write]) },
                   { try $0.mprotect(pid: 1, b, half, access: [.read, .write]) })
        #expect(try Self.shape(p.mm, b, b + Self.block) == ["pte x16"])
        #expect(p.mismatches.isEmpty, "\(p.mismatches.prefix(4))")
    }

    /// MADV_COLD over part of a 64K mTHP splits the folio; the split
    /// remaps its pages, so no block of it stays folded, and a later touch
    /// of one page is that page's alone.
    @Test(arguments: [WalkerKind.range, .callback])
    func splittingTheFolioUnfoldsItsBlock(walker: WalkerKind) throws {
        let p = try Pair.folded()
        let mm = p.mm, b = Self.base
        try madviseCold(mm, b, b + 4 * Self.page, walker: walker)
        let f = mm.memory.folio(containing: mm.geometry.layout.pfn(rawWord(mm, b)))
        #expect(f?.isLarge == false)
        #expect(try Self.shape(mm, b, b + Self.block, respect: []).allSatisfy { $0 == "pte x1" })
        try mm.clearRefs(.all, walker: walker)
        try mm.fault(b + 9 * Self.page, b + 10 * Self.page, write: false)
        #expect(try Self.smapsField(mm, "Referenced") == 4)
    }

    func rawWord(_ mm: AddressSpace, _ a: UInt64) -> UInt64 {
        if case .present(_, let raw, _) = mm.translate(a) { return raw }
        return 0
    }

    /// Migration unmaps the block into migration entries (unfolding it)
    /// and `remove_migration_ptes()` writes the pages back one by one: the
    /// write of the last one folds the block again, on the new folio.
    @Test func migrationFoldsTheBlockAgainWhenItIsRestored() throws {
        let p = try Pair.folded()
        let b = Self.base, e = b + Self.block
        try p.both({ try $0.startMigration(b, e) }, { try $0.startMigration(pid: 1, b, e) })
        #expect(try Self.shape(p.mm, b, e) == Array(repeating: "pte x1", count: 16))   // migration entries, one by one
        #expect(p.mismatches.isEmpty, "\(p.mismatches.prefix(4))")
        try p.both({ try $0.finishMigration(b, e) }, { try $0.finishMigration(pid: 1, b, e) })
        #expect(try Self.shape(p.mm, b, e) == ["cont-pte x16"])
        #expect(p.mismatches.isEmpty, "\(p.mismatches.prefix(4))")
    }

    /// pagemap has no young or dirty bit (arm64 has no soft-dirty): a
    /// folded block's words are present, exclusively mapped, consecutive
    /// frames, before and after its young state changes.
    @Test func pagemapIsUnchangedByTheBlocksAccessState() throws {
        let p = try Pair.folded()
        let b = Self.base, e = b + Self.block
        let before = try Pagemap.words(p.mm, b..<e, privileged: true)
        try p.mm.clearRefs(.all)
        try p.mm.fault(b + 2 * Self.page, b + 3 * Self.page, write: false)
        let after = try Pagemap.words(p.mm, b..<e, privileged: true)
        #expect(before == after)
        let present: UInt64 = 1 << 63, exclusive: UInt64 = 1 << 56, softDirty: UInt64 = 1 << 55
        let pfnMask: UInt64 = (1 << 55) - 1
        #expect(after.allSatisfy { $0 & present != 0 && $0 & exclusive != 0 && $0 & softDirty == 0 })
        #expect(zip(after, after.dropFirst()).allSatisfy { ($0.1 & pfnMask) == ($0.0 & pfnMask) + 1 })
    }

    /// userfaultfd write-protect rewrites every present entry of its range,
    /// protected already or not: over the whole block the block folds
    /// again, over part of it the block unfolds.
    @Test func uffdWriteProtectOfPartOfABlockUnfoldsIt() throws {
        let p = try Pair()
        let b = Self.base, e = b + Self.block
        try p.both({ try $0.mmap(start: b, end: e, access: [.read, .write], extraFlags: [.uffdWP]) },
                   { try $0.mmap(pid: 1, start: b, end: e, access: [.read, .write], extraFlags: [.uffdWP]) })
        try p.both({ try $0.populateLargeFolios(b, e, order: Self.mthpOrder) },
                   { try $0.populateLargeFolios(pid: 1, b, e, order: Self.mthpOrder) })
        try p.both({ try $0.userfaultWriteProtect(b, e) }, { try $0.userfaultWriteProtect(pid: 1, b, e) })
        #expect(try Self.shape(p.mm, b, e) == ["cont-pte x16"])
        try p.both({ try $0.clearRefs(.all) }, { try $0.clearRefs(pid: 1, .all) })
        try p.both({ try $0.userfaultWriteProtect(b, b + 4 * Self.page) },
                   { try $0.userfaultWriteProtect(pid: 1, b, b + 4 * Self.page) })
        #expect(try Self.shape(p.mm, b, e, respect: []) == ["pte x16"])
        try p.both({ try $0.fault(b + 8 * Self.page, b + 9 * Self.page, write: false) },
                   { try $0.fault(pid: 1, b + 8 * Self.page, b + 9 * Self.page, write: false) })
        #expect(try Self.smapsField(p.mm, "Referenced") == 4)
        #expect(p.mismatches.isEmpty, "\(p.mismatches.prefix(4))")
    }

    /// Splitting a THP's PMD maps its 512 pages with one `set_ptes()`,
    /// which folds all 32 aligned blocks; mlock of three pages splits the
    /// PMD (and the VMA) and faults those pages in, which makes their
    /// whole block young.
    @Test func splittingAPMDFoldsItsBlocks() throws {
        let p = try Pair()
        let pmd: UInt64 = 2 << 20
        let b = Self.base, e = b + pmd
        try p.both({ try $0.mmap(start: b, end: e, access: [.read, .write]) },
                   { try $0.mmap(pid: 1, start: b, end: e, access: [.read, .write]) })
        try p.both({ try $0.populateTHP(b, e, write: true) }, { try $0.populateTHP(pid: 1, b, e, write: true) })
        try p.both({ try $0.clearRefs(.all) }, { try $0.clearRefs(pid: 1, .all) })
        let s = b + 0x24000
        try p.both({ try $0.mlock(s, s + 3 * Self.page) }, { try $0.mlock(pid: 1, s, s + 3 * Self.page) })
        let l = p.mm.geometry.layout
        #expect(stride(from: b + 4 * Self.block, to: e, by: Int(Self.page)).allSatisfy { rawWord(p.mm, $0) & l.contiguous != 0 })
        #expect(rawWord(p.mm, s) & l.contiguous != 0)   // VMA boundaries inside the block do not unfold it
        #expect(try Self.smapsField(p.mm, "Referenced") == 64)
        #expect(p.mismatches.isEmpty, "\(p.mismatches.prefix(4))")
    }

    /// Half of a folded 64K mTHP zapped (MADV_DONTNEED): the block unfolds
    /// and its 8 mapped pages keep the block's dirty state. Faulting the
    /// other half in maps new small folios, so the block never folds again:
    /// numa_maps counts each dirty page, pagemap shows the two folios'
    /// frames.
    @Test func halfZappedBlockStaysUnfoldedWhenRefilled() throws {
        let p = try Pair.folded()
        let b = Self.base, e = b + Self.block, half = b + 8 * Self.page
        try p.both({ try $0.zap(half, e) }, { try $0.zap(pid: 1, half, e) })
        #expect(try Self.shape(p.mm, b, half) == ["pte x8"])
        #expect(try Self.numaDirty(p.mm) == 8)
        #expect(try Self.smapsField(p.mm, "Rss") == 32)
        try p.both({ try $0.fault(half, e, write: true) }, { try $0.fault(pid: 1, half, e, write: true) })
        #expect(try !Self.shape(p.mm, b, e).contains("cont-pte x16"))
        #expect(try Self.numaDirty(p.mm) == 16)
        #expect(try Self.smapsField(p.mm, "AnonHugePages") == 0)
        let words = try Pagemap.words(p.mm, b..<e, privileged: true)
        let pfnMask: UInt64 = (1 << 55) - 1
        #expect(zip(words.prefix(8), words.prefix(8).dropFirst()).allSatisfy { ($0.1 & pfnMask) == ($0.0 & pfnMask) + 1 })
        #expect(p.mismatches.isEmpty, "\(p.mismatches.prefix(4))")
    }

    /// Write-protecting a whole folded block (fork's COW) keeps it folded
    /// in the parent, and the child's copy is folded too
    /// (`contpte_wrprotect_ptes()`, `contpte_set_ptes()`).
    @Test func forkKeepsBlocksFolded() throws {
        let p = try Pair.folded()
        let b = Self.base
        var child: AddressSpace?
        try p.both({ child = try $0.fork(childPID: 2) }, { try $0.fork(pid: 1, childPID: 2) })
        let c = try #require(child)
        #expect(try Self.shape(p.mm, b, b + Self.block) == ["cont-pte x16"])
        #expect(try Self.shape(c, b, b + Self.block) == ["cont-pte x16"])
        #expect(ReferenceChecker.check([p.mm, c], against: p.model).isEmpty)
    }
}
