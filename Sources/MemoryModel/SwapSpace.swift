import Synchronization

/// A swap device's slot map (`swap_info_struct->swap_map`) and its swap
/// cache (`swapper_spaces`).
///
/// A slot's count is the number of swap entries (PTEs of any address space)
/// referring to it; a folio in the swap cache adds the `SWAP_HAS_CACHE`
/// state. Slot 0 is the swap header and never handed out.
public final class SwapSpace: @unchecked Sendable {
    public let slots: Int
    private struct State {
        var counts: [UInt32]
        var next = 1
        var free: [Int] = []
        var used = 0
        var cache: [Int: UInt64] = [:]      // slot -> folio head pfn
    }
    private let state: Mutex<State>
    static let hasCache: UInt32 = 1 << 31

    init(slots: Int) {
        self.slots = slots
        state = Mutex(State(counts: []))
    }

    /// Allocates `n` consecutive slots with count 1 each (`folio_alloc_swap()`).
    func allocate(_ n: Int) throws(ModelError) -> Int {
        let total = slots
        return try state.withLock { (s) throws(ModelError) -> Int in
            if n == 1, let slot = s.free.popLast() {
                s.counts[slot] = 1; s.used += 1
                return slot
            }
            guard s.next + n <= total + 1 else { throw .swapFull(slots: total) }
            let first = s.next
            s.next += n
            if s.counts.count < s.next { s.counts.append(contentsOf: repeatElement(0, count: max(s.next - s.counts.count, s.counts.count / 2))) }
            for i in first..<(first + n) { s.counts[i] = 1 }
            s.used += n
            return first
        }
    }

    /// The number of swap entries referring to `slot` (`swap_count()`).
    public func count(_ slot: Int) -> Int {
        state.withLock { s in slot < s.counts.count ? Int(s.counts[slot] & ~SwapSpace.hasCache) : 0 }
    }

    /// Whether a folio for `slot` sits in the swap cache.
    public func cachedFolioPFN(_ slot: Int) -> UInt64? { state.withLock { $0.cache[slot] } }

    /// Adds `delta` swap references (`swap_duplicate()` / `swap_free()`);
    /// a slot with neither references nor a cached folio is freed.
    func adjust(_ slot: Int, _ delta: Int) {
        state.withLock { s in
            let c = Int(s.counts[slot] & ~SwapSpace.hasCache) + delta
            precondition(c >= 0, "swap count underflow at slot \(slot)")
            s.counts[slot] = UInt32(c) | (s.counts[slot] & SwapSpace.hasCache)
            if s.counts[slot] == 0 { s.free.append(slot); s.used -= 1 }
        }
    }

    /// Puts `pfn`'s folio in the swap cache for `slot`, or takes it out.
    func setCache(_ slot: Int, _ pfn: UInt64?) {
        state.withLock { s in
            s.cache[slot] = pfn
            if pfn != nil { s.counts[slot] |= SwapSpace.hasCache }
            else {
                s.counts[slot] &= ~SwapSpace.hasCache
                if s.counts[slot] == 0 { s.free.append(slot); s.used -= 1 }
            }
        }
    }

    /// Slots in use (referenced or cached).
    public var usedSlots: Int { state.withLock { $0.used } }
}

/// A file's identity and page cache (`struct address_space` of an inode).
public final class FileObject: @unchecked Sendable, CustomStringConvertible {
    public let path: String
    public let device: DeviceNumber
    public let inode: UInt64
    /// shmem/tmpfs: pages are swap-backed and count as Shmem.
    public let isShmem: Bool
    private let cache = Mutex<[UInt64: UInt64]>([:])   // page index -> pfn

    init(path: String, device: DeviceNumber, inode: UInt64, isShmem: Bool) {
        self.path = path; self.device = device; self.inode = inode; self.isShmem = isShmem
    }

    /// The frame caching page `index` of the file (`filemap_get_folio()`).
    public func cachedPFN(_ index: UInt64) -> UInt64? { cache.withLock { $0[index] } }
    func setCached(_ index: UInt64, _ pfn: UInt64?) { cache.withLock { $0[index] = pfn } }
    /// Pages in the page cache.
    public var cachedPages: Int { cache.withLock { $0.count } }
    public var description: String { path }

    /// Runs `body` with the page cache locked (`filemap_invalidate_lock`
    /// plus the xarray lock, as far as the model needs).
    func withCache<R>(_ body: (inout [UInt64: UInt64]) throws -> R) rethrows -> R {
        try cache.withLock { try body(&$0) }
    }
}
