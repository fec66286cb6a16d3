import Synchronization
import MemoryModel

/// A reference folio's identity: assigned when the reference creates the
/// folio, never reused. The checker binds it to the real head PFN.
public typealias ReferenceFolioID = Int
/// A reference swap slot's identity; the checker binds it to a real
/// `(type, offset)`.
public typealias ReferenceSlotID = Int

/// A poisoned frame: the folio and page that were poisoned (the folio itself
/// is usually gone; the frame is never reused).
public struct ReferenceFrame: Hashable, Sendable, CustomStringConvertible {
    public let folio: ReferenceFolioID
    public let page: Int
    public var description: String { "frame(f\(folio)+\(page))" }
}

/// What a present page maps.
public enum ReferenceTarget: Hashable, Sendable, CustomStringConvertible {
    /// Page `page` of a normal folio.
    case folio(ReferenceFolioID, page: Int)
    /// The shared zero page.
    case zero
    /// Page `page` of the huge zero folio.
    case hugeZero(page: Int)
    /// A raw frame (PFN map), no folio.
    case pfn(UInt64)

    public var description: String {
        switch self {
        case .folio(let f, let p): return "f\(f)+\(p)"
        case .zero: return "zero"
        case .hugeZero(let p): return "hugezero+\(p)"
        case .pfn(let p): return "pfn 0x" + String(p, radix: 16)
        }
    }
}

/// A present mapping of one page.
public struct ReferencePresent: Hashable, Sendable {
    public var target: ReferenceTarget
    /// The compared attributes: writable, dirty, young, soft-dirty, uffd-wp, special.
    public var attrs: LeafAttributes
    /// The level of the leaf: PTE, PMD (THP, hugetlb 2M/32M) or PUD (1G).
    public var level: PageTableLevel
    /// Mapped as a whole folio (PMD/PUD THP and every hugetlb mapping):
    /// counts in the entire mapcount, not the page's own.
    public var entire: Bool

    public init(target: ReferenceTarget, attrs: LeafAttributes, level: PageTableLevel = .pte, entire: Bool = false) {
        self.target = target
        self.attrs = attrs.intersection(ReferenceModel.comparedAttributes)
        self.level = level
        self.entire = entire
    }
}

/// The expected state of one virtual page.
public enum ExpectedPage: Hashable, Sendable, CustomStringConvertible {
    case present(ReferencePresent)
    case swap(slot: ReferenceSlotID, bits: SwapPTEBits)
    /// A migration entry naming `page` of `folio`; `level` is .pmd for a PMD
    /// migration entry (its PFN is the folio's head).
    case migration(MigrationKind, folio: ReferenceFolioID, page: Int, young: Bool, dirty: Bool, bits: SwapPTEBits, level: PageTableLevel)
    case devicePrivate(folio: ReferenceFolioID, writable: Bool, bits: SwapPTEBits)
    case deviceExclusive(folio: ReferenceFolioID, page: Int, bits: SwapPTEBits)
    case hwpoison(ReferenceFrame, bits: SwapPTEBits)
    case marker(PTEMarker)

    /// The zero page, as `ExpectedPage` (convenience for tests).
    public var isZeroPage: Bool {
        if case .present(let p) = self, case .zero = p.target { return true }
        return false
    }

    public var description: String {
        switch self {
        case .present(let p):
            return "present(\(p.target) \(p.level)\(p.entire ? " entire" : "") attrs=\(ReferenceModel.describe(p.attrs)))"
        case .swap(let s, let b): return "swap(s\(s) bits=\(b.rawValue))"
        case .migration(let k, let f, let p, let y, let d, let b, let l):
            return "migration(\(k) f\(f)+\(p) young=\(y) dirty=\(d) bits=\(b.rawValue) \(l))"
        case .devicePrivate(let f, let w, let b): return "device-private(f\(f) w=\(w) bits=\(b.rawValue))"
        case .deviceExclusive(let f, let p, let b): return "device-exclusive(f\(f)+\(p) bits=\(b.rawValue))"
        case .hwpoison(let fr, let b): return "hwpoison(\(fr) bits=\(b.rawValue))"
        case .marker(let m): return "marker(\(m.rawValue))"
        }
    }
}

/// A folio of the reference: its shape and tracked flags. Counts are
/// derived from the page states that name it (kept incrementally by
/// `ReferenceModel.set`).
public struct ReferenceFolio: Sendable {
    public let id: ReferenceFolioID
    public let order: Int
    public var node: Int
    /// The tracked subset of the folio flags (`ReferenceModel.trackedFlags`).
    public var flags: PageFlags
    /// `PageAnonExclusive` per page.
    public var exclusive: [Bool]
    /// `PageHWPoison` per page.
    public var poisoned: [Bool]
    /// PTE mappings (and device entries) per page.
    public var pteMaps: [Int]
    /// PMD/PUD/hugetlb mappings of the whole folio.
    public var entireMaps = 0
    /// References held by migration entries.
    public var migrationRefs = 0
    /// Page-cache slots holding the folio.
    public var cacheRefs = 0
    /// Swap-cache slots holding pages of the folio.
    public var swapCacheRefs = 0

    public var pageCount: Int { 1 << order }
    public var mapcount: Int { pteMaps.reduce(0, +) + entireMaps }
    public func pageMapcount(_ i: Int) -> Int { pteMaps[i] + entireMaps }
    /// The refcount under the model's conventions: one per PTE mapping, per
    /// entire mapping, per migration entry, per page-cache and swap-cache slot.
    public var refcount: Int { pteMaps.reduce(0, +) + entireMaps + migrationRefs + cacheRefs + swapCacheRefs }
    public var isAnon: Bool { flags.contains(.anon) }
    public var isKSM: Bool { flags.contains(.ksm) }
    public var isHugetlb: Bool { flags.contains(.hugetlb) }
    public var isLarge: Bool { order > 0 }
}

/// A file (page cache) of the reference.
public final class ReferenceFile: @unchecked Sendable {
    public let id: Int
    public let isShmem: Bool
    /// The real file, when the test supplied it.
    public let real: FileObject?
    /// page index → folio (order-0 pages; a hugetlb folio sits at its head index).
    public internal(set) var cache: [UInt64: ReferenceFolioID] = [:]
    init(id: Int, isShmem: Bool, real: FileObject?) { self.id = id; self.isShmem = isShmem; self.real = real }
}

/// What backs a reference VMA.
public enum ReferenceBacking: Sendable {
    case anonymous
    case file(ReferenceFile, pageOffset: UInt64)
    case shmem(ReferenceFile, pageOffset: UInt64)
    case pfnRange(firstPFN: UInt64)

    var file: ReferenceFile? {
        switch self {
        case .file(let f, _), .shmem(let f, _): return f
        default: return nil
        }
    }
    var pageOffset: UInt64 {
        switch self {
        case .file(_, let o), .shmem(_, let o): return o
        default: return 0
        }
    }
}

/// A reference VMA.
public final class ReferenceVMA: @unchecked Sendable, CustomStringConvertible {
    public internal(set) var start: UInt64
    public internal(set) var end: UInt64
    public internal(set) var flags: VMFlags
    public let backing: ReferenceBacking
    public internal(set) var name: String?
    public let policy: MemoryPolicy
    public let protectionKey: Int
    public let hugePageSize: UInt64
    /// Which anon_vma is attached (0: none): kept by split parts, new in a
    /// fork child; VMAs with different ones do not merge.
    var anonVMA: Int
    public internal(set) var hasAnonVMA: Bool {
        get { anonVMA != 0 }
        set { anonVMA = newValue ? (anonVMA != 0 ? anonVMA : ReferenceVMA.newAnonVMA()) : 0 }
    }
    private static let anonVMASource = Atomic<Int>(0)
    static func newAnonVMA() -> Int { anonVMASource.add(1, ordering: .relaxed).newValue }

    init(start: UInt64, end: UInt64, flags: VMFlags, backing: ReferenceBacking, name: String?, policy: MemoryPolicy,
         protectionKey: Int, hugePageSize: UInt64, hasAnonVMA: Bool, anonVMA: Int = 0) {
        self.start = start; self.end = end; self.flags = flags; self.backing = backing; self.name = name
        self.policy = policy; self.protectionKey = protectionKey; self.hugePageSize = hugePageSize
        self.anonVMA = anonVMA != 0 ? anonVMA : (hasAnonVMA ? ReferenceVMA.newAnonVMA() : 0)
    }

    func copy(start s: UInt64, end e: UInt64) -> ReferenceVMA {
        let b: ReferenceBacking
        switch backing {
        case .file(let f, let o): b = .file(f, pageOffset: o + (s - start) / Geometry.pageSize)
        case .shmem(let f, let o): b = .shmem(f, pageOffset: o + (s - start) / Geometry.pageSize)
        case .pfnRange(let p): b = .pfnRange(firstPFN: p + (s - start) / Geometry.pageSize)
        case .anonymous: b = .anonymous
        }
        return ReferenceVMA(start: s, end: e, flags: flags, backing: b, name: name, policy: policy,
                            protectionKey: protectionKey, hugePageSize: hugePageSize, hasAnonVMA: hasAnonVMA, anonVMA: anonVMA)
    }

    public var isAnonymous: Bool { if case .anonymous = backing { return true } else { return false } }
    public var isHugetlb: Bool { flags.contains(.hugetlb) }
    public var isPFNMap: Bool { flags.contains(.pfnMap) }
    public var isShared: Bool { flags.contains(.shared) || flags.contains(.mayShare) }
    public var isPrivate: Bool { !flags.contains(.mayShare) }
    var file: ReferenceFile? { backing.file }
    func pageIndex(_ a: UInt64) -> UInt64 { backing.pageOffset + (a - start) / Geometry.pageSize }
    public var description: String { "rvma(0x\(String(start, radix: 16))-0x\(String(end, radix: 16)))" }
}

/// One process of the reference: VMAs, the flat page map, and which 2M
/// regions hold a PTE table (the one piece of table state that changes
/// behaviour: a THP needs a none PMD, and empty PTE tables are reclaimed).
public final class ReferenceProcess: @unchecked Sendable {
    public let pid: Int
    let family: Int
    public internal(set) var vmas: [ReferenceVMA] = []
    /// The gate VMA (`get_gate_vma()`), outside `vmas`.
    public internal(set) var gateVMA: ReferenceVMA?
    /// page address → expected state; absent means none.
    public internal(set) var pages: [UInt64: ExpectedPage] = [:]
    /// 2M-aligned bases of regions with a PTE table.
    public internal(set) var pteTables: Set<UInt64> = []
    /// 64K-aligned bases of folded arm64 contiguous-PTE blocks.
    public internal(set) var foldedBlocks: Set<UInt64> = []
    /// Blocks whose last page was written by the current operation.
    var foldCandidates: Set<UInt64> = []
    public internal(set) var alive = true
    init(pid: Int, family: Int) { self.pid = pid; self.family = family }

    public func vma(containing a: UInt64) -> ReferenceVMA? { vmas.first { $0.start <= a && a < $0.end } }
    func vmaIndex(containing a: UInt64) -> Int? { vmas.firstIndex { $0.start <= a && a < $0.end } }
    func vmas(intersecting s: UInt64, _ e: UInt64) -> [ReferenceVMA] { vmas.filter { $0.start < e && $0.end > s } }
}

/// An independent, page-granular model of what `AddressSpace` mutations
/// produce: per process a flat map page → expected state, folios and swap
/// slots with abstract identities, page caches and the KSM stable tree. No
/// page tables are used; counts are derived from the page states.
///
/// Driven by the same high-level operations as `AddressSpace` (each in the
/// ReferenceModel+Concern.swift file named like the model's
/// AddressSpace+Concern.swift); compared with the real address spaces by
/// `ReferenceChecker`.
public final class ReferenceModel: @unchecked Sendable {
    public let geometry: Geometry
    public let options: AddressSpaceOptions
    public let nodeCount: Int
    public internal(set) var processes: [ReferenceProcess] = []
    public internal(set) var folios: [ReferenceFolioID: ReferenceFolio] = [:]
    /// Live swap slots: references from swap entries, and the cached page.
    public internal(set) var slotCounts: [ReferenceSlotID: Int] = [:]
    public internal(set) var swapCache: [ReferenceSlotID: (folio: ReferenceFolioID, page: Int)] = [:]
    var ksmStable: [Int: ReferenceFolioID] = [:]
    var files: [ObjectIdentifier: ReferenceFile] = [:]
    public internal(set) var allFiles: [ReferenceFile] = []
    var nextFolio = 1, nextSlot = 1, nextFile = 1, nextFamily = 1

    // Bindings learned by the checker (reference identity ↔ real identity).
    var folioPFN: [ReferenceFolioID: UInt64] = [:]
    var pfnFolio: [UInt64: ReferenceFolioID] = [:]
    var slotOffset: [ReferenceSlotID: UInt64] = [:]
    var offsetSlot: [UInt64: ReferenceSlotID] = [:]
    var framePFN: [ReferenceFrame: UInt64] = [:]
    var fileBinding: [Int: ObjectIdentifier] = [:]

    /// Attributes of present entries that the reference predicts.
    public static let comparedAttributes: LeafAttributes = [.writable, .dirty, .young, .special, .softDirty, .uffdWP]
    /// Folio flags that the reference predicts.
    public static let trackedFlags: PageFlags = [.anon, .swapBacked, .ksm, .hugetlb, .swapCache, .mlocked, .unevictable,
                                                 .dirty, .zoneDevice, .devicePrivate, .idle]
    static let pmdSize: UInt64 = 2 << 20

    public init(geometry: Geometry, options: AddressSpaceOptions = .init(), nodes: Int = 1) {
        self.geometry = geometry
        self.options = options
        self.nodeCount = nodes
    }

    /// A new, independent process (its own fork family), as `AddressSpace.init`.
    @discardableResult
    public func addProcess(pid: Int) -> ReferenceProcess {
        let p = ReferenceProcess(pid: pid, family: nextFamily)
        nextFamily += 1
        p.gateVMA = newGateVMA()
        processes.append(p)
        return p
    }

    public func process(_ pid: Int) -> ReferenceProcess? { processes.first { $0.pid == pid && $0.alive } }

    var tracksSoftDirty: Bool { options.softDirty && geometry.layout.supportsSoftDirty }

    static func describe(_ a: LeafAttributes) -> String {
        var s: [String] = []
        if a.contains(.writable) { s.append("w") }
        if a.contains(.dirty) { s.append("d") }
        if a.contains(.young) { s.append("y") }
        if a.contains(.special) { s.append("special") }
        if a.contains(.softDirty) { s.append("sd") }
        if a.contains(.uffdWP) { s.append("uffd") }
        return s.joined(separator: ",")
    }

    // MARK: Folios

    func newFolio(order: Int, node: Int, flags: PageFlags) -> ReferenceFolioID {
        let id = nextFolio
        nextFolio += 1
        let n = 1 << order
        folios[id] = ReferenceFolio(id: id, order: order, node: node,
                                    flags: flags.intersection(ReferenceModel.trackedFlags),
                                    exclusive: Array(repeating: false, count: n), poisoned: Array(repeating: false, count: n),
                                    pteMaps: Array(repeating: 0, count: n))
        return id
    }

    // MARK: The one state setter (keeps derived counts)

    func get(_ p: ReferenceProcess, _ a: UInt64) -> ExpectedPage? { p.pages[a] }

    /// Writes page `a`'s state as an entry write does: a change unfolds an
    /// arm64 contiguous block the page is in, and may make its block a fold
    /// candidate (not with `tryFold: false`, for access-flag paths);
    /// `rewrite` counts an unchanged state as written too.
    func set(_ p: ReferenceProcess, _ a: UInt64, _ s: ExpectedPage?, tryFold: Bool = true, rewrite: Bool = false) {
        let old = p.pages[a]
        if old != s || rewrite { noteContPTEWrite(p, a, s, tryFold: tryFold) }
        if let old { contribute(old, -1) }
        p.pages[a] = s
        if let s { contribute(s, 1) }
    }

    private func contribute(_ s: ExpectedPage, _ d: Int) {
        switch s {
        case .present(let pp):
            guard case .folio(let f, let i) = pp.target else { return }
            if pp.entire { if i == 0 { folios[f]!.entireMaps += d } } else { folios[f]!.pteMaps[i] += d }
        case .migration(_, let f, let i, _, _, _, let level):
            if level == .pte || i == 0 { folios[f]!.migrationRefs += d }
        case .devicePrivate(let f, _, _):
            folios[f]!.pteMaps[0] += d
        case .deviceExclusive(let f, let i, _):
            folios[f]!.pteMaps[i] += d
        case .swap(let slot, _):
            slotCounts[slot, default: 0] += d
        case .hwpoison, .marker:
            break
        }
    }

    /// Frees folios and slots nothing refers to any more (the real model
    /// frees on the last put; the reference collects after each operation).
    func collect() {
        foldContPTECandidates()
        for (id, f) in folios where f.refcount == 0 {
            folios[id] = nil
            if let pfn = folioPFN.removeValue(forKey: id) { pfnFolio[pfn] = nil }
            for (k, v) in ksmStable where v == id { ksmStable[k] = nil }
        }
        for (slot, c) in slotCounts where c == 0 && swapCache[slot] == nil {
            slotCounts[slot] = nil
            if let off = slotOffset.removeValue(forKey: slot) { offsetSlot[off] = nil }
        }
    }

    // MARK: Derived views

    /// Pages of a folio's PTE mappings and entire mappings across all
    /// processes (what `folio_mapcount()` must say).
    public func expectedMapcount(_ f: ReferenceFolioID) -> Int? { folios[f]?.mapcount }
    public func expectedRefcount(_ f: ReferenceFolioID) -> Int? { folios[f]?.refcount }

    /// The RSS and table counters a process must show.
    public func expectedCounters(_ p: ReferenceProcess) -> MMCounters {
        var c = MMCounters()
        var deposits = 0
        for (a, s) in p.pages {
            switch s {
            case .present(let pp):
                guard case .folio(let f, let i) = pp.target, let fo = folios[f] else {
                    if case .hugeZero = pp.target, a % ReferenceModel.pmdSize == 0 { deposits += 1 }
                    continue
                }
                if fo.isHugetlb {
                    if pp.entire && i == 0 { c.hugetlbBytes += UInt64(Geometry.pageSize) << UInt64(fo.order) }
                    continue
                }
                if pp.level == .pmd && a % ReferenceModel.pmdSize == 0 && fo.isAnon { deposits += 1 }
                add(&c, fo, 1)
            case .migration(_, let f, let i, _, _, _, let level):
                guard let fo = folios[f] else { continue }
                if level == .pmd && i == 0 && fo.isAnon { deposits += 1 }
                add(&c, fo, 1)
            case .devicePrivate(let f, _, _), .deviceExclusive(let f, _, _):
                if let fo = folios[f] { add(&c, fo, 1) }
            case .swap:
                c.swapEntries += 1
            case .hwpoison, .marker:
                break
            }
        }
        c.pteTables = p.pteTables.count + deposits
        return c
    }

    private func add(_ c: inout MMCounters, _ f: ReferenceFolio, _ n: Int) {
        if f.isHugetlb { return }
        if f.isAnon { c.anon += n } else if f.flags.contains(.swapBacked) { c.shmem += n } else { c.file += n }
    }

    /// Live folios (the real `memory.folioCount` must agree).
    public var liveFolioCount: Int { folios.count }
    /// Live swap slots (the real `memory.swap.usedSlots` must agree).
    public var liveSlotCount: Int { slotCounts.count }
}
