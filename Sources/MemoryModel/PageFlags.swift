/// Page and folio flags, mirroring the kernel's `enum pageflags` plus the
/// few states the kernel keeps elsewhere (anon mapping bit, zero pages,
/// `PageAnonExclusive`, hugetlb). Folio-wide flags live on the head page;
/// `hwpoison` and `anonExclusive` are per page.
public struct PageFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let locked = PageFlags(rawValue: 1 << 0)
    public static let referenced = PageFlags(rawValue: 1 << 1)
    public static let uptodate = PageFlags(rawValue: 1 << 2)
    public static let dirty = PageFlags(rawValue: 1 << 3)
    public static let lru = PageFlags(rawValue: 1 << 4)
    public static let active = PageFlags(rawValue: 1 << 5)
    public static let writeback = PageFlags(rawValue: 1 << 6)
    public static let reclaim = PageFlags(rawValue: 1 << 7)
    /// Anonymous folio (`folio_test_anon()`: the mapping's anon bit).
    public static let anon = PageFlags(rawValue: 1 << 8)
    public static let swapBacked = PageFlags(rawValue: 1 << 9)
    public static let swapCache = PageFlags(rawValue: 1 << 10)
    public static let unevictable = PageFlags(rawValue: 1 << 11)
    public static let mlocked = PageFlags(rawValue: 1 << 12)
    public static let ksm = PageFlags(rawValue: 1 << 13)
    public static let hwpoison = PageFlags(rawValue: 1 << 14)
    public static let zeroPage = PageFlags(rawValue: 1 << 15)
    public static let hugeZeroPage = PageFlags(rawValue: 1 << 16)
    public static let reserved = PageFlags(rawValue: 1 << 17)
    public static let zoneDevice = PageFlags(rawValue: 1 << 18)
    /// `PageAnonExclusive`: this mm is the only one that may map the page.
    public static let anonExclusive = PageFlags(rawValue: 1 << 19)
    public static let hugetlb = PageFlags(rawValue: 1 << 20)
    /// `folio_test_young()` (page_idle's young bit).
    public static let young = PageFlags(rawValue: 1 << 21)
    public static let idle = PageFlags(rawValue: 1 << 22)
    /// A device-private page (`ZONE_DEVICE` memory the CPU cannot access).
    public static let devicePrivate = PageFlags(rawValue: 1 << 23)
    public static let mappedToDisk = PageFlags(rawValue: 1 << 24)
    public static let `private` = PageFlags(rawValue: 1 << 25)
    /// Model bookkeeping: the frame belongs to an allocated folio.
    public static let allocated = PageFlags(rawValue: 1 << 31)

    /// Flags that belong to one page, not to the whole folio.
    public static let perPage: PageFlags = [.hwpoison, .anonExclusive]

    public var description: String {
        let names: [(PageFlags, String)] = [
            (.locked, "locked"), (.referenced, "referenced"), (.uptodate, "uptodate"), (.dirty, "dirty"),
            (.lru, "lru"), (.active, "active"), (.writeback, "writeback"), (.reclaim, "reclaim"),
            (.anon, "anon"), (.swapBacked, "swapbacked"), (.swapCache, "swapcache"),
            (.unevictable, "unevictable"), (.mlocked, "mlocked"), (.ksm, "ksm"), (.hwpoison, "hwpoison"),
            (.zeroPage, "zero"), (.hugeZeroPage, "huge_zero"), (.reserved, "reserved"),
            (.zoneDevice, "zone_device"), (.anonExclusive, "anon_exclusive"), (.hugetlb, "hugetlb"),
            (.young, "young"), (.idle, "idle"), (.devicePrivate, "device_private"),
            (.mappedToDisk, "mappedtodisk"), (.private, "private"),
        ]
        return "[" + names.filter { contains($0.0) }.map(\.1).joined(separator: ",") + "]"
    }
}
