/// Page and folio flags, mirroring the kernel's `enum pageflags` plus the
/// few states the kernel keeps elsewhere (anon mapping bit, zero pages,
/// `PageAnonExclusive`, hugetlb). Folio-wide flags live on the head page;
/// `hwpoison` and `anonExclusive` are per page.
public struct PageFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    @inlinable public static var locked: PageFlags { PageFlags(rawValue: 1 << 0) }
    @inlinable public static var referenced: PageFlags { PageFlags(rawValue: 1 << 1) }
    @inlinable public static var uptodate: PageFlags { PageFlags(rawValue: 1 << 2) }
    @inlinable public static var dirty: PageFlags { PageFlags(rawValue: 1 << 3) }
    @inlinable public static var lru: PageFlags { PageFlags(rawValue: 1 << 4) }
    @inlinable public static var active: PageFlags { PageFlags(rawValue: 1 << 5) }
    @inlinable public static var writeback: PageFlags { PageFlags(rawValue: 1 << 6) }
    @inlinable public static var reclaim: PageFlags { PageFlags(rawValue: 1 << 7) }
    /// Anonymous folio (`folio_test_anon()`: the mapping's anon bit).
    @inlinable public static var anon: PageFlags { PageFlags(rawValue: 1 << 8) }
    @inlinable public static var swapBacked: PageFlags { PageFlags(rawValue: 1 << 9) }
    @inlinable public static var swapCache: PageFlags { PageFlags(rawValue: 1 << 10) }
    @inlinable public static var unevictable: PageFlags { PageFlags(rawValue: 1 << 11) }
    @inlinable public static var mlocked: PageFlags { PageFlags(rawValue: 1 << 12) }
    @inlinable public static var ksm: PageFlags { PageFlags(rawValue: 1 << 13) }
    @inlinable public static var hwpoison: PageFlags { PageFlags(rawValue: 1 << 14) }
    @inlinable public static var zeroPage: PageFlags { PageFlags(rawValue: 1 << 15) }
    @inlinable public static var hugeZeroPage: PageFlags { PageFlags(rawValue: 1 << 16) }
    @inlinable public static var reserved: PageFlags { PageFlags(rawValue: 1 << 17) }
    @inlinable public static var zoneDevice: PageFlags { PageFlags(rawValue: 1 << 18) }
    /// `PageAnonExclusive`: this mm is the only one that may map the page.
    @inlinable public static var anonExclusive: PageFlags { PageFlags(rawValue: 1 << 19) }
    @inlinable public static var hugetlb: PageFlags { PageFlags(rawValue: 1 << 20) }
    /// `folio_test_young()` (page_idle's young bit).
    @inlinable public static var young: PageFlags { PageFlags(rawValue: 1 << 21) }
    @inlinable public static var idle: PageFlags { PageFlags(rawValue: 1 << 22) }
    /// A device-private page (`ZONE_DEVICE` memory the CPU cannot access).
    @inlinable public static var devicePrivate: PageFlags { PageFlags(rawValue: 1 << 23) }
    @inlinable public static var mappedToDisk: PageFlags { PageFlags(rawValue: 1 << 24) }
    @inlinable public static var `private`: PageFlags { PageFlags(rawValue: 1 << 25) }
    /// Model bookkeeping: the frame belongs to an allocated folio.
    @inlinable public static var allocated: PageFlags { PageFlags(rawValue: 1 << 31) }

    /// Flags that belong to one page, not to the whole folio.
    @inlinable public static var perPage: PageFlags { [.hwpoison, .anonExclusive] }

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
