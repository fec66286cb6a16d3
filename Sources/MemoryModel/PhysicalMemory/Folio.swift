import Synchronization

/// A handle on a folio: its head frame and a pointer into the memmap.
///
/// Models the kernel's `struct folio`. The handle is a plain value (no
/// reference counting per use) that stays valid while the `PhysicalMemory`
/// that owns the memmap lives; the counts it reads are the live ones.
public struct Folio: Hashable, @unchecked Sendable, CustomStringConvertible {
    /// Frame number of the head page (`folio_pfn()`).
    public let pfn: UInt64
    @usableFromInline let head: UnsafeMutablePointer<Atomic<UInt32>>

    @inlinable init(pfn: UInt64, head: UnsafeMutablePointer<Atomic<UInt32>>) {
        self.pfn = pfn
        self.head = head
    }

    public static func == (a: Folio, b: Folio) -> Bool { a.pfn == b.pfn }
    public func hash(into h: inout Hasher) { h.combine(pfn) }

    @inlinable @inline(always)
    func word(_ page: Int, _ w: Int) -> UnsafeMutablePointer<Atomic<UInt32>> {
        // Wrapping: `page` is within the folio (at most 2^18 pages), and
        // a checked multiply cost an overflow test per record read.
        head + (page &* RecordWord.wordsPerRecordInline &+ w)
    }

    /// `folio_order()`.
    @inlinable @inline(always) public var order: Int { Int(word(0, RecordWord.compound).pointee.load(ordering: .relaxed) & 31) }
    /// `folio_nr_pages()`.
    @inlinable @inline(always) public var pageCount: Int { 1 << order }
    /// `folio_test_large()`.
    @inlinable @inline(always) public var isLarge: Bool { order > 0 }
    /// `folio_size()` in bytes.
    @inlinable public var size: UInt64 { UInt64(Geometry.pageSize) << UInt64(order) }
    /// `folio_nid()`.
    @inlinable public var node: Int { Int((word(0, RecordWord.compound).pointee.load(ordering: .relaxed) >> 5) & 63) }

    /// Folio-wide flags (head page).
    @inlinable public var flags: PageFlags { PageFlags(rawValue: word(0, RecordWord.flags).pointee.load(ordering: .relaxed)) }
    @inlinable public func test(_ f: PageFlags) -> Bool { flags.contains(f) }

    /// `folio_ref_count()`.
    @inlinable public var refcount: Int { Int(Int32(bitPattern: word(0, RecordWord.counter).pointee.load(ordering: .relaxed))) }

    /// `folio_mapcount()`: all mappings of the folio, PTE and PMD/PUD.
    @inlinable
    public var mapcount: Int {
        if order == 0 { return Int(Int32(bitPattern: word(0, RecordWord.mapcount).pointee.load(ordering: .relaxed))) }
        return Int(Int32(bitPattern: word(1, RecordWord.counter).pointee.load(ordering: .relaxed)))
    }

    /// `folio_entire_mapcount()`: PMD/PUD (or hugetlb) mappings of the whole folio.
    @inlinable
    public var entireMapcount: Int {
        order < 2 ? 0 : Int(Int32(bitPattern: word(2, RecordWord.counter).pointee.load(ordering: .relaxed)))
    }

    /// `folio_mapped()`.
    @inlinable public var isMapped: Bool { mapcount > 0 }

    /// The `i`th page of the folio.
    @inlinable public func page(_ i: Int) -> Page { Page(pfn: pfn + UInt64(i), record: word(i, 0), folio: self) }

    /// `folio_precise_page_mapcount()` / `page_mapcount()`: PTE mappings of
    /// page `i` plus the folio's entire mappings (CONFIG_PAGE_MAPCOUNT).
    @inlinable
    public func pageMapcount(_ i: Int) -> Int {
        Int(Int32(bitPattern: word(i, RecordWord.mapcount).pointee.load(ordering: .relaxed))) + entireMapcount
    }

    /// Per-page flags of page `i` (hwpoison, anon-exclusive) merged with the
    /// folio's.
    @inlinable
    public func pageFlags(_ i: Int) -> PageFlags {
        let own = PageFlags(rawValue: word(i, RecordWord.flags).pointee.load(ordering: .relaxed))
        return i == 0 ? own : flags.subtracting(.perPage).union(own.intersection(.perPage))
    }

    /// `folio_test_anon()` and not KSM.
    @inlinable public var isAnon: Bool { test(.anon) }
    @inlinable public var isKSM: Bool { test(.ksm) }
    @inlinable public var isHugetlb: Bool { test(.hugetlb) }
    /// `is_zero_folio()` / `is_huge_zero_folio()`.
    @inlinable public var isZero: Bool { test(.zeroPage) || test(.hugeZeroPage) }
    /// Lazily freeable: anonymous but not swap-backed (MADV_FREE).
    @inlinable public var isLazyFree: Bool { test(.anon) && !test(.swapBacked) && !test(.ksm) }

    public var description: String {
        "folio(pfn \(hex(pfn)) order \(order) map \(mapcount) ref \(refcount) \(flags))"
    }

    // MARK: Folio lock

    /// `folio_trylock()`: PG_locked taken as a bit lock.
    @inlinable
    public func tryLock() -> Bool {
        word(0, RecordWord.flags).pointee.bitwiseOr(PageFlags.locked.rawValue, ordering: .acquiring).oldValue
            & PageFlags.locked.rawValue == 0
    }

    /// `folio_lock()`. Never called with a page-table lock held (the
    /// kernel's order is folio lock, then PTL); under a PTL use `tryLock()`.
    public func lock() {
        var spins = 0
        while !tryLock() { backoff(&spins) }
    }

    /// `folio_unlock()`.
    @inlinable
    public func unlock() {
        _ = word(0, RecordWord.flags).pointee.bitwiseAnd(~PageFlags.locked.rawValue, ordering: .releasing)
    }

    /// `folio_try_get()`: takes a reference unless the folio is being freed.
    @inlinable
    func tryGet() -> Bool {
        let c = word(0, RecordWord.counter)
        var old = c.pointee.load(ordering: .relaxed)
        while old != 0 {
            let (done, now) = c.pointee.compareExchange(expected: old, desired: old &+ 1, ordering: .acquiring)
            if done { return true }
            old = now
        }
        return false
    }

    // MARK: Mutation (model-internal; callers hold the right locks)

    @inlinable @inline(always)
    func setFlags(_ f: PageFlags, _ on: Bool) {
        if on { _ = word(0, RecordWord.flags).pointee.bitwiseOr(f.rawValue, ordering: .relaxed) }
        else { _ = word(0, RecordWord.flags).pointee.bitwiseAnd(~f.rawValue, ordering: .relaxed) }
    }

    @inlinable @inline(always)
    func setPageFlags(_ i: Int, _ f: PageFlags, _ on: Bool) {
        if on { _ = word(i, RecordWord.flags).pointee.bitwiseOr(f.rawValue, ordering: .relaxed) }
        else { _ = word(i, RecordWord.flags).pointee.bitwiseAnd(~f.rawValue, ordering: .relaxed) }
    }

    @inlinable @inline(always)
    func addRef(_ n: Int) {
        _ = word(0, RecordWord.counter).pointee.wrappingAdd(UInt32(bitPattern: Int32(n)), ordering: .relaxed)
    }

    /// Adds `n` PTE mappings of pages `first ..< first + count` … one each.
    @inlinable
    func addPTEMappings(first: Int, count: Int, delta: Int32) {
        let d = UInt32(bitPattern: delta)
        for i in first..<(first + count) {
            _ = word(i, RecordWord.mapcount).pointee.wrappingAdd(d, ordering: .relaxed)
        }
        if order > 0 {
            _ = word(1, RecordWord.counter).pointee.wrappingAdd(UInt32(bitPattern: Int32(count) * delta), ordering: .relaxed)
        }
    }

    /// Adds or removes one entire (PMD/PUD/hugetlb) mapping.
    @inlinable
    func addEntireMapping(_ delta: Int32) {
        precondition(order >= 2, "entire mappings need a folio of order 2 or more")
        let d = UInt32(bitPattern: delta)
        _ = word(2, RecordWord.counter).pointee.wrappingAdd(d, ordering: .relaxed)
        _ = word(1, RecordWord.counter).pointee.wrappingAdd(d, ordering: .relaxed)
    }
}

/// A handle on one page (`struct page`) of a folio.
public struct Page: Hashable, @unchecked Sendable {
    public let pfn: UInt64
    @usableFromInline let record: UnsafeMutablePointer<Atomic<UInt32>>
    public let folio: Folio

    @inlinable init(pfn: UInt64, record: UnsafeMutablePointer<Atomic<UInt32>>, folio: Folio) {
        self.pfn = pfn; self.record = record; self.folio = folio
    }
    public static func == (a: Page, b: Page) -> Bool { a.pfn == b.pfn }
    public func hash(into h: inout Hasher) { h.combine(pfn) }

    /// Index of this page within its folio (`folio_page_idx()`).
    @inlinable public var index: Int { Int(pfn - folio.pfn) }
    /// `page_mapcount()` under CONFIG_PAGE_MAPCOUNT.
    @inlinable public var mapcount: Int { folio.pageMapcount(index) }
    @inlinable public var flags: PageFlags { folio.pageFlags(index) }
    /// `PageAnonExclusive()`.
    @inlinable public var isAnonExclusive: Bool { flags.contains(.anonExclusive) }
    /// `PageHWPoison()`.
    @inlinable public var isHWPoison: Bool { flags.contains(.hwpoison) }
}

extension RecordWord {
    @inlinable static var wordsPerRecordInline: Int { 4 }
}
