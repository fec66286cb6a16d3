import Testing
import Foundation
import Synchronization
import MemoryModel
import TestKit
@testable import PageWalk


/// The table holding the PMD entry for `address`.
func pmdTable(_ mm: AddressSpace, _ address: UInt64) -> TableID? {
    var table = mm.root
    for level in mm.tableLevels {
        if level == .pmd { return table }
        let w = mm.memory.tables.entries(table)[mm.geometry.tableIndex(address, level)].load(ordering: .relaxed)
        guard mm.geometry.layout.isTable(w, level) else { return nil }
        table = mm.lowerTable(w)
    }
    return nil
}

struct StopWalk: Error {}

@Suite struct RangeWalkLockingTests {
    func populated() throws -> AddressSpace {
        let mm = try makeSpace()
        try mm.mmap(start: 0x4000_0000, end: 0x4080_0000, access: [.read, .write])
        try mm.fault(0x4000_0000, 0x4000_8000, write: true)
        try mm.fault(0x4020_0000, 0x4020_4000, write: true)
        try mm.populateTHP(0x4040_0000, 0x4060_0000)
        return mm
    }

    @Test func tableLockIsHeldExactlyWhileTheBodyRunsOnItsEntries() throws {
        let mm = try populated()
        let first = try #require(pteTable(mm, 0x4000_0000))
        let second = try #require(pteTable(mm, 0x4020_0000))
        let thpLock = mm.memory.tables.lock(try #require(pmdTable(mm, 0x4040_0000)))
        var seen = 0
        try mm.withMmapReadLock { lock in
            for entry in try mm.walk(0x4000_0000..<0x4080_0000, lock: lock) {
                seen += 1
                switch entry.start {
                case 0x4000_0000..<0x4020_0000:
                    #expect(mm.memory.tables.lock(first).isHeldByCurrentThread)
                    #expect(!mm.memory.tables.lock(second).isLocked)
                case 0x4020_0000..<0x4040_0000:
                    #expect(mm.memory.tables.lock(second).isHeldByCurrentThread)
                    #expect(!mm.memory.tables.lock(first).isLocked)
                case 0x4040_0000..<0x4060_0000:
                    // The PMD leaf is handled under its PMD lock.
                    #expect(entry.level == .pmd)
                    #expect(thpLock.isHeldByCurrentThread)
                    #expect(!mm.memory.tables.lock(second).isLocked)
                default:
                    // A none PMD: no table, no lock.
                    #expect(!mm.memory.tables.lock(first).isLocked && !mm.memory.tables.lock(second).isLocked && !thpLock.isLocked)
                }
            }
            #expect(!mm.memory.tables.lock(first).isLocked && !mm.memory.tables.lock(second).isLocked && !thpLock.isLocked)
        }
        #expect(seen >= 5)
    }

    @Test func locksAreReleasedOnBreakReturnAndThrow() throws {
        let mm = try populated()
        let t = try #require(pteTable(mm, 0x4000_0000))
        try mm.withMmapReadLock { lock in
            for _ in try mm.walk(0x4000_0000..<0x4080_0000, lock: lock) {
                #expect(mm.memory.tables.lock(t).isLocked)
                break
            }
            #expect(!mm.memory.tables.lock(t).isLocked)

            func firstPresent() throws -> WalkEntry? {
                for e in try mm.walk(0x4000_0000..<0x4080_0000, lock: lock) {
                    if case .folio = e.content { return e }
                }
                return nil
            }
            #expect(try firstPresent() != nil)
            #expect(!mm.memory.tables.lock(t).isLocked)

            #expect(throws: StopWalk.self) {
                for _ in try mm.walk(0x4000_0000..<0x4080_0000, lock: lock) { throw StopWalk() }
            }
            #expect(!mm.memory.tables.lock(t).isLocked)
        }
    }

    @Test func hugetlbEntriesHoldTheHugetlbLocks() throws {
        let mm = try makeSpace()
        let vma = try mm.mmap(start: 0x4000_0000, end: 0x4040_0000, access: [.read, .write], kind: .hugetlb(pageSize: 2 << 20, file: nil))
        try mm.populateHugetlb(0x4000_0000, 0x4020_0000)
        let pmdLock = mm.memory.tables.lock(try #require(pmdTable(mm, 0x4000_0000)))
        try mm.withMmapReadLock { lock in
            var n = 0
            for e in try mm.walk(0x4000_0000..<0x4040_0000, lock: lock) {
                n += 1
                #expect(vma.hugetlbLock.readerCount == 1)
                if case .folio = e.content { #expect(pmdLock.isHeldByCurrentThread) }
            }
            #expect(n == 2)
            #expect(vma.hugetlbLock.readerCount == 0 && !pmdLock.isLocked)
        }
    }

    /// The walk error `body` throws, if any.
    func walkError(_ body: () throws(PageWalkError) -> Void) -> PageWalkError? {
        do { try body(); return nil } catch { return error }
    }

    @Test func misuseIsATypedError() throws {
        let mm = try populated()
        let other = try makeSpace()
        let escaped = mm.withMmapReadLock { $0 }
        let noLock = walkError { () throws(PageWalkError) in _ = try mm.walk(0x4000_0000..<0x4080_0000, lock: escaped) }
        guard case .lockNotHeld? = noLock else { Issue.record("walk without the lock: \(String(describing: noLock))"); return }
        let foreign = other.withMmapReadLock { lock in
            walkError { () throws(PageWalkError) in _ = try mm.walk(0x4000_0000..<0x4080_0000, lock: lock) }
        }
        guard case .wrongAddressSpace? = foreign else { Issue.record("foreign token: \(String(describing: foreign))"); return }
        for bad in [0x5000..<0x5000, 0x5001..<0x6000, 0x1000..<0x8000_0000_0000_1000] as [Range<UInt64>] {
            let e = mm.withMmapReadLock { lock in walkError { () throws(PageWalkError) in _ = try mm.walk(bad, lock: lock) } }
            guard case .invalidRange? = e else { Issue.record("accepted \(bad): \(String(describing: e))"); return }
        }
        try mm.tearDown()
        let gone = mm.withMmapReadLock { lock in
            walkError { () throws(PageWalkError) in _ = try mm.walk(0x4000_0000..<0x4080_0000, lock: lock) }
        }
        guard case .model(.tornDown)? = gone else { Issue.record("walked a torn-down mm: \(String(describing: gone))"); return }
    }
}

/// Mutators against walkers: every entry a walker yields must match the
/// page's state while the walker holds the entry's lock.
@Suite struct RangeWalkConcurrencyTests {
    @Test func walkersSeeOnlyRealStatesWhileMutatorsRun() throws {
        let mm = try makeSpace(budget: 1 << 30)
        let base: UInt64 = 0x4000_0000, size: UInt64 = 32 << 20
        try mm.mmap(start: base, end: base + size, access: [.read, .write], extraFlags: [.hugePage])
        try mm.fault(base, base + size / 2, write: true)
        let deadline = Date().addingTimeInterval(1.5)
        let stop = Atomic<Bool>(false)
        let failures = Mutex<[String]>([])
        let walks = Atomic<Int>(0), entries = Atomic<Int>(0), mutations = Atomic<Int>(0)
        let group = DispatchGroup()
        // Real threads: dispatch's pool would not run all of them on 2 cores.
        func spawn(_ body: @escaping @Sendable () -> Void) {
            group.enter()
            Thread { body(); group.leave() }.start()
        }
        for m in 0..<2 {
            spawn {
                var rng = SeededRandom(seed: UInt64(m) + 77)
                while !stop.load(ordering: .relaxed) {
                    let s = base + UInt64.random(in: 0..<(size / page), using: &rng) * page
                    let e = min(base + size, s + UInt64.random(in: 1...700, using: &rng) * page)
                    do {
                        switch Int.random(in: 0..<7, using: &rng) {
                        case 0: try mm.fault(s, e, write: true)
                        case 1: try mm.zap(s, e)
                        case 2: try mm.swapOut(s, e)
                        case 3: try mm.swapIn(s, e)
                        case 4: try mm.migrate(s, e, toNode: 0)
                        case 5: try mm.populateTHP(s & ~(mb2 - 1), min(base + size, (s & ~(mb2 - 1)) + mb2))
                        default: try? mm.splitHugePMD(containing: s)
                        }
                        mutations.add(1, ordering: .relaxed)
                    } catch {
                        failures.withLock { $0.append("mutator: \(error)") }
                    }
                }
            }
        }
        for w in 0..<2 {
            spawn {
                while !stop.load(ordering: .relaxed) {
                    do {
                        try mm.withMmapReadLock { lock in
                            let options = RangeWalkOptions(batching: w == 0)
                            for entry in try mm.walk(base..<(base + size), lock: lock, options: options) {
                                entries.add(1, ordering: .relaxed)
                                if let problem = mismatch(mm, entry) {
                                    failures.withLock { $0.append(problem) }
                                }
                            }
                        }
                        walks.add(1, ordering: .relaxed)
                    } catch {
                        failures.withLock { $0.append("walker: \(error)") }
                    }
                }
            }
        }
        while Date() < deadline { usleep(20_000) }
        stop.store(true, ordering: .relaxed)
        let finished = group.wait(timeout: .now() + 20)
        #expect(finished == .success, "deadlock: threads did not stop")
        let f = failures.withLock { $0 }
        #expect(f.isEmpty, "\(f.prefix(5))")
        #expect(walks.load(ordering: .relaxed) > 0 && mutations.load(ordering: .relaxed) > 0)
        #expect(entries.load(ordering: .relaxed) > 0)
    }
}

/// Compares an entry with the page tables while its lock is held. None
/// entries above the PTE level are read without a lock (as the kernel's
/// walker reads a none PMD before reporting a hole), so they are not stable.
func mismatch(_ mm: AddressSpace, _ entry: WalkEntry) -> String? {
    if case .none = entry.content, entry.level.tableLevel != .pte { return nil }
    for k in 0..<entry.pageCount {
        let a = entry.start + UInt64(k) * page
        let t = mm.translate(a)
        switch (entry.content, t) {
        case (.none, .none): continue
        case (.folio(let f, let first, _), .present(_, _, let pfn)) where pfn == f.pfn + UInt64(first + k): continue
        case (.pfn(let p), .present(_, _, let pfn)) where p == pfn || p + UInt64(k) == pfn: continue
        case (.swap(let s), .softLeaf(_, _, let leaf)) where leaf.leaf == .swap(SwapEntry(type: s.type, offset: s.offset + UInt64(k))): continue
        case (.marker(let m), .softLeaf(_, _, let leaf)) where leaf.leaf == .marker(m): continue
        case (.migration(_, let pfn, _), .softLeaf(_, _, let leaf)):
            if case .migration(_, let p, _, _) = leaf.leaf, p == pfn + UInt64(k) { continue }
        default: break
        }
        return "entry \(entry) but page 0x\(String(a, radix: 16)) is \(t)"
    }
    return nil
}
