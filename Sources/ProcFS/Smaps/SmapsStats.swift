import MemoryModel

/// `PSS_SHIFT`: PSS is accumulated in bytes << 12 so that shares of pages
/// mapped many times add up before rounding.
public let pssShift: UInt64 = 12

/// The counters of one smaps entry (`struct mem_size_stats`); byte counts,
/// the `pss*` fields in fixed point (`<< pssShift`).
public struct MemSizeStats: Equatable, Sendable {
    public var resident: UInt64 = 0
    public var sharedClean: UInt64 = 0
    public var sharedDirty: UInt64 = 0
    public var privateClean: UInt64 = 0
    public var privateDirty: UInt64 = 0
    public var referenced: UInt64 = 0
    public var anonymous: UInt64 = 0
    public var lazyFree: UInt64 = 0
    public var anonymousTHP: UInt64 = 0
    public var shmemTHP: UInt64 = 0
    public var fileTHP: UInt64 = 0
    public var swap: UInt64 = 0
    public var sharedHugetlb: UInt64 = 0
    public var privateHugetlb: UInt64 = 0
    public var ksm: UInt64 = 0
    public var pss: UInt64 = 0
    public var pssAnon: UInt64 = 0
    public var pssFile: UInt64 = 0
    public var pssShmem: UInt64 = 0
    public var pssDirty: UInt64 = 0
    public var pssLocked: UInt64 = 0
    public var swapPss: UInt64 = 0

    public init() {}

    /// Adds `size` bytes of `folio` with share `pss` (`smaps_page_accumulate()`).
    mutating func accumulate(_ flags: PageFlags, size: UInt64, pss: UInt64, dirty: Bool, locked: Bool, private isPrivate: Bool) {
        self.pss &+= pss
        if flags.contains(.anon) { pssAnon &+= pss }
        else if flags.contains(.swapBacked) { pssShmem &+= pss }
        else { pssFile &+= pss }
        if locked { pssLocked &+= pss }
        if dirty || flags.contains(.dirty) {
            pssDirty &+= pss
            if isPrivate { privateDirty &+= size } else { sharedDirty &+= size }
        } else {
            if isPrivate { privateClean &+= size } else { sharedClean &+= size }
        }
    }

    /// Accounts pages `first ..< first + count` of `folio`, mapped by one
    /// entry (`compound`: a PMD) or by `count` PTEs that agree on young and
    /// dirty (`smaps_account()` once per PTE, or once for the PMD).
    /// `present` is false for migration and hwpoison entries (counted as
    /// "maybe shared") and true for device-private ones.
    public mutating func account(_ folio: Folio, first: Int, count: Int, young: Bool, dirty: Bool,
                                 locked: Bool, present: Bool) {
        let flags = folio.flags
        let size = UInt64(count) << Geometry.pageShift
        if flags.contains(.anon) {
            anonymous &+= size
            if !flags.contains(.swapBacked) && !dirty && !flags.contains(.dirty) { lazyFree &+= size }
        }
        if flags.contains(.ksm) { ksm &+= size }
        resident &+= size
        if young || flags.contains(.young) || flags.contains(.referenced) { referenced &+= size }
        // A reference count of one means one mapping, this one; entries that
        // are not present are "maybe shared, but not sure how often".
        if folio.refcount == 1 || !present {
            accumulate(flags, size: size, pss: size << pssShift, dirty: dirty, locked: locked, private: present)
            return
        }
        // CONFIG_PAGE_MAPCOUNT: each page's own mapcount.
        for i in first..<(first + count) {
            let mapcount = folio.pageMapcount(i)
            var pss: UInt64 = Geometry.pageSize << pssShift
            if mapcount >= 2 { pss /= UInt64(mapcount) }
            accumulate(flags, size: Geometry.pageSize, pss: pss, dirty: dirty, locked: locked, private: mapcount < 2)
        }
    }

    /// A PMD-mapped folio (`smaps_pmd_entry()`): the THP counters, then the
    /// whole mapping as one compound entry.
    public mutating func accountPMD(_ folio: Folio, first: Int, count: Int, young: Bool, dirty: Bool,
                                    locked: Bool, present: Bool) {
        let flags = folio.flags
        let size = UInt64(count) << Geometry.pageShift
        if flags.contains(.anon) { anonymousTHP &+= size }
        else if flags.contains(.swapBacked) { shmemTHP &+= size }
        else if flags.contains(.zoneDevice) { }
        else { fileTHP &+= size }
        account(folio, first: first, count: count, young: young, dirty: dirty, locked: locked, present: present)
    }

    /// `count` swap entries from `first` (`smaps_pte_entry()` on swap PTEs):
    /// SwapPss divides each page by its swap count.
    public mutating func accountSwap(_ first: SwapEntry, count: Int, memory: PhysicalMemory) {
        swap &+= UInt64(count) << Geometry.pageShift
        for k in 0..<count {
            let n = memory.swap.count(Int(first.offset) + k)
            var pss: UInt64 = Geometry.pageSize << pssShift
            if n >= 2 { pss /= UInt64(n) }
            swapPss &+= pss
        }
    }

    /// One hugetlb page (`smaps_hugetlb_range()`): shared when the entry is
    /// not present or the folio is mapped more than once.
    public mutating func accountHugetlb(_ folio: Folio, present: Bool, size: UInt64) {
        if !present || folio.mapcount > 1 { sharedHugetlb &+= size } else { privateHugetlb &+= size }
    }

    /// Adds another VMA's counters (smaps_rollup).
    public mutating func add(_ o: MemSizeStats) {
        resident &+= o.resident; sharedClean &+= o.sharedClean; sharedDirty &+= o.sharedDirty
        privateClean &+= o.privateClean; privateDirty &+= o.privateDirty; referenced &+= o.referenced
        anonymous &+= o.anonymous; lazyFree &+= o.lazyFree; anonymousTHP &+= o.anonymousTHP
        shmemTHP &+= o.shmemTHP; fileTHP &+= o.fileTHP; swap &+= o.swap
        sharedHugetlb &+= o.sharedHugetlb; privateHugetlb &+= o.privateHugetlb; ksm &+= o.ksm
        pss &+= o.pss; pssAnon &+= o.pssAnon; pssFile &+= o.pssFile; pssShmem &+= o.pssShmem
        pssDirty &+= o.pssDirty; pssLocked &+= o.pssLocked; swapPss &+= o.swapPss
    }
}

/// The counters of one numa_maps line (`struct numa_maps`).
public struct NumaStats: Equatable, Sendable {
    public var pages: UInt64 = 0
    public var anon: UInt64 = 0
    public var active: UInt64 = 0
    public var writeback: UInt64 = 0
    public var mapcountMax: UInt64 = 0
    public var dirty: UInt64 = 0
    public var swapcache: UInt64 = 0
    public var nodes: [UInt64] = Array(repeating: 0, count: 16)

    public init() {}

    /// `gather_stats()` for `nr` pages of `folio` whose mapcount is that of
    /// page `page`.
    mutating func gather(_ folio: Folio, mapcount: Int, dirty: Bool, pages nr: UInt64) {
        let flags = folio.flags
        pages &+= nr
        if dirty || flags.contains(.dirty) { self.dirty &+= nr }
        if flags.contains(.swapCache) { swapcache &+= nr }
        if flags.contains(.active) || flags.contains(.unevictable) { active &+= nr }
        if flags.contains(.writeback) { writeback &+= nr }
        if flags.contains(.anon) { anon &+= nr }
        if mapcount > 0 && UInt64(mapcount) > mapcountMax { mapcountMax = UInt64(mapcount) }
        nodes[folio.node] &+= nr
    }

    /// PTE-mapped pages `first ..< first + count` of `folio`, one
    /// `gather_stats()` per page (`can_gather_numa_stats()` checked).
    public mutating func gatherPTEs(_ folio: Folio, first: Int, count: Int, dirty: Bool) {
        guard NumaStats.canGather(folio) else { return }
        var maxCount = 0
        for i in first..<(first + count) { maxCount = Swift.max(maxCount, folio.pageMapcount(i)) }
        gather(folio, mapcount: maxCount, dirty: dirty, pages: UInt64(count))
    }

    /// A PMD mapping (`can_gather_numa_stats_pmd()`): HPAGE_PMD_NR pages,
    /// the mapcount of its first page.
    public mutating func gatherPMD(_ folio: Folio, first: Int, count: Int, dirty: Bool) {
        guard !folio.test(.reserved) else { return }
        gather(folio, mapcount: folio.pageMapcount(first), dirty: dirty, pages: UInt64(count))
    }

    /// One hugetlb page, counted once (`gather_hugetlb_stats()`).
    public mutating func gatherHugetlb(_ folio: Folio, first: Int, dirty: Bool) {
        gather(folio, mapcount: folio.pageMapcount(first), dirty: dirty, pages: 1)
    }

    static func canGather(_ folio: Folio) -> Bool {
        !folio.test(.zoneDevice) && !folio.test(.reserved) && !folio.isZero
    }
}
