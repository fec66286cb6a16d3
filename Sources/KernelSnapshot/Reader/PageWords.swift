import MemoryModel

/// One /proc/<pid>/pagemap word (one virtual page), decoded as docs/FORMATS.md describes.
/// The bits are MemoryModel's `PagemapBits`, the layout ProcFS's `Pagemap`
/// writes; the masks below are the same constants under this type's names.
public struct PagemapWord: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }


    /// Bit 63: the page is present in RAM.
    public var isPresent: Bool { rawValue & PagemapBits.present != 0 }
    /// Bit 62: the page is swapped (or another non-present swap-format entry).
    public var isSwapped: Bool { rawValue & PagemapBits.swap != 0 }
    /// Bit 61: a file page or shared anonymous (shmem) page.
    public var isFileOrSharedAnon: Bool { rawValue & PagemapBits.file != 0 }
    /// Bit 58: a guard-region marker (MADV_GUARD_INSTALL).
    public var isGuard: Bool { rawValue & PagemapBits.guardRegion != 0 }
    /// Bit 57: userfaultfd write-protected (PTE bit or marker).
    public var isUffdWP: Bool { rawValue & PagemapBits.uffdWP != 0 }
    /// Bit 56: the page is exclusively mapped (mapped once).
    public var isExclusive: Bool { rawValue & PagemapBits.exclusive != 0 }
    /// Bit 55: soft-dirty.
    public var isSoftDirty: Bool { rawValue & PagemapBits.softDirty != 0 }
    /// Bits 0–54 when present (zero when the reader may not see PFNs).
    public var pfn: UInt64? { isPresent ? rawValue & PagemapBits.pfnMask : nil }
    /// Bits 0–4 when swapped.
    public var swapType: UInt64? { isSwapped ? rawValue & PagemapBits.swapTypeMask : nil }
    /// Bits 5–54 when swapped.
    public var swapOffset: UInt64? { isSwapped ? (rawValue >> PagemapBits.swapOffsetShift) & PagemapBits.swapOffsetMask : nil }
    /// Nothing at all is known about the page (not present, not swapped, no flag).
    public var isEmpty: Bool { rawValue == 0 }

    public var description: String {
        var parts: [String] = []
        if let pfn { parts.append("pfn=0x" + String(pfn, radix: 16)) }
        if let t = swapType, let o = swapOffset { parts.append("swap=\(t):0x" + String(o, radix: 16)) }
        if isSoftDirty { parts.append("soft-dirty") }
        if isExclusive { parts.append("exclusive") }
        if isUffdWP { parts.append("uffd-wp") }
        if isGuard { parts.append("guard") }
        if isFileOrSharedAnon { parts.append("file/shared") }
        return parts.isEmpty ? "none" : parts.joined(separator: " ")
    }
}

/// The /proc/kpageflags word of one physical page.
/// Bits 0–26 are the stable user-space ABI; 32–42 are the kernel-hacking
/// bits /proc/kpageflags also reports on 6.18 (include/linux/kernel-page-flags.h).
public struct KPageFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let locked = KPageFlags(rawValue: 1 << 0)
    public static let error = KPageFlags(rawValue: 1 << 1)
    public static let referenced = KPageFlags(rawValue: 1 << 2)
    public static let uptodate = KPageFlags(rawValue: 1 << 3)
    public static let dirty = KPageFlags(rawValue: 1 << 4)
    public static let lru = KPageFlags(rawValue: 1 << 5)
    public static let active = KPageFlags(rawValue: 1 << 6)
    public static let slab = KPageFlags(rawValue: 1 << 7)
    public static let writeback = KPageFlags(rawValue: 1 << 8)
    public static let reclaim = KPageFlags(rawValue: 1 << 9)
    public static let buddy = KPageFlags(rawValue: 1 << 10)
    public static let mmap = KPageFlags(rawValue: 1 << 11)
    public static let anon = KPageFlags(rawValue: 1 << 12)
    public static let swapCache = KPageFlags(rawValue: 1 << 13)
    public static let swapBacked = KPageFlags(rawValue: 1 << 14)
    public static let compoundHead = KPageFlags(rawValue: 1 << 15)
    public static let compoundTail = KPageFlags(rawValue: 1 << 16)
    public static let huge = KPageFlags(rawValue: 1 << 17)
    public static let unevictable = KPageFlags(rawValue: 1 << 18)
    public static let hwpoison = KPageFlags(rawValue: 1 << 19)
    public static let noPage = KPageFlags(rawValue: 1 << 20)
    public static let ksm = KPageFlags(rawValue: 1 << 21)
    public static let thp = KPageFlags(rawValue: 1 << 22)
    public static let offline = KPageFlags(rawValue: 1 << 23)
    public static let zeroPage = KPageFlags(rawValue: 1 << 24)
    public static let idle = KPageFlags(rawValue: 1 << 25)
    public static let pgtable = KPageFlags(rawValue: 1 << 26)
    // Kernel-hacking bits (not stable ABI, but shown to root).
    public static let reserved = KPageFlags(rawValue: 1 << 32)
    public static let mlocked = KPageFlags(rawValue: 1 << 33)
    public static let mappedToDisk = KPageFlags(rawValue: 1 << 34)
    public static let `private` = KPageFlags(rawValue: 1 << 35)
    public static let private2 = KPageFlags(rawValue: 1 << 36)
    public static let ownerPrivate = KPageFlags(rawValue: 1 << 37)
    public static let arch = KPageFlags(rawValue: 1 << 38)
    public static let uncached = KPageFlags(rawValue: 1 << 39)
    public static let softDirty = KPageFlags(rawValue: 1 << 40)
    public static let arch2 = KPageFlags(rawValue: 1 << 41)
    public static let arch3 = KPageFlags(rawValue: 1 << 42)

    /// Bit number → name, for descriptions.
    public static let names: [(bit: Int, name: String)] = [
        (0, "LOCKED"), (1, "ERROR"), (2, "REFERENCED"), (3, "UPTODATE"), (4, "DIRTY"),
        (5, "LRU"), (6, "ACTIVE"), (7, "SLAB"), (8, "WRITEBACK"), (9, "RECLAIM"),
        (10, "BUDDY"), (11, "MMAP"), (12, "ANON"), (13, "SWAPCACHE"), (14, "SWAPBACKED"),
        (15, "COMPOUND_HEAD"), (16, "COMPOUND_TAIL"), (17, "HUGE"), (18, "UNEVICTABLE"),
        (19, "HWPOISON"), (20, "NOPAGE"), (21, "KSM"), (22, "THP"), (23, "OFFLINE"),
        (24, "ZERO_PAGE"), (25, "IDLE"), (26, "PGTABLE"),
        (32, "RESERVED"), (33, "MLOCKED"), (34, "MAPPEDTODISK"), (35, "PRIVATE"),
        (36, "PRIVATE_2"), (37, "OWNER_PRIVATE"), (38, "ARCH"), (39, "UNCACHED"),
        (40, "SOFTDIRTY"), (41, "ARCH_2"), (42, "ARCH_3"),
    ]

    /// True for any page of a compound page (head or tail).
    public var isCompound: Bool { !isDisjoint(with: [.compoundHead, .compoundTail]) }

    public var description: String {
        var out: [String] = []
        var rest = rawValue
        for (bit, name) in Self.names where rawValue & (1 << UInt64(bit)) != 0 {
            out.append(name)
            rest &= ~(1 << UInt64(bit))
        }
        if rest != 0 { out.append("0x" + String(rest, radix: 16)) }
        return out.isEmpty ? "none" : out.joined(separator: "|")
    }
}

/// One record of a snapshot's kpageflags file.
public struct KPageFlagsRecord: Hashable, Sendable {
    /// The largest kpagecount a page can have: the kernel's mapcount is a
    /// signed 32-bit counter.
    public static let maxCount = UInt64(Int32.max)

    public var pfn: UInt64
    public var flags: KPageFlags
    /// The /proc/kpagecount word (the page's mapcount).
    public var count: UInt64
    public init(pfn: UInt64, flags: KPageFlags, count: UInt64) {
        self.pfn = pfn
        self.flags = flags
        self.count = count
    }
    /// Size of one record on disk: three little-endian u64.
    public static let byteSize = 24
}
