import Testing
import MemoryModel
@testable import PageWalk

/// What a client can keep past its lock, and what a thread may ask for while
/// holding one: each misuse is a typed error, never freed memory, an
/// unlocked walk or a deadlock.
@Suite struct RangeWalkLifetimeTests {
    func populated() throws -> AddressSpace {
        let mm = try makeSpace()
        try mm.mmap(start: 0x4000_0000, end: 0x4080_0000, access: [.read, .write])
        try mm.fault(0x4000_0000, 0x4004_0000, write: true)
        return mm
    }

    /// An entry kept after its loop, and after `munmap` of its VMA, cannot
    /// reach the freed VMA: reading `vma` throws.
    @Test func aKeptEntryCannotReadItsFreedVMA() throws {
        let mm = try populated()
        var kept: WalkEntry?
        try mm.withMmapReadLock { (lock) throws(PageWalkError) in
            for e in try mm.walk(0x4000_0000..<0x4080_0000, lock: lock) {
                // Inside the loop the VMA reads as the mm's.
                #expect(try e.vma === mm.vma(containing: 0x4000_0000))
                kept = e
                break
            }
        }
        let entry = try #require(kept)
        try mm.munmap(0x4000_0000, 0x4080_0000)
        #expect(throws: PageWalkError.self) { _ = try entry.vma }
        // Under a new hold of the same mm the VMA is gone from its list: still refused.
        mm.withMmapReadLock { _ in #expect(throws: PageWalkError.self) { _ = try entry.vma } }
    }

    /// A walk returned out of the closure that held its lock yields nothing
    /// and says why.
    @Test func anEscapedWalkYieldsNothingAndSaysWhy() throws {
        let mm = try populated()
        let escaped = try mm.withMmapReadLock { (lock) throws(PageWalkError) in try mm.walk(0x4000_0000..<0x4080_0000, lock: lock) }
        var it = escaped.makeIterator()
        #expect(it.next() == nil)
        guard case .lockNotHeld? = it.failure else { Issue.record("failure: \(String(describing: it.failure))"); return }
        #expect(throws: PageWalkError.self) { try escaped.checkLock() }
        // Under the lock the same walk is valid again.
        let n = mm.withMmapReadLock { _ in escaped.reduce(0) { n, _ in n + 1 } }
        #expect(n > 0)
    }

    /// munmap inside a read walk's loop is refused by name instead of
    /// waiting for the write lock its own thread blocks.
    @Test func munmapInsideAReadWalkIsRefused() throws {
        let mm = try populated()
        var refusal: ModelError?
        try mm.withMmapReadLock { (lock) throws(PageWalkError) in
            for _ in try mm.walk(0x4000_0000..<0x4080_0000, lock: lock) {
                do throws(ModelError) { try mm.munmap(0x4000_0000, 0x4000_1000) } catch { refusal = error }
                break
            }
        }
        guard case .lockConflict(let why)? = refusal else { Issue.record("munmap inside a walk: \(String(describing: refusal))"); return }
        #expect(why.contains("read") && why.contains("write"))
        // The refusal changed nothing; outside the walk munmap works.
        #expect(mm.vma(containing: 0x4000_0000) != nil)
        try mm.munmap(0x4000_0000, 0x4000_1000)
        #expect(mm.vma(containing: 0x4000_0000) == nil)
    }

    /// The refusal reaches callers whose body throws another typed error.
    @Test func aWriteLockInsideAWriteLockIsRefused() throws {
        let mm = try populated()
        let e: PageWalkError? = mm.withMmapWriteLock { (_) -> PageWalkError? in
            do throws(PageWalkError) { try mm.withMmapWriteLock { (_) throws(PageWalkError) in } ; return nil } catch { return error }
        }
        guard case .model(.lockConflict)? = e else { Issue.record("nested write: \(String(describing: e))"); return }
        // A read inside a write runs under the write hold.
        #expect(mm.withMmapWriteLock { _ in mm.withMmapReadLock { _ in mm.isMmapLockHeldByCurrentThread(.write) } })
        #expect(!mm.isMmapLockHeldByCurrentThread(.read))
    }
}
