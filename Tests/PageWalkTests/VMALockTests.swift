import Testing
import MemoryModel
import TestKit
import Foundation
import Synchronization
@testable import PageWalk

/// Per-VMA locks (`CONFIG_PER_VMA_LOCK`): page faults and the single-VMA
/// madvise calls take the VMA's lock instead of the mmap lock
/// (`lock_vma_under_rcu()`), a writer write-locks only the VMAs it changes
/// or walks (`vma_start_write()`), and the walk modes check what they
/// expect (`process_vma_walk_lock()`).
@Suite struct VMALockTests {
    final class Flag: Sendable {
        let value = Atomic(false)
        var isSet: Bool { value.load(ordering: .acquiring) }
        func set() { value.store(true, ordering: .releasing) }
    }

    /// Runs `work` on another thread; returns a flag set when it is done.
    func onAnotherThread(_ work: @escaping @Sendable () -> Void) -> Flag {
        let done = Flag()
        let t = Thread { work(); done.set() }
        t.start()
        return done
    }

    /// Waits up to `limit` seconds for `flag`. A right answer of "not done"
    /// costs the whole limit; a wrong one can only show up sooner.
    func waits(_ flag: Flag, upTo limit: Double) -> Bool {
        let deadline = Date().addingTimeInterval(limit)
        while !flag.isSet && Date() < deadline { usleep(200) }
        return flag.isSet
    }

    let a: UInt64 = 0x1000_0000, b: UInt64 = 0x2000_0000, c: UInt64 = 0x2001_0000
    let size: UInt64 = 64 << 10

    /// Three anonymous VMAs: A, B, and C right after B (B and C differ in
    /// protection so they stay apart).
    func makeMM() throws -> AddressSpace {
        let mm = try makeSpace(.x86_64, budget: 64 << 20)
        try mm.mmap(start: a, end: a + size, access: [.read, .write])
        try mm.mmap(start: b, end: b + size, access: [.read, .write])
        try mm.mmap(start: c, end: c + size, access: [.read, .write, .exec])
        return mm
    }

    /// Walks `[start, end)` under the mmap write lock with `PGWALK_WRLOCK`,
    /// running `inVMA` at each VMA's `pre_vma` with its start.
    func writeLockedWalk(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64,
                         inVMA: @escaping (UInt64) -> Void) throws {
        let ops = MMWalkOps<Void>(preVMA: { s, _, _ in inVMA(s); return 0 }, walkLock: .write)
        try mm.withMmapWriteLock { (_) throws(PageWalkError) in
            _ = try walkPageRange(mm, start, end, ops: ops)
        }
    }

    @Test func aFaultElsewhereRunsWhileAWriterHoldsTheMmapLock() throws {
        let mm = try makeMM()
        var finished = false
        try writeLockedWalk(mm, a, a + size) { _ in
            // The writer holds the mmap lock and has write-locked A only.
            let done = onAnotherThread { try? mm.fault(b, b + size, write: true) }
            finished = waits(done, upTo: 10)
        }
        #expect(finished, "the fault on B waited for the mmap write lock: it took the mmap lock, not B's VMA lock")
        #expect(mm.vmaLockStatistics.vmaLocked >= 1)
        if case .present = mm.translate(b) {} else { Issue.record("B not faulted") }
    }

    @Test func aFaultOnAWriteLockedVMAWaitsForTheHoldToEnd() throws {
        let mm = try makeMM()
        var done: Flag?
        var finishedUnderTheHold = true
        try writeLockedWalk(mm, a, a + size) { _ in
            done = onAnotherThread { try? mm.fault(a, a + size, write: true) }
            finishedUnderTheHold = waits(done!, upTo: 0.3)
        }
        #expect(!finishedUnderTheHold, "the fault ran in a VMA the walk had write-locked")
        #expect(waits(done!, upTo: 30))
        #expect(mm.vmaLockStatistics.fellBack >= 1)
        if case .present = mm.translate(a) {} else { Issue.record("A not faulted") }
    }

    /// PGWALK_WRLOCK locks a VMA when the walk reaches it: a fault on B
    /// runs while the walk is in A, and waits once the walk is in B.
    @Test func aWriteLockedWalkLocksEachVMAWhenItGetsThere() throws {
        let mm = try makeMM()
        var results: [UInt64: Bool] = [:]
        var lockedSeen: [UInt64: (a: Bool, b: Bool)] = [:]
        var pending: [Flag] = []
        let vmaA = try #require(mm.vma(containing: a)), vmaB = try #require(mm.vma(containing: b))
        try writeLockedWalk(mm, a, b + size) { start in
            lockedSeen[start] = (mm.isVMAWriteLocked(vmaA), mm.isVMAWriteLocked(vmaB))
            let target = start == a ? b : b + Geometry.pageSize
            let done = onAnotherThread { try? mm.fault(target, target + Geometry.pageSize, write: true) }
            results[start] = waits(done, upTo: start == a ? 10 : 0.3)
            pending.append(done)
        }
        #expect(lockedSeen[a]?.a == true && lockedSeen[a]?.b == false, "in A: \(String(describing: lockedSeen[a]))")
        #expect(lockedSeen[b]?.a == true && lockedSeen[b]?.b == true, "in B: \(String(describing: lockedSeen[b]))")
        #expect(results[a] == true, "a fault on B, not yet reached, waited")
        #expect(results[b] == false, "a fault on B ran while the walk was in B")
        for f in pending { #expect(waits(f, upTo: 30)) }
        // After the hold, nothing stays write-locked.
        #expect(!mm.isVMAWriteLocked(vmaA) && !mm.isVMAWriteLocked(vmaB))
    }

    /// The range walker opened under the write lock does the same.
    @Test func theRangeWalkerUnderTheWriteLockLocksVMAsAsItReachesThem() throws {
        let mm = try makeMM()
        try mm.fault(a, a + size, write: true)
        try mm.fault(b, b + size, write: true)
        let vmaA = try #require(mm.vma(containing: a)), vmaB = try #require(mm.vma(containing: b))
        var states: [(UInt64, Bool, Bool)] = []
        try mm.withRangeWalk(a..<b + size, lock: .write) { walk in
            for e in walk { states.append((e.start, mm.isVMAWriteLocked(vmaA), mm.isVMAWriteLocked(vmaB))) }
        }
        let inA = states.filter { $0.0 < a + size }, inB = states.filter { $0.0 >= b }
        #expect(!inA.isEmpty && inA.allSatisfy { $0.1 && !$0.2 }, "\(inA)")
        #expect(!inB.isEmpty && inB.allSatisfy { $0.1 && $0.2 }, "\(inB)")
    }

    /// MADV_FREE and MADV_DONTNEED inside one VMA take its VMA lock
    /// (`MADVISE_VMA_READ_LOCK`, 6.16 and later); over two VMAs they take
    /// the mmap lock.
    @Test(arguments: ["free", "dontneed"])
    func aSingleVMAMadviseTakesTheVMALock(advice: String) throws {
        let mm = try makeMM()
        try mm.fault(b, b + size, write: true)
        try mm.fault(c, c + size, write: true)
        let call: @Sendable (UInt64, UInt64) -> Void = { s, e in
            if advice == "free" { try? mm.madviseFree(s, e) } else { try? mm.zap(s, e) }
        }
        var inside = false, across = true
        var acrossDone: Flag?
        try writeLockedWalk(mm, a, a + size) { _ in
            inside = waits(onAnotherThread { call(b, b + size) }, upTo: 10)
            acrossDone = onAnotherThread { call(b + size - Geometry.pageSize, c + Geometry.pageSize) }
            across = waits(acrossDone!, upTo: 0.3)
        }
        #expect(inside, "MADV_\(advice.uppercased()) inside B waited for the mmap write lock")
        #expect(!across, "MADV_\(advice.uppercased()) over B and C ran without the mmap lock")
        #expect(waits(acrossDone!, upTo: 30))
    }

    @Test func theVMAReadVerifyModeWantsTheVMALockAndNoMmapLock() throws {
        let mm = try makeMM()
        try mm.fault(b, b + size, write: true)
        let vmaB = try #require(mm.vma(containing: b))
        var ptes = 0
        let ops = MMWalkOps<Int>(pteEntry: { e, _, _, w in
            if e.entry.isPresent { w.privateData += 1 }
            return 0
        }, walkLock: .vmaReadVerify)
        // Without the VMA lock: refused, by name.
        do {
            _ = try walkPageRangeVMA(mm, vmaB, b, b + size, ops: ops, private: &ptes)
            Issue.record("walked without the VMA lock")
        } catch {
            guard case .lockNotHeld(let why) = error else { Issue.record("\(error)"); return }
            #expect(why.contains("not VMA-locked"))
        }
        // Under it, with no mmap lock held: walked.
        let walked: Int32? = try mm.withVMAReadLock(containing: b) { (vma) throws(PageWalkError) -> Int32 in
            #expect(!mm.isMmapLockHeldByCurrentThread(.read))
            return try walkPageRangeVMA(mm, vma, b, b + size, ops: ops, private: &ptes)
        }
        #expect(walked == 0)
        #expect(ptes == Int(size / Geometry.pageSize))
        // A PGWALK_RDLOCK walk under the VMA lock alone lacks the mmap lock.
        let rdOps = MMWalkOps<Int>(pteEntry: { _, _, _, _ in 0 }, walkLock: .read)
        #expect(throws: PageWalkError.self) {
            _ = try mm.withVMAReadLock(containing: b) { (vma) throws(PageWalkError) -> Int32 in
                try walkPageRangeVMA(mm, vma, b, b + size, ops: rdOps, private: &ptes)
            }
        }
    }

    @Test func writeVerifyWantsTheVMAWriteLocked() throws {
        let mm = try makeMM()
        let vmaB = try #require(mm.vma(containing: b))
        let ops = MMWalkOps<Void>(pteEntry: { _, _, _, _ in 0 }, walkLock: .writeVerify)
        var none: Void = ()
        try mm.withMmapWriteLock { (_) throws(PageWalkError) in
            #expect(throws: PageWalkError.self) { _ = try walkPageVMA(mm, vmaB, ops: ops, private: &none) }
            mm.vmaStartWrite(vmaB)
            #expect(try walkPageVMA(mm, vmaB, ops: ops, private: &none) == 0)
        }
    }

    /// A write request on the mmap lock from inside a VMA lock would wait,
    /// in `vma_start_write()`, for the caller: refused by name.
    @Test func munmapUnderAVMALockIsRefused() throws {
        let mm = try makeMM()
        let result: Result<Void, ModelError>? = mm.withVMAReadLock(containing: a) { _ in
            Result { () throws(ModelError) in try mm.munmap(b, b + size) }
        }
        guard case .failure(.lockConflict(let why))? = result else {
            Issue.record("expected a lock conflict, got \(String(describing: result))"); return
        }
        #expect(why.contains("VMA lock"))
        #expect(mm.vma(containing: b) != nil)
    }

    /// munmap waits for the reader inside the VMA it removes, then detaches
    /// it: the next lookup finds nothing there.
    @Test func munmapWaitsForTheReaderInsideThenDetaches() throws {
        let mm = try makeMM()
        let vmaA = try #require(mm.vma(containing: a))
        let inside = Flag(), release = Flag()
        let reader = onAnotherThread {
            _ = mm.withVMAReadLock(containing: a) { _ in
                inside.set()
                while !release.isSet { usleep(200) }
            }
        }
        #expect(waits(inside, upTo: 30))
        let unmapped = onAnotherThread { try? mm.munmap(a, a + size) }
        #expect(!waits(unmapped, upTo: 0.3), "munmap removed a VMA a reader was inside")
        release.set()
        #expect(waits(reader, upTo: 30) && waits(unmapped, upTo: 30))
        #expect(vmaA.vmaLock.isDetached)
        #expect(mm.lockVMA(containing: a) == nil)
    }

    /// Splitting a VMA (mprotect of part of it) replaces it: a reader that
    /// looked it up before must not enter the old one afterwards.
    @Test func aSplitDetachesTheOldVMA() throws {
        let mm = try makeMM()
        let old = try #require(mm.vma(containing: a))
        try mm.mprotect(a, a + Geometry.pageSize, access: [.read])
        #expect(old.vmaLock.isDetached)
        let new = try #require(mm.lockVMA(containing: a + Geometry.pageSize))
        #expect(new !== old)
        mm.unlockVMA(new)
    }
}
