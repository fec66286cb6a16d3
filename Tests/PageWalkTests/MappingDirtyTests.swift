import Testing
import MemoryModel
@testable import PageWalk
import TestKit

/// The dirty-tracking helpers of mm/mapping_dirty_helpers.c
/// (`clean_walk_ops`, `wp_walk_ops` through `walk_page_mapping()`) on both
/// walkers, over shared mappings of one file in two address spaces: the
/// PTEs changed, the count, the caller's bitmap, the per-VMA TLB flushes
/// and the end state agree, and match what the faults left.
@Suite struct MappingDirtyTests {
    /// One machine: file pages 0..<16 mapped shared by A (pid 10) at `mb2`,
    /// pages 8..<16 by B (pid 20) at `4 * mb2`.
    struct Machine {
        let memory: PhysicalMemory
        let file: FileObject
        let a: AddressSpace
        let b: AddressSpace
        /// Further address spaces a test adds (the memory does not keep them).
        var others: [AddressSpace] = []
        var spaces: [AddressSpace] { [a, b] + others }
    }

    let aBase = mb2, bBase = 4 * mb2

    /// A writes pages 0..<6 and reads 6..<12; B writes pages 12, 13 and
    /// reads 8, 9, whose fault-around maps the cached pages 10, 11 (read
    /// only: shared file mappings are write-notified). With `shmem`, the
    /// file is a memfd, whose read faults map pages writable and clean.
    func machine(_ geometry: Geometry = .x86_64, shmem: Bool = false, extra: (Machine) throws -> [AddressSpace] = { _ in [] }) throws -> Machine {
        let memory = try PhysicalMemory(budgetBytes: 64 << 20)
        let a = try AddressSpace(geometry: geometry, memory: memory, options: .init(pid: 10))
        let b = try AddressSpace(geometry: geometry, memory: memory, options: .init(pid: 20))
        let file = memory.file(path: "/dev/dri/card0-bo", device: DeviceNumber(major: 226, minor: 0), inode: 7,
                               isShmem: shmem)
        let kind: (UInt64) -> MappingKind = { shmem ? .shmem(file, offset: $0) : .file(file, offset: $0) }
        try a.mmap(start: aBase, end: aBase + 16 * page, access: [.read, .write], shared: true, kind: kind(0))
        try b.mmap(start: bBase, end: bBase + 8 * page, access: [.read, .write], shared: true, kind: kind(8 * page))
        try a.fault(aBase, aBase + 6 * page, write: true)
        try a.fault(aBase + 6 * page, aBase + 12 * page, write: false)
        try b.fault(bBase + 4 * page, bBase + 6 * page, write: true)
        try b.fault(bBase, bBase + 2 * page, write: false)
        var m = Machine(memory: memory, file: file, a: a, b: b)
        m.others = try extra(m)
        return m
    }

    /// The operation on each walker, each on its own machine; records an
    /// issue when the results or end states differ. Returns the machine
    /// the range walker left and its result.
    func twin(sourceLocation: SourceLocation = #_sourceLocation, _ build: () throws -> Machine,
              _ run: (Machine, WalkerKind) throws -> MappingDirtyResult) throws -> (Machine, MappingDirtyResult) {
        var results: [MappingDirtyResult] = []
        var states: [[[String]]] = []
        var last: Machine?
        for w in [WalkerKind.callback, .range] {
            let m = try build()
            results.append(try run(m, w))
            states.append(m.spaces.map(endState))
            last = m
        }
        #expect(results[0] == results[1], "walkers disagree: \(results)", sourceLocation: sourceLocation)
        for (s0, s1) in zip(states[0], states[1]) {
            #expect(s0 == s1, "\(endStateDifferences(s0, s1).joined(separator: "\n"))", sourceLocation: sourceLocation)
        }
        return (last!, results[1])
    }

    /// `clean_record_shared_mapping_range()` as a twin from `initial`:
    /// the machine and result of the range walker, and the bitmap both
    /// walkers left (an issue is recorded when the bitmaps differ).
    func cleanTwin(sourceLocation: SourceLocation = #_sourceLocation, _ build: () throws -> Machine,
                   firstIndex: UInt64, count: UInt64,
                   bitmap initial: MappingDirtyBitmap) throws -> (Machine, MappingDirtyResult, MappingDirtyBitmap) {
        var bitmaps: [MappingDirtyBitmap] = []
        let (m, r) = try twin(sourceLocation: sourceLocation, build) { m, w in
            var bitmap = initial
            let r = try MappingDirty.cleanRecordSharedMappingRange(m.memory, m.file, firstIndex: firstIndex, count: count,
                                                                   bitmap: &bitmap, walker: w)
            bitmaps.append(bitmap)
            return r
        }
        #expect(bitmaps[0] == bitmaps[1], sourceLocation: sourceLocation)
        return (m, r, bitmaps[1])
    }

    /// The present PTEs of `mm` in `[start, start + n pages)` with `bit`
    /// set, as page numbers from `start`.
    func pages(_ mm: AddressSpace, _ start: UInt64, _ n: Int, _ bit: (PTE) -> Bool) -> [Int] {
        (0..<n).filter { i in
            guard case .present(.pte, let raw, _) = mm.translate(start + UInt64(i) * page) else { return false }
            return bit(PTE(rawValue: raw, architecture: mm.geometry.architecture))
        }
    }

    @Test func theScenarioAsFaulted() throws {
        let m = try machine()
        #expect(pages(m.a, aBase, 16, \.isDirty) == Array(0..<6))
        #expect(pages(m.a, aBase, 16, \.isWritable) == Array(0..<6))
        #expect(pages(m.a, aBase, 16, \.isPresent) == Array(0..<12))
        #expect(pages(m.b, bBase, 8, \.isDirty) == [4, 5])
        #expect(pages(m.b, bBase, 8, \.isPresent) == Array(0..<6))
    }

    @Test func cleanRecordsEveryDirtyPTEOfBothAddressSpaces() throws {
        let (m, r, bitmap) = try cleanTwin({ try machine() }, firstIndex: 0, count: 16,
                                           bitmap: MappingDirtyBitmap(firstIndex: 0, bitCount: 16))
        #expect(r.total == 8)
        #expect(bitmap.pages == [0, 1, 2, 3, 4, 5, 12, 13])
        #expect(bitmap.start == 0 && bitmap.end == 14)
        // i_mmap order: A's VMA starts at file page 0, B's at 8. One flush
        // per VMA, over the PTEs cleaned.
        #expect(r.flushes == [.init(pid: 10, range: aBase..<aBase + 6 * page),
                              .init(pid: 20, range: bBase + 4 * page..<bBase + 6 * page)])
        #expect(r.warnings.isEmpty)
        #expect(pages(m.a, aBase, 16, \.isDirty).isEmpty && pages(m.b, bBase, 8, \.isDirty).isEmpty)
        // Cleaning leaves write permission and presence alone.
        #expect(pages(m.a, aBase, 16, \.isWritable) == Array(0..<6))
        #expect(pages(m.b, bBase, 8, \.isWritable) == [4, 5])
        #expect(pages(m.a, aBase, 16, \.isPresent) == Array(0..<12))
        // Nothing is dirty any more: a second pass cleans and flushes nothing
        // and leaves the bitmap as it was.
        for w in WalkerKind.allCases {
            var again = bitmap
            let r2 = try MappingDirty.cleanRecordSharedMappingRange(m.memory, m.file, firstIndex: 0, count: 16,
                                                                    bitmap: &again, walker: w)
            #expect(r2 == MappingDirtyResult())
            #expect(again == bitmap)
        }
    }

    @Test func cleanOfPartOfTheFileClipsEachVMA() throws {
        // Bits for pages 2..<34, with the range an earlier pass recorded (bit 28).
        var initial = MappingDirtyBitmap(firstIndex: 2, bitCount: 32)
        initial.start = 28
        initial.end = 29
        let (m, r, bitmap) = try cleanTwin({ try machine() }, firstIndex: 4, count: 9, bitmap: initial)
        // Pages 4..<13: A's 4, 5 and B's 12 (B's page 13 is outside).
        #expect(r.total == 3)
        #expect(bitmap.pages == [4, 5, 12])
        #expect(bitmap.start == 2 && bitmap.end == 29)
        #expect(r.flushes == [.init(pid: 10, range: aBase + 4 * page..<aBase + 6 * page),
                              .init(pid: 20, range: bBase + 4 * page..<bBase + 5 * page)])
        #expect(pages(m.a, aBase, 16, \.isDirty) == [0, 1, 2, 3])
        #expect(pages(m.b, bBase, 8, \.isDirty) == [5])
    }

    @Test func writeProtectCountsOnlyWritablePTEs() throws {
        // Shared file pages: only the written ones are writable.
        let (m, r) = try twin({ try machine() }) { m, w in
            try MappingDirty.wpSharedMappingRange(m.memory, m.file, firstIndex: 0, count: 16, walker: w)
        }
        #expect(r.total == 8)
        #expect(r.flushes == [.init(pid: 10, range: aBase..<aBase + 6 * page),
                              .init(pid: 20, range: bBase + 4 * page..<bBase + 6 * page)])
        #expect(pages(m.a, aBase, 16, \.isWritable).isEmpty && pages(m.b, bBase, 8, \.isWritable).isEmpty)
        // Write-protecting keeps the dirty bits for the next clean.
        #expect(pages(m.a, aBase, 16, \.isDirty) == Array(0..<6))
        #expect(pages(m.a, aBase, 16, \.isPresent) == Array(0..<12))
        #expect(try MappingDirty.wpSharedMappingRange(m.memory, m.file, firstIndex: 0, count: 16).total == 0)
    }

    @Test func shmemReadFaultsAreWritableButClean() throws {
        // A memfd: read faults map writable, so write-protection finds the
        // read pages too (A 0..<12, B 8..<14 less those not mapped), while
        // cleaning finds the written ones only.
        let fresh = try machine(shmem: true)
        #expect(pages(fresh.a, aBase, 16, \.isWritable) == Array(0..<12))
        let bWritable = pages(fresh.b, bBase, 8, \.isWritable)
        #expect(bWritable.count >= 4)
        let (m, r) = try twin({ try machine(shmem: true) }) { m, w in
            try MappingDirty.wpSharedMappingRange(m.memory, m.file, firstIndex: 0, count: 16, walker: w)
        }
        #expect(r.total == 12 + bWritable.count)
        #expect(pages(m.a, aBase, 16, \.isWritable).isEmpty && pages(m.b, bBase, 8, \.isWritable).isEmpty)
        #expect(pages(m.a, aBase, 16, \.isDirty) == Array(0..<6))
        let (_, c, bitmap) = try cleanTwin({ try machine(shmem: true) }, firstIndex: 0, count: 16,
                                           bitmap: MappingDirtyBitmap(firstIndex: 0, bitCount: 16))
        #expect(c.total == 8 && bitmap.pages == [0, 1, 2, 3, 4, 5, 12, 13])
    }

    @Test func aPrivateMappingEndsTheWholeWalk() throws {
        // A private mapping of file pages 4..<8 in a third address space
        // comes between A's VMA (offset 0) and B's (offset 8) in i_mmap
        // order; test_walk refuses it, which ends the walk: B is not reached.
        let (m, r) = try twin({
            try machine { m in
                let c = try AddressSpace(geometry: .x86_64, memory: m.memory, options: .init(pid: 30))
                try c.mmap(start: mb2, end: mb2 + 4 * page, access: [.read, .write], kind: .file(m.file, offset: 4 * page))
                try c.fault(mb2, mb2 + 4 * page, write: true)
                return [c]
            }
        }) { m, w in
            try MappingDirty.wpSharedMappingRange(m.memory, m.file, firstIndex: 0, count: 16, walker: w)
        }
        #expect(r.total == 6)
        #expect(r.flushes == [.init(pid: 10, range: aBase..<aBase + 6 * page)])
        #expect(pages(m.b, bBase, 8, \.isWritable) == [4, 5])
    }

    @Test func aPMDMappedFolioIsSkippedWithAWarning() throws {
        // A's second shared VMA maps file pages 512..<1024 with one dirty,
        // writable PMD leaf: both helpers pass over it (never split), and
        // the kernel's WARN_ON fires for it.
        let thpBase = 8 * mb2
        let build = {
            try machine { m in
                try m.a.mmap(start: thpBase, end: thpBase + mb2, access: [.read, .write], shared: true,
                             kind: .file(m.file, offset: 512 * page))
                let f = try m.memory.adoptFolio(pfn: 0x40000, order: 9, node: 0, flags: [.uptodate, .dirty, .lru],
                                                refcount: 1)
                try m.a.mapCapturedPMD(at: thpBase, folio: f, attributes: [.writable, .dirty, .young, .user])
                return []
            }
        }
        let before = try build().a.translate(thpBase)
        let wp = try twin(build) { m, w in
            try MappingDirty.wpSharedMappingRange(m.memory, m.file, firstIndex: 0, count: 1024, walker: w)
        }
        let clean = try cleanTwin(build, firstIndex: 0, count: 1024, bitmap: MappingDirtyBitmap(firstIndex: 0, bitCount: 1024))
        #expect(clean.2.pages == [0, 1, 2, 3, 4, 5, 12, 13])
        for (m, r) in [wp, (clean.0, clean.1)] {
            #expect(r.warnings == [.init(pid: 10, address: thpBase)])
            #expect(r.total == 8)
            #expect(m.a.translate(thpBase) == before)
            #expect(m.a.translate(thpBase + 100 * page) != .none(level: .pte))
        }
    }

    @Test func aBitmapThatDoesNotCoverTheRangeIsRefused() throws {
        for w in WalkerKind.allCases {
            let m = try machine()
            var bitmap = MappingDirtyBitmap(firstIndex: 4, bitCount: 8)
            for (first, count) in [(UInt64(0), UInt64(8)), (4, 9), (13, 1)] {
                #expect(throws: MappingDirtyError.bitmapDoesNotCover(firstIndex: first, count: count, bitmapFirstIndex: 4,
                                                                     bitmapBits: 8)) {
                    try MappingDirty.cleanRecordSharedMappingRange(m.memory, m.file, firstIndex: first, count: count,
                                                                   bitmap: &bitmap, walker: w)
                }
            }
            // Nothing was cleaned.
            #expect(pages(m.a, aBase, 16, \.isDirty) == Array(0..<6))
            // Exactly covered: pages 4..<12.
            let r = try MappingDirty.cleanRecordSharedMappingRange(m.memory, m.file, firstIndex: 4, count: 8,
                                                                   bitmap: &bitmap, walker: w)
            #expect(r.total == 2 && bitmap.pages == [4, 5] && bitmap.start == 0 && bitmap.end == 2)
        }
        #expect(MappingDirtyError.bitmapDoesNotCover(firstIndex: 0, count: 1, bitmapFirstIndex: 1, bitmapBits: 1).errno == -22)
    }

    @Test func arm64AgreesAcrossWalkers() throws {
        // arm64 write-notified file pages: the same counts as on x86-64,
        // and the walkers leave the same entries.
        let (m, r, bitmap) = try cleanTwin({ try machine(.arm64) }, firstIndex: 0, count: 16,
                                           bitmap: MappingDirtyBitmap(firstIndex: 0, bitCount: 16))
        #expect(r.total == 8 && bitmap.pages == [0, 1, 2, 3, 4, 5, 12, 13])
        #expect(pages(m.a, aBase, 16, \.isDirty).isEmpty)
        let (m2, wp) = try twin({ try machine(.arm64) }) { m, w in
            try MappingDirty.wpSharedMappingRange(m.memory, m.file, firstIndex: 0, count: 16, walker: w)
        }
        #expect(wp.total == 8 && pages(m2.a, aBase, 16, \.isWritable).isEmpty)
        #expect(pages(m2.a, aBase, 16, \.isDirty) == Array(0..<6))
    }
}
