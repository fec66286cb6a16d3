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
        var cache: [Int: UInt64] = [:]      // slot -> pfn of the cached page
        var slotOfPFN: [UInt64: Int] = [:]  // the reverse of `cache` (`folio->swap`)
    }
    private let state: ModelMutex<State>
    static let hasCache: UInt32 = 1 << 31

    init(slots: Int) {
        self.slots = slots
        state = ModelMutex(State(counts: []))
    }

    /// Allocates `n` consecutive slots for the folio at `pfn`, which enters
    /// the swap cache for them (`folio_alloc_swap()` + `add_to_swap()`): count
    /// 0 and `SWAP_HAS_CACHE` each; swap entries then raise the counts.
    func allocate(_ n: Int, folioPFN pfn: UInt64) throws(ModelError) -> Int {
        let total = slots
        return try state.withLock { (s) throws(ModelError) -> Int in
            let first: Int
            if n == 1, let slot = s.free.popLast() {
                first = slot
            } else {
                guard s.next + n <= total + 1 else { throw .swapFull(slots: total) }
                first = s.next
                s.next += n
                if s.counts.count < s.next { s.counts.append(contentsOf: repeatElement(0, count: max(s.next - s.counts.count, s.counts.count / 2))) }
            }
            for i in 0..<n {
                s.counts[first + i] = SwapSpace.hasCache
                s.cache[first + i] = pfn + UInt64(i)
                s.slotOfPFN[pfn + UInt64(i)] = first + i
            }
            s.used += n
            return first
        }
    }

    /// The number of swap entries referring to `slot` (`swap_count()`).
    public func count(_ slot: Int) -> Int {
        state.withLock { s in slot < s.counts.count ? Int(s.counts[slot] & ~SwapSpace.hasCache) : 0 }
    }

    /// The slot whose swap-cache entry is the page at `pfn` (`folio->swap`).
    func cachedSlot(ofPFN pfn: UInt64) -> Int? { state.withLock { $0.slotOfPFN[pfn] } }

    /// Every slot with a folio in the swap cache, with the cached page's
    /// frame, in slot order (for checks after a teardown).
    package func cachedSlots() -> [(slot: Int, pfn: UInt64)] {
        state.withLock { s in s.cache.map { (slot: $0.key, pfn: $0.value) }.sorted { $0.slot < $1.slot } }
    }

    /// Whether a folio for `slot` sits in the swap cache.
    public func cachedFolioPFN(_ slot: Int) -> UInt64? { state.withLock { $0.cache[slot] } }

    /// `swap_cache_get_folio()`: the page cached for `slot`, with a
    /// reference taken on its folio, or nil. The kernel finds the folio
    /// under RCU, takes a speculative reference (`folio_try_get()`) and
    /// re-checks that the slot still holds it. Here the lookup and the
    /// try-get happen under the swap map's lock: while the slot names the
    /// folio, a reference keeps it alive (the cache's own, which every path
    /// drops only after deleting the entry; or, while swap-out is adding it,
    /// the reclaimer's), so the reference is never taken on a freed frame,
    /// nor on one reused as a tail page, whose counter word holds a mapcount. The folio may still leave the cache
    /// afterwards: callers re-check under the folio lock, and put the
    /// reference.
    func cachedPage(_ slot: Int, getting memory: PhysicalMemory) -> Page? {
        state.withLock { s in
            guard let pfn = s.cache[slot], let page = memory.page(pfn), page.folio.tryGet() else { return nil }
            return page
        }
    }

    /// Adds `delta` swap references (`swap_duplicate()` / `swap_free()`);
    /// a slot with neither references nor a cached folio is freed.
    func adjust(_ slot: Int, _ delta: Int) {
        state.withLock { s in
            let old = s.counts[slot]
            let c = Int(old & ~SwapSpace.hasCache) + delta
            precondition(c >= 0, "swap count underflow at slot \(slot)")
            s.counts[slot] = UInt32(c) | (old & SwapSpace.hasCache)
            if s.counts[slot] == 0 && old != 0 { s.free.append(slot); s.used -= 1 }
        }
    }

    /// Puts `pfn` in the swap cache for `slot` unless a folio is there
    /// already (`add_to_swap_cache()` racing another swap-in); returns the
    /// folio already cached, or nil when `pfn` went in.
    func insertCache(_ slot: Int, _ pfn: UInt64) -> UInt64? {
        state.withLock { s in
            if let existing = s.cache[slot] { return existing }
            s.cache[slot] = pfn
            s.slotOfPFN[pfn] = slot
            s.counts[slot] |= SwapSpace.hasCache
            return nil
        }
    }

    /// Puts `pfn`'s folio in the swap cache for `slot`, or takes it out.
    func setCache(_ slot: Int, _ pfn: UInt64?) {
        state.withLock { s in
            let old = s.counts[slot]
            if let previous = s.cache[slot], s.slotOfPFN[previous] == slot { s.slotOfPFN[previous] = nil }
            s.cache[slot] = pfn
            if let pfn { s.slotOfPFN[pfn] = slot }
            if pfn != nil { s.counts[slot] |= SwapSpace.hasCache }
            else {
                s.counts[slot] &= ~SwapSpace.hasCache
                if s.counts[slot] == 0 && old != 0 { s.free.append(slot); s.used -= 1 }
            }
        }
    }

    /// Adds `references` swap references to a slot chosen by the caller
    /// (a snapshot rebuild's captured swap offsets), marking it in use; the
    /// allocator will not hand it out again. Slot 0 (the header) is refused.
    func adopt(_ slot: Int, references: Int) throws(ModelError) {
        guard slot >= 1, slot <= slots else {
            throw .invalidArgument(name: "swap offset", reason: "\(slot) is not in 1...\(slots)")
        }
        state.withLock { s in
            if s.counts.count <= slot { s.counts.append(contentsOf: repeatElement(0, count: slot + 1 - s.counts.count)) }
            if s.counts[slot] == 0 { s.used += 1; s.free.removeAll { $0 == slot } }
            s.counts[slot] = UInt32(Int(s.counts[slot] & ~SwapSpace.hasCache) + references) | (s.counts[slot] & SwapSpace.hasCache)
            if s.next <= slot { s.next = slot + 1 }
        }
    }

    /// Whether a swap device is active (`get_nr_swap_pages()` can be
    /// nonzero): a space of no slots models a machine without swap.
    public var isActive: Bool { slots > 0 }

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
    private let cache = ModelMutex<[UInt64: UInt64]>([:])   // page index -> pfn

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
