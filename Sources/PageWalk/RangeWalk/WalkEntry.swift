import MemoryModel

/// The decoded attributes of a walked entry (of the first entry of a batch,
/// or-ed over the batch for attributes the walk was told not to respect).
public struct EntryAttributes: OptionSet, Hashable, Sendable {
    public let rawValue: UInt16
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// `pte_write()`.
    @inlinable public static var writable: EntryAttributes { EntryAttributes(rawValue: 1 << 0) }
    /// `pte_dirty()`.
    @inlinable public static var dirty: EntryAttributes { EntryAttributes(rawValue: 1 << 1) }
    /// `pte_young()`.
    @inlinable public static var young: EntryAttributes { EntryAttributes(rawValue: 1 << 2) }
    /// `pte_soft_dirty()` / `pte_swp_soft_dirty()`.
    @inlinable public static var softDirty: EntryAttributes { EntryAttributes(rawValue: 1 << 3) }
    /// `pte_uffd_wp()` / `pte_swp_uffd_wp()`.
    @inlinable public static var uffdWP: EntryAttributes { EntryAttributes(rawValue: 1 << 4) }
    /// `PageAnonExclusive()` of the first page, or `pte_swp_exclusive()`.
    @inlinable public static var anonExclusive: EntryAttributes { EntryAttributes(rawValue: 1 << 5) }
    /// `pte_special()`.
    @inlinable public static var special: EntryAttributes { EntryAttributes(rawValue: 1 << 6) }
    /// PROT_NONE: present without the hardware valid bit.
    @inlinable public static var protNone: EntryAttributes { EntryAttributes(rawValue: 1 << 7) }

    /// The attributes a batch can be told to respect.
    @inlinable public static var batchable: EntryAttributes { [.writable, .dirty, .young, .softDirty, .uffdWP] }
}

/// Where an entry really lives: the level of its page-table entries, and
/// whether they form an arm64 contiguous run (cont-PTE 64K, cont-PMD 32M).
public enum EntryLevel: Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case pte, contPTE, pmd, contPMD, pud, p4d, pgd

    @inlinable
    public init(_ level: PageTableLevel, contiguous: Bool = false) {
        switch level {
        case .pte: self = contiguous ? .contPTE : .pte
        case .pmd: self = contiguous ? .contPMD : .pmd
        case .pud: self = .pud
        case .p4d: self = .p4d
        case .pgd: self = .pgd
        }
    }

    /// The page-table level of the entries.
    @inlinable @inline(always)
    public var tableLevel: PageTableLevel {
        switch self {
        case .pte, .contPTE: return .pte
        case .pmd, .contPMD: return .pmd
        case .pud: return .pud
        case .p4d: return .p4d
        case .pgd: return .pgd
        }
    }

    public var description: String {
        switch self {
        case .pte: return "pte"
        case .contPTE: return "cont-pte"
        case .pmd: return "pmd"
        case .contPMD: return "cont-pmd"
        case .pud: return "pud"
        case .p4d: return "p4d"
        case .pgd: return "pgd"
        }
    }
}

/// What a walked range holds (the RFC's `PT_TYPE_*`).
public enum WalkContent: Hashable, @unchecked Sendable {
    /// Empty entries inside a VMA (`PT_TYPE_NONE`).
    case none
    /// A range outside any VMA (only when holes are asked for), with the
    /// depth `pte_hole` would report (0 pgd … 4 pte, -1 without tables).
    case hole(depth: Int)
    /// Present pages `firstPage ..< firstPage + pageCount` of a folio
    /// (`PT_TYPE_FOLIO`).
    case folio(Folio, firstPage: Int, pageCount: Int)
    /// Present entries without a normal page: PFN maps, the zero page
    /// unless asked for as a folio, kernel mappings (`PT_TYPE_PFN`).
    case pfn(UInt64)
    /// Present PTEs the walk did not look up (`RangeWalkOptions.lookUpFolios`
    /// off): a run that may span folios, whose pages are all normal or all
    /// `pte_special()` (the entry's `.special` attribute says which); the
    /// first entry's frame. Users that read residency or entry bits only
    /// (mincore) skip `vm_normal_folio()` per page, and batch updates resolve
    /// folios page by page where they need them.
    case present(firstPFN: UInt64)
    /// A PTE marker (`PT_TYPE_MARKER`).
    case marker(PTEMarker)
    /// Swap entries with consecutive offsets from `first` (`PT_TYPE_SWAP`).
    case swap(SwapEntry)
    /// A migration entry (`PT_TYPE_MIGRATION`); the folio when it exists.
    case migration(MigrationKind, pfn: UInt64, folio: Folio?)
    /// A device-private or device-exclusive entry (`PT_TYPE_DEVICE`).
    case device(exclusive: Bool, writable: Bool, pfn: UInt64, folio: Folio?)
    /// A hwpoison entry (`PT_TYPE_HWPOISON`).
    case hwpoison(pfn: UInt64)

    /// The kind of a content without its payload: what a client switches
    /// on or counts by.
    public enum Kind: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
        case none, hole, folio, pfn, present, marker, swap, migration, device, hwpoison
        public var description: String { rawValue }
    }

    /// This content's kind.
    @inlinable
    public var kind: Kind {
        switch self {
        case .none: return .none
        case .hole: return .hole
        case .folio: return .folio
        case .pfn: return .pfn
        case .present: return .present
        case .marker: return .marker
        case .swap: return .swap
        case .migration: return .migration
        case .device: return .device
        case .hwpoison: return .hwpoison
        }
    }
}

/// One entry yielded by the range walker: a run of page-table entries of
/// one kind, inside one table, one folio and one VMA.
public struct WalkEntry: @unchecked Sendable, CustomStringConvertible {
    /// The virtual range the entries cover (clamped to the walked range).
    public var start: UInt64
    public var end: UInt64
    public var level: EntryLevel
    /// How many page-table entries were batched into this one.
    public var count: Int
    /// The VMA, nil outside VMAs and in kernel-table walks.
    ///
    /// The entry does not keep its VMA alive (entries are built per page,
    /// with no reference count): the mmap lock does. Read by a thread that
    /// no longer holds the lock of an mm whose VMA list still has this VMA
    /// (an entry kept past its loop, or past `munmap` of its VMA), it throws
    /// `.lockNotHeld` instead of reading freed memory.
    public var vma: VMA? {
        get throws(PageWalkError) {
            guard let p = vmaPointer else { return nil }
            if let v = MmapLockHolds.heldVMA(p, at: start) { return v }
            throw .lockNotHeld("the VMA of entry 0x\(String(start, radix: 16))-0x\(String(end, radix: 16)): the entry outlived the mmap lock or its VMA")
        }
    }
    /// The VMA without a reference count (entries are built per page).
    @usableFromInline var vmaPointer: UnsafeRawPointer?
    /// The raw word of the first entry.
    public var raw: UInt64
    /// The attributes the entry words carry: all of `attributes` but the
    /// anon-exclusive flag of a present folio's page, which is a page flag
    /// (read from the memmap by `attributes`). Decoded from the entry word
    /// when read; producers that test one entry bit per entry (dirty, young,
    /// soft-dirty, uffd-wp) use `entryAttributesContain(_:)`.
    @inlinable @inline(always) public var entryAttributes: EntryAttributes { attributeWord.attributes }
    /// `entryAttributes.contains(a)`, decoding only the bits `a` names: a
    /// producer testing one attribute per entry pays for one bit test.
    @inlinable @inline(always)
    public func entryAttributesContain(_ a: EntryAttributes) -> Bool { attributeWord.contains(a) }
    @usableFromInline var attributeWord: AttributeWord
    public var content: WalkContent

    /// The decoded attributes. For present pages of an anonymous folio,
    /// anon-exclusive is `PageAnonExclusive()` of the first page, read when
    /// asked (while the walk holds the entry's lock, as for any folio state):
    /// walks that never look at it do not pay a memmap read per entry.
    @inlinable
    public var attributes: EntryAttributes {
        guard case .folio(let f, let first, _) = content,
              f.test(.anon), f.pageFlags(first).contains(.anonExclusive) else { return entryAttributes }
        return entryAttributes.union(.anonExclusive)
    }

    @inlinable
    init(start: UInt64, end: UInt64, level: EntryLevel, count: Int, vmaPointer: UnsafeRawPointer?, raw: UInt64,
         attributeWord: AttributeWord, content: WalkContent) {
        self.start = start; self.end = end; self.level = level; self.count = count
        self.vmaPointer = vmaPointer
        self.raw = raw; self.attributeWord = attributeWord; self.content = content
    }

    @inlinable
    init(start: UInt64, end: UInt64, level: EntryLevel, count: Int, vma: VMA?, raw: UInt64,
         attributes: EntryAttributes, content: WalkContent) {
        self.init(start: start, end: end, level: level, count: count,
                  vmaPointer: vma.map { UnsafeRawPointer(Unmanaged.passUnretained($0).toOpaque()) }, raw: raw,
                  attributeWord: AttributeWord(decoded: attributes), content: content)
    }

    /// Bytes covered.
    @inlinable public var size: UInt64 { end - start }
    /// 4K pages covered.
    /// (Wrapping: an entry always ends above its start.)
    @inlinable public var pageCount: Int { Int(truncatingIfNeeded: (end &- start) >> Geometry.pageShift) }

    public var description: String {
        var s = "0x\(String(start, radix: 16))-0x\(String(end, radix: 16)) \(level) x\(count) "
        switch content {
        case .none: s += "none"
        case .hole(let d): s += "hole depth \(d)"
        case .folio(let f, let first, let n): s += "folio pfn 0x\(String(f.pfn, radix: 16)) order \(f.order) pages \(first)+\(n)"
        case .pfn(let p): s += "pfn 0x\(String(p, radix: 16))"
        case .present(let p): s += "present pfn 0x\(String(p, radix: 16))"
        case .marker(let m): s += "marker \(m.rawValue)"
        case .swap(let e): s += "\(e)"
        case .migration(let k, let p, _): s += "migration \(k) pfn 0x\(String(p, radix: 16))"
        case .device(let x, let w, let p, _): s += "device \(x ? "exclusive" : "private")\(w ? " write" : "") pfn 0x\(String(p, radix: 16))"
        case .hwpoison(let p): s += "hwpoison pfn 0x\(String(p, radix: 16))"
        }
        if !attributes.isEmpty { s += " attrs 0x\(String(attributes.rawValue, radix: 16))" }
        return s
    }
}
