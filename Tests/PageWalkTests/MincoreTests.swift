import Testing
import Glibc
import MemoryModel
@testable import PageWalk
import Scenario

/// mincore(2) as Linux 6.18 answers it (mm/mincore.c), on both walkers:
/// every shape is asked of the range walker and of the callback twin, which
/// must give the same vector, and the vector is checked against what the
/// kernel's rules give.
@Suite struct MincoreTests {
    /// The vector of `[start, start + length)` on both walkers; records an
    /// issue when they differ.
    func vector(_ mm: AddressSpace, _ start: UInt64, _ length: UInt64,
                sourceLocation: SourceLocation = #_sourceLocation) throws -> [UInt8] {
        let range = try mincore(mm, start, length, walker: .range)
        let callback = try mincore(mm, start, length, walker: .callback)
        #expect(range == callback, "the walkers disagree at 0x\(String(start, radix: 16)):\n range    \(Self.digits(range))\n callback \(Self.digits(callback))",
                sourceLocation: sourceLocation)
        return range
    }

    /// `n` pages of `value`.
    func run(_ value: UInt8, _ n: Int) -> [UInt8] { [UInt8](repeating: value, count: n) }

    static func digits(_ v: [UInt8]) -> String { String(v.map { Character(String($0)) }) }

    /// The error both walkers throw.
    func failure(_ mm: AddressSpace, _ start: UInt64, _ length: UInt64) -> [MincoreError] {
        WalkerKind.allCases.compactMap { (w) -> MincoreError? in
            do throws(MincoreError) { _ = try mincore(mm, start, length, walker: w); return nil } catch { return error }
        }
    }

    // MARK: Anonymous memory

    @Test func anonymousTouchedUntouchedAndZeroPage() throws {
        for g in allGeometries {
            let mm = try makeSpace(g)
            try mm.mmap(start: mb2, end: mb2 + 64 * page, access: [.read, .write])
            try mm.fault(mb2, mb2 + 8 * page, write: true)
            try mm.fault(mb2 + 16 * page, mb2 + 20 * page, write: false)    // the zero page
            let v = try vector(mm, mb2, 64 * page)
            #expect(v == run(1, 8) + run(0, 8) + run(1, 4) + run(0, 44), "\(g)")
            // A range starting inside the VMA, with a length that is not a
            // page multiple: rounded up.
            #expect(try vector(mm, mb2 + 6 * page, 3 * page + 1) == [1, 1, 0, 0])
            #expect(try vector(mm, mb2, 1) == [1])
            #expect(try vector(mm, mb2, 0) == [])
        }
    }

    @Test func anonymousNeverFaultedHasNoTables() throws {
        let mm = try makeSpace()
        try mm.mmap(start: gb1, end: gb1 + 4 * mb2, access: [.read, .write])
        #expect(try vector(mm, gb1, 4 * mb2) == run(0, 2048))
    }

    // MARK: Files

    @Test func filePagesCachedButNotMappedAreResident() throws {
        let mm = try makeSpace()
        let file = mm.memory.file(path: "/data/f", device: DeviceNumber(major: 8, minor: 1), inode: 42)
        try mm.mmap(start: mb2, end: mb2 + 32 * page, access: [.read], kind: .file(file, offset: 4 * page))
        try mm.cachePages(of: file, 6..<8)        // read(2): pages 2 and 3 of the VMA
        try mm.cachePages(of: file, 0..<2)        // before the mapping: not in the range
        var expected = run(0, 32)
        expected[2] = 1; expected[3] = 1
        #expect(try vector(mm, mb2, 32 * page) == expected)
        // Mapped pages are resident; the fault caches what it maps.
        try mm.fault(mb2 + 10 * page, mb2 + 12 * page, write: false)
        let v = try vector(mm, mb2, 32 * page)
        #expect(v[10] == 1 && v[11] == 1 && v[2] == 1 && v[3] == 1)
        #expect(v.indices.filter { v[$0] == 1 }.allSatisfy { file.cachedPFN(4 + UInt64($0)) != nil })
        #expect(v.indices.filter { v[$0] == 0 }.allSatisfy { file.cachedPFN(4 + UInt64($0)) == nil })
    }

    @Test func privateFileCOWAndSharedFile() throws {
        let mm = try makeSpace()
        let file = mm.memory.file(path: "/data/g", device: DeviceNumber(major: 8, minor: 1), inode: 43)
        try mm.mmap(start: mb2, end: mb2 + 16 * page, access: [.read, .write], kind: .file(file, offset: 0))
        try mm.mmap(start: 2 * mb2, end: 2 * mb2 + 16 * page, access: [.read, .write], shared: true,
                    kind: .file(file, offset: 0))
        try mm.fault(mb2, mb2 + 2 * page, write: true)            // anonymous copies of pages 0, 1
        try mm.fault(2 * mb2 + 4 * page, 2 * mb2 + 5 * page, write: true)
        let priv = try vector(mm, mb2, 16 * page)
        let shared = try vector(mm, 2 * mb2, 16 * page)
        // The COW fault read the file pages in: the shared view sees them cached.
        #expect(priv[0] == 1 && priv[1] == 1 && priv[4] == 1)
        #expect(shared[0] == 1 && shared[1] == 1 && shared[4] == 1)
        #expect(priv == shared)
    }

    @Test func shmemAndSharedAnonymous() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + 16 * page, access: [.read, .write], shared: true)
        try mm.fault(mb2, mb2 + 4 * page, write: true)
        let shm = mm.memory.file(path: "/dev/shm/x", device: DeviceNumber(major: 0, minor: 26), inode: 7, isShmem: true)
        try mm.mmap(start: 2 * mb2, end: 2 * mb2 + 16 * page, access: [.read, .write], shared: true,
                    kind: .shmem(shm, offset: 0))
        try mm.cachePages(of: shm, 8..<12)
        #expect(try vector(mm, mb2, 16 * page) == run(1, 4) + run(0, 12))
        #expect(try vector(mm, 2 * mb2, 16 * page) == run(0, 8) + run(1, 4) + run(0, 4))
    }

    // MARK: Huge pages

    @Test func pmdTHPIsResidentWhole() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: 3 * mb2, access: [.read, .write], extraFlags: [.hugePage])
        try mm.populateTHP(mb2, 2 * mb2)
        try mm.populateTHP(2 * mb2, 3 * mb2, write: false)      // the huge zero page
        #expect(try vector(mm, mb2, 2 * mb2) == run(1, 1024))
        // A range beginning and ending inside the PMD.
        #expect(try vector(mm, mb2 + 100 * page, 10 * page) == run(1, 10))
        // After a split: every PTE present.
        try mm.splitHugePMD(containing: mb2)
        #expect(try vector(mm, mb2, mb2) == run(1, 512))
    }

    @Test func mTHPFolios() throws {
        for g in [Geometry.x86_64, .arm64] {
            let mm = try makeSpace(g)
            try mm.mmap(start: mb2, end: mb2 + 64 * page, access: [.read, .write])
            try mm.populateLargeFolios(mb2, mb2 + 32 * page, order: 4)
            #expect(try vector(mm, mb2, 64 * page) == run(1, 32) + run(0, 32), "\(g)")
            #expect(try vector(mm, mb2 + 9 * page, 10 * page) == run(1, 10))
        }
    }

    @Test func hugetlbPopulatedNoneAndWithoutTables() throws {
        let mm = try makeSpace(budget: 64 << 20)
        try mm.mmap(start: gb1, end: gb1 + 4 * mb2, access: [.read, .write], kind: .hugetlb(pageSize: mb2, file: nil))
        #expect(try vector(mm, gb1, 4 * mb2) == run(0, 2048))
        try mm.populateHugetlb(gb1 + mb2, gb1 + 2 * mb2)
        #expect(try vector(mm, gb1, 4 * mb2) == run(0, 512) + run(1, 512) + run(0, 1024))
        #expect(try vector(mm, gb1 + mb2 + 7 * page, 3 * page) == [1, 1, 1])
    }

    /// A shared hugetlbfs file whose huge pages another process faulted: a
    /// hugetlb walk that finds no table above the entry reports a hole, and
    /// the hole looks the page up in the file's page cache (resident); once
    /// a table exists, a none entry is not resident (`mincore_hugetlb()`).
    @Test func sharedHugetlbPageCacheShowsThroughHolesOnly() throws {
        let memory = try PhysicalMemory(budgetBytes: 64 << 20)
        let a = try AddressSpace(geometry: .x86_64, memory: memory)
        let b = try AddressSpace(geometry: .x86_64, memory: memory)
        let file = memory.file(path: "/dev/hugepages/f", device: DeviceNumber(major: 0, minor: 0x30), inode: 9)
        for mm in [a, b] {
            try mm.mmap(start: gb1, end: gb1 + 4 * mb2, access: [.read, .write], shared: true,
                        kind: .hugetlb(pageSize: mb2, file: file))
        }
        try a.populateHugetlb(gb1, gb1 + 2 * mb2)
        #expect(try vector(a, gb1, 4 * mb2) == run(1, 1024) + run(0, 1024))
        // b has no tables: its holes see a's pages in the page cache.
        #expect(try vector(b, gb1, 4 * mb2) == run(1, 1024) + run(0, 1024))
        // b faults its last huge page: the PMD table now exists, and the
        // none entries of the first two read as not resident.
        try b.populateHugetlb(gb1 + 3 * mb2, gb1 + 4 * mb2)
        #expect(try vector(b, gb1, 4 * mb2) == run(0, 1536) + run(1, 512))
    }

    @Test func hugetlbOnArm64ContiguousSizes() throws {
        let mm = try makeSpace(.arm64, budget: 256 << 20)
        try mm.mmap(start: gb1, end: gb1 + mb2, access: [.read, .write], kind: .hugetlb(pageSize: 64 << 10, file: nil))
        try mm.populateHugetlb(gb1 + (64 << 10), gb1 + (192 << 10))
        #expect(try vector(mm, gb1, mb2) == run(0, 16) + run(1, 32) + run(0, 464))
        try mm.mmap(start: 2 * gb1, end: 2 * gb1 + (64 << 20), access: [.read, .write],
                    kind: .hugetlb(pageSize: 32 << 20, file: nil))
        try mm.populateHugetlb(2 * gb1 + (32 << 20), 2 * gb1 + (64 << 20))
        #expect(try vector(mm, 2 * gb1, 64 << 20) == run(0, 8192) + run(1, 8192))
    }

    // MARK: Swap

    @Test func swapEntriesOutOfAndInTheSwapCache() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + 16 * page, access: [.read, .write])
        try mm.fault(mb2, mb2 + 16 * page, write: true)
        let child = try mm.fork(childPID: 2)
        try mm.swapOut(mb2, mb2 + 8 * page)           // both processes' PTEs become swap entries
        #expect(try vector(mm, mb2, 16 * page) == run(0, 8) + run(1, 8))
        #expect(try vector(child, mb2, 16 * page) == run(0, 8) + run(1, 8))
        // The child reads pages 2..<4 back: the folios sit in the swap cache
        // (the parent's entries still refer to the slots), so the parent's
        // swap entries of those pages are resident.
        try child.fault(mb2 + 2 * page, mb2 + 4 * page, write: false)
        #expect(try vector(mm, mb2, 16 * page) == [0, 0, 1, 1] + run(0, 4) + run(1, 8))
        #expect(try vector(child, mb2, 16 * page) == [0, 0, 1, 1] + run(0, 4) + run(1, 8))
    }

    /// A folio the swap cache keeps after writeback (the kernel's reclaim
    /// leaves it there until a later pass frees it): its swap entry is
    /// resident; one that is not uptodate (a read still in flight) is not.
    @Test func swapCacheFolioMustBeUptodate() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + 4 * page, access: [.read, .write])
        try mm.fault(mb2, mb2 + 4 * page, write: true)
        try mm.swapOut(mb2, mb2 + 4 * page)
        var slots: [UInt64] = []
        for k in 0..<4 {
            guard case .softLeaf(.pte, _, let e) = mm.translate(mb2 + UInt64(k) * page), case .swap(let s) = e.leaf else {
                Issue.record("page \(k) is not a swap entry"); return
            }
            slots.append(s.offset)
        }
        for (k, flags) in [(1, PageFlags([.anon, .swapBacked, .uptodate])), (2, PageFlags([.anon, .swapBacked]))] {
            let f = try mm.memory.adoptFolio(pfn: 0x9000 + UInt64(k), order: 0, node: 0, flags: flags, refcount: 1)
            try mm.memory.placeInSwapCache(f, offset: slots[k])
        }
        #expect(try vector(mm, mb2, 4 * page) == [0, 1, 0, 0])
    }

    // MARK: Markers and other non-present entries

    @Test func guardMarkersAskThePageCache() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + 16 * page, access: [.read, .write])
        try mm.fault(mb2, mb2 + 16 * page, write: true)
        try madviseGuardInstall(mm, mb2 + 4 * page, mb2 + 8 * page)
        #expect(try vector(mm, mb2, 16 * page) == run(1, 4) + run(0, 4) + run(1, 8))
        // On a file VMA a guard page is looked up as a none PTE: resident
        // when its page is cached (as Linux 6.18 does, checked live).
        let file = mm.memory.file(path: "/data/h", device: DeviceNumber(major: 8, minor: 1), inode: 44)
        try mm.mmap(start: 2 * mb2, end: 2 * mb2 + 16 * page, access: [.read], kind: .file(file, offset: 0))
        try mm.fault(2 * mb2, 2 * mb2 + 4 * page, write: false)
        try mm.cachePages(of: file, 9..<10)
        try madviseGuardInstall(mm, 2 * mb2 + 2 * page, 2 * mb2 + 12 * page)
        var expected = run(0, 16)
        for i in [0, 1, 2, 3, 9] { expected[i] = 1 }
        #expect(try vector(mm, 2 * mb2, 16 * page) == expected)
    }

    @Test func uffdWPMarkersOnAnonymousAndShmem() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + 8 * page, access: [.read, .write], extraFlags: [.uffdWP])
        try mm.fault(mb2, mb2 + 2 * page, write: true)
        try mm.userfaultWriteProtect(mb2, mb2 + 8 * page)
        let shm = mm.memory.file(path: "/dev/shm/w", device: DeviceNumber(major: 0, minor: 26), inode: 8, isShmem: true)
        try mm.mmap(start: 2 * mb2, end: 2 * mb2 + 8 * page, access: [.read, .write], shared: true,
                    kind: .shmem(shm, offset: 0), extraFlags: [.uffdWP])
        try mm.cachePages(of: shm, 0..<8)
        try mm.userfaultWriteProtect(2 * mb2, 2 * mb2 + 8 * page)
        #expect(try vector(mm, mb2, 8 * page) == run(1, 2) + run(0, 6))
        #expect(try vector(mm, 2 * mb2, 8 * page) == run(1, 8))
    }

    @Test func migrationDeviceAndHwpoisonEntriesAreResident() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + 16 * page, access: [.read, .write])
        try mm.fault(mb2, mb2 + 12 * page, write: true)
        try mm.startMigration(mb2, mb2 + 4 * page)
        try mm.makeDevicePrivate(mb2 + 4 * page, mb2 + 6 * page, writable: true)
        try mm.makeDeviceExclusive(mb2 + 6 * page, mb2 + 8 * page)
        try mm.poison(mb2 + 8 * page)
        #expect(try vector(mm, mb2, 16 * page) == run(1, 12) + run(0, 4))
        // A PMD migration entry.
        try mm.mmap(start: 2 * mb2, end: 3 * mb2, access: [.read, .write], extraFlags: [.hugePage])
        try mm.populateTHP(2 * mb2, 3 * mb2)
        try mm.startMigration(2 * mb2, 3 * mb2)
        #expect(try vector(mm, 2 * mb2, mb2) == run(1, 512))
    }

    // MARK: PFN maps and special mappings

    @Test func pfnMapsAreWalkedAndSpecialMappingsPretend() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + 8 * page, access: [.read, .write], shared: true, kind: .pfnMap(firstPFN: 0x5000))
        try mm.remapPFN(mb2, mb2 + 3 * page)
        #expect(try vector(mm, mb2, 8 * page) == run(1, 3) + run(0, 5))
        try mm.mmap(start: 2 * mb2, end: 2 * mb2 + 8 * page, access: [.read], kind: .mixedMap(firstPFN: 0x6000))
        try mm.remapPFN(2 * mb2 + 4 * page, 2 * mb2 + 8 * page)
        #expect(try vector(mm, 2 * mb2, 8 * page) == run(0, 4) + run(1, 4))
        // [vvar] (a PFN map with vm_ops and no file) and [vdso]: not
        // walked, every page reported resident.
        try mm.mmap(start: 3 * mb2, end: 3 * mb2 + 4 * page, access: [.read], kind: .pfnMap(firstPFN: 0x7000), name: "[vvar]")
        try mm.mmap(start: 3 * mb2 + 4 * page, end: 3 * mb2 + 6 * page, access: [.read, .exec], name: "[vdso]")
        #expect(try vector(mm, 3 * mb2, 6 * page) == run(1, 6))
        #expect(!Mincore.canDoMincore(try #require(mm.vma(containing: 3 * mb2))))
        #expect(Mincore.canDoMincore(try #require(mm.vma(containing: mb2))))
    }

    // MARK: Errors and the syscall's loop

    @Test func gapsUnalignedAndOutOfRange() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + 8 * page, access: [.read, .write])
        try mm.mmap(start: mb2 + 12 * page, end: mb2 + 16 * page, access: [.read, .write])
        try mm.fault(mb2, mb2 + 8 * page, write: true)
        try mm.fault(mb2 + 12 * page, mb2 + 16 * page, write: true)
        #expect(failure(mm, mb2 + 1, page) == [.unalignedStart(mb2 + 1), .unalignedStart(mb2 + 1)])
        #expect(failure(mm, mb2, 16 * page) == [.unmapped(address: mb2 + 8 * page), .unmapped(address: mb2 + 8 * page)])
        #expect(failure(mm, 0, page) == [.unmapped(address: 0), .unmapped(address: 0)])
        #expect(failure(mm, mb2 + 14 * page, 4 * page) == [.unmapped(address: mb2 + 16 * page), .unmapped(address: mb2 + 16 * page)])
        let limit = mm.geometry.userAddressLimit
        #expect(failure(mm, limit - page, 2 * page) == [.outsideUserSpace(start: limit - page, length: 2 * page),
                                                       .outsideUserSpace(start: limit - page, length: 2 * page)])
        #expect(failure(mm, mb2, UInt64.max - page) == [.outsideUserSpace(start: mb2, length: UInt64.max - page),
                                                       .outsideUserSpace(start: mb2, length: UInt64.max - page)])
        // An empty length looks at no VMA, up to the limit itself.
        #expect(try vector(mm, 0, 0) == [] && (try vector(mm, limit, 0)) == [])
        #expect(failure(mm, limit + page, 0).map(\.errno) == [-ENOMEM, -ENOMEM])
        #expect(MincoreError.unalignedStart(1).errno == -EINVAL)
        #expect(MincoreError.badVector(bytes: 1).errno == -EFAULT)
        // A vector longer than the model collects: the caller's buffer
        // cannot be that long.
        #expect(failure(mm, mb2, (Mincore.maxVectorBytes + 1) << 12) == [.badVector(bytes: Mincore.maxVectorBytes + 1),
                                                                        .badVector(bytes: Mincore.maxVectorBytes + 1)])
        #expect(try vector(mm, mb2 + 12 * page, 4 * page) == run(1, 4))
    }

    /// More than one step (4096 pages each) across several VMAs.
    @Test func longRangesGoInStepsAcrossVMAs() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + 5000 * page, access: [.read, .write])
        try mm.mmap(start: mb2 + 5000 * page, end: mb2 + 9000 * page, access: [.read])   // no merge: other flags
        #expect(mm.vmas.count == 2)
        try mm.fault(mb2 + 4090 * page, mb2 + 4100 * page, write: true)
        try mm.fault(mb2 + 8999 * page, mb2 + 9000 * page, write: false)
        var expected = run(0, 9000)
        for i in 4090..<4100 { expected[i] = 1 }
        expected[8999] = 1
        #expect(try vector(mm, mb2, 9000 * page) == expected)
    }

    @Test func runsUnderAHeldMmapLock() throws {
        let mm = try makeSpace()
        try mm.mmap(start: mb2, end: mb2 + page, access: [.read, .write])
        let outcome = mm.withMmapWriteLock { (_) -> MincoreError? in
            do throws(MincoreError) { _ = try mincore(mm, mb2, page); return nil } catch { return error }
        }
        // A read request under a held lock runs under that hold.
        #expect(outcome == nil)
    }

    // MARK: Whole processes

    /// Every VMA of the default scenario's processes, on both walkers.
    @Test func defaultScenarioBothWalkers() throws {
        let built = try ScenarioBuilder.buildDefault()
        for p in built.processes {
            let mm = p.addressSpace
            var resident = 0
            for vma in mm.vmas {
                let v = try vector(mm, vma.start, vma.size)
                #expect(v.count == Int(vma.size / page))
                #expect(v.allSatisfy { $0 <= 1 })
                if !Mincore.canDoMincore(vma) { #expect(v.allSatisfy { $0 == 1 }, "\(vma)") }
                resident += v.filter { $0 == 1 }.count
            }
            #expect(resident > 0)
        }
    }
}
