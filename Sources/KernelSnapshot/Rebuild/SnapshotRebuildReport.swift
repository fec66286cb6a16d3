import MemoryModel

/// How `SnapshotRebuilder` builds the model.
public struct SnapshotRebuildOptions: Sendable {
    /// Page-table shape; nil picks x86-64 with 4 levels, or 5 when a VMA
    /// lies above the 4-level user limit (the gate VMA excepted).
    public var geometry: Geometry?
    /// Keep x86-64's `[vsyscall]` (the kernel's gate VMA, above the user
    /// limit): the rebuilt process gets the `AddressSpaceOptions.vsyscall`
    /// mode its captured permissions show (`--xp` xonly, `r-xp` emulate),
    /// so smaps and maps end with it as the kernel's do; it stays outside
    /// the mm's VMAs, as in the kernel. Off: the process gets none, and the
    /// rebuild warns `gateVMASkipped`.
    public var includeGateVMA: Bool
    /// Raise the mapcount of pages that processes outside the snapshot also
    /// map (kpagecount above what the rebuilt mappings give), so that
    /// `page_mapcount()`, pagemap's exclusive bit and smaps' PSS answer as
    /// the captured kernel did. Off: only warn.
    public var representExternalMappings: Bool
    /// Choose PTE dirty and young bits so that each VMA's smaps
    /// Shared_Dirty, Private_Dirty and Referenced come out as captured
    /// (see docs/SNAPSHOT-REBUILD.md). Off: the fixed rules only.
    public var matchSmapsCounters: Bool
    /// Use smaps AnonHugePages / ShmemPmdMapped / FilePmdMapped to tell a
    /// PMD-mapped THP from a fully PTE-mapped one (pagemap shows both the
    /// same). Off: every candidate run becomes a PMD mapping.
    public var pmdMappingsFromSmaps: Bool
    /// Folio memory the model may allocate beyond the captured frames.
    public var extraBudgetBytes: UInt64

    public init(geometry: Geometry? = nil, includeGateVMA: Bool = true, representExternalMappings: Bool = true,
                matchSmapsCounters: Bool = true, pmdMappingsFromSmaps: Bool = true, extraBudgetBytes: UInt64 = 1 << 30) {
        self.geometry = geometry
        self.includeGateVMA = includeGateVMA
        self.representExternalMappings = representExternalMappings
        self.matchSmapsCounters = matchSmapsCounters
        self.pmdMappingsFromSmaps = pmdMappingsFromSmaps
        self.extraBudgetBytes = extraBudgetBytes
    }
}

/// Something the rebuild could not reproduce exactly, aggregated: one
/// warning per (kind, pid, detail) with how many pages/entries/VMAs it
/// concerns and the first example.
public struct RebuildWarning: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, Hashable, Sendable, CaseIterable {
        /// A pagemap entry maps a PFN with no kpageflags record: not placed.
        case missingPageFlags
        /// The record shows no mappable page (free, slab, page table,
        /// offline, no page): freed between pagemap and kpageflags. Not placed.
        case pageNotMappable
        /// kpagecount is above the rebuilt mapcount: processes that were not
        /// captured map the page too (represented or not, per options).
        case externalMappings
        /// kpagecount is below the rebuilt mapcount (the capture raced).
        case mapcountBelowRebuilt
        /// pagemap's exclusive bit disagrees with kpagecount (capture raced).
        case exclusiveBitMismatch
        /// pagemap's file bit disagrees with the record's ANON flag.
        case anonFlagMismatch
        /// A VmFlags mnemonic the model has no flag for.
        case unknownVMFlag
        /// An entry the model cannot hold (device entries, swap types other
        /// than 0, hugetlb markers, …): not placed.
        case unexpressibleEntry
        /// Two frames claim the same page of a file.
        case pageCacheConflict
        /// A folio is in the swap cache but its slot is unknown (pagemap does
        /// not show it): flag and references kept, no slot.
        case swapCacheSlotUnknown
        /// A VMA's pages span several NUMA nodes; per-page nodes are unknown.
        case nodeUnknown
        /// A smaps counter (dirty, referenced, PMD-mapped) could not be met
        /// by the inference.
        case inferenceShortfall
        /// A VMA's Shared_*/Private_* split or Pss cannot be reached from
        /// the kpagecount words of its pages: the counts changed during the
        /// capture. The detail names the VMA, the field and the capture's
        /// stability record (`SnapshotFormat.capture`).
        case countsContradictSmaps
        /// The gate VMA (`[vsyscall]`) was left out, as
        /// `SnapshotRebuildOptions.includeGateVMA` asked.
        case gateVMASkipped
    }

    public var kind: Kind
    /// The process it concerns, nil for snapshot-wide warnings.
    public var pid: Int32?
    /// Pages, entries or VMAs concerned.
    public var count: Int
    /// What exactly (a flag name, a counter name, a reason).
    public var detail: String
    /// The first instance (address, PFN, VMA).
    public var example: String

    public init(kind: Kind, pid: Int32?, count: Int, detail: String, example: String) {
        self.kind = kind; self.pid = pid; self.count = count; self.detail = detail; self.example = example
    }

    public var description: String {
        var s = "warning: \(kind.rawValue)"
        if let pid { s += " (pid \(pid))" }
        s += ": \(count) × \(detail)"
        if !example.isEmpty { s += "; first: \(example)" }
        return s
    }
}

/// Counts of what the rebuild placed.
public struct RebuildStats: Hashable, Sendable {
    public var processes = 0
    public var vmas = 0
    /// Folios placed at captured frames, and their frames.
    public var folios = 0
    public var frames = 0
    public var pteMappings = 0
    public var pmdMappings = 0
    public var hugetlbMappings = 0
    /// PTEs mapping the zero page, and PFN mappings (no struct page).
    public var zeroPageMappings = 0
    public var pfnMappings = 0
    public var swapEntries = 0
    public var migrationEntries = 0
    public var markers = 0
    /// Pages given extra (uncaptured) mappings, and the sum of those mappings.
    public var externallyMappedPages = 0
    public var externalMappings = 0
    public var pageCachePages = 0
    /// Present words whose PFN could not be placed.
    public var unplacedEntries = 0
    /// PTE dirty / young bits the smaps matching changed from the fixed rules.
    public var dirtyBitsAdjusted = 0
    public var youngBitsCleared = 0
    public init() {}
}

/// What a rebuild did and could not do.
public struct RebuildReport: Sendable, CustomStringConvertible {
    public var warnings: [RebuildWarning]
    public var stats: RebuildStats
    /// Distinct captured PFNs that could not be placed.
    public var unplacedPFNs: Int

    public init(warnings: [RebuildWarning] = [], stats: RebuildStats = .init(), unplacedPFNs: Int = 0) {
        self.warnings = warnings; self.stats = stats; self.unplacedPFNs = unplacedPFNs
    }

    /// Total count of the warnings of `kind`.
    public func count(_ kind: RebuildWarning.Kind) -> Int {
        warnings.filter { $0.kind == kind }.reduce(0) { $0 + $1.count }
    }
    public func warnings(_ kind: RebuildWarning.Kind) -> [RebuildWarning] { warnings.filter { $0.kind == kind } }

    public var description: String {
        var s = "rebuilt \(stats.processes) process(es), \(stats.vmas) VMAs, \(stats.folios) folios (\(stats.frames) frames); "
        s += "\(stats.pteMappings) PTE, \(stats.pmdMappings) PMD, \(stats.hugetlbMappings) hugetlb, "
        s += "\(stats.zeroPageMappings) zero-page, \(stats.pfnMappings) PFN mappings; \(stats.swapEntries) swap, "
        s += "\(stats.migrationEntries) migration, \(stats.markers) marker entries; "
        s += "\(stats.externallyMappedPages) pages with \(stats.externalMappings) external mappings; "
        s += "\(unplacedPFNs) unplaced PFNs\n"
        for w in warnings { s += w.description + "\n" }
        return s
    }
}

/// One rebuilt process.
public struct RebuiltProcess: @unchecked Sendable {
    public let pid: Int32
    /// The command name (`Name:` of the captured status, else the first
    /// word of the cmdline without its directory, else empty).
    public let name: String
    public let addressSpace: AddressSpace
    /// For each line of the captured maps, the VMA built for it: the gate
    /// VMA's line has the address space's `gateVMA` (nil when skipped).
    public let vmas: [VMA?]
}

/// The result of `SnapshotRebuilder.rebuild`: one shared physical memory,
/// one address space per captured pid (same order as `format.pids`).
public struct RebuiltSnapshot: @unchecked Sendable {
    public let memory: PhysicalMemory
    public let processes: [RebuiltProcess]
    public let report: RebuildReport

    public func process(pid: Int32) -> RebuiltProcess? { processes.first { $0.pid == pid } }
}

/// Collects warnings keyed by (kind, pid, detail).
struct WarningCollector {
    private var order: [String] = []
    private var byKey: [String: RebuildWarning] = [:]

    mutating func add(_ kind: RebuildWarning.Kind, pid: Int32?, detail: String, example: @autoclosure () -> String, count: Int = 1) {
        let key = "\(kind.rawValue)|\(pid.map(String.init) ?? "-")|\(detail)"
        if var w = byKey[key] {
            w.count += count
            byKey[key] = w
        } else {
            order.append(key)
            byKey[key] = RebuildWarning(kind: kind, pid: pid, count: count, detail: detail, example: example())
        }
    }

    var warnings: [RebuildWarning] { order.map { byKey[$0]! } }
}
