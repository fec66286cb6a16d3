import MemoryModel
import Synchronization
import PageWalk
import ProcFS
import LiveKernel

/// This machine's kernel facts, read once at start-up.
let hostFacts = HostFacts.current()

/// What is done over a workload.
enum Work: String, CaseIterable, Codable {
    case raw = "raw walk"
    case smaps = "smaps"
    case smapsRollup = "smaps_rollup"
    case numaMaps = "numa_maps"
    case pagemap = "pagemap"
    /// `echo 1 > clear_refs`: every entry made old, folios unreferenced.
    case clearRefs = "clear_refs"
    /// mincore(2) over every VMA of the workload.
    case mincore = "mincore"
    /// mlock(2) then munlock(2) over every VMA of the workload.
    case mlock = "mlock+munlock"
    /// madvise(MADV_COLD) over every VMA of the workload (after the first
    /// sample the pages are old already, in the model and the kernel alike:
    /// each sample walks and tests every entry).
    case madvCold = "madv_cold"

    /// The /proc producers (the kernel has no raw walk to time).
    static let producers: [Work] = [.smaps, .smapsRollup, .numaMaps, .pagemap]
    /// The walker users that change (or, mincore, look at) what they walk,
    /// run by the model's update walk and callback twins and by the kernel
    /// on real memory. They have no unbatched range form.
    static let writers: [Work] = [.clearRefs, .mincore, .mlock, .madvCold]
    /// What the kernel row measures.
    static let kernelMeasured: [Work] = producers + writers

    var isWriter: Bool { Work.writers.contains(self) }
    /// What the specialized callback walker runs.
    static let specializedWorks: [Work] = [.raw, .smaps, .smapsRollup]
}

/// Who walks.
enum Walker: String, CaseIterable, Codable {
    case callback = "callback"
    case rangeBatched = "range batched"
    case rangeUnbatched = "range unbatched"
    /// The callback walker with its handlers as a generic parameter
    /// (`MMWalkOpsProtocol`), specialized and inlined: raw walk, smaps and
    /// smaps_rollup only.
    case specialized = "specialized callback"

    /// Who runs `work`: the writers have no unbatched range form, and the
    /// specialized callback only runs the raw walk and the smaps producers.
    static func walkers(for work: Work) -> [Walker] {
        if work.isWriter { return [.callback, .rangeBatched] }
        return Work.specializedWorks.contains(work) ? allCases : [.callback, .rangeBatched, .rangeUnbatched]
    }

    /// The producer options, printing `ProtectionKey:` when this host's
    /// kernel does, so that model and kernel produce the same bytes.
    var procOptions: ProcOptions {
        var o: ProcOptions
        switch self {
        case .callback: o = ProcOptions(walker: .callback)
        case .rangeBatched: o = ProcOptions(walker: .range, batching: true)
        case .rangeUnbatched: o = ProcOptions(walker: .range, batching: false)
        case .specialized: o = ProcOptions(walker: .callback, specialized: true)
        }
        o.protectionKeys = hostFacts.printsProtectionKey
        return o
    }
}

/// Pages counted by kind by the raw walks (`WalkContent` cases).
struct KindCounts: Equatable, CustomStringConvertible {
    var none = 0, folio = 0, pfn = 0, swap = 0, migration = 0, device = 0, hwpoison = 0, marker = 0, hole = 0

    var total: Int { none + folio + pfn + swap + migration + device + hwpoison + marker + hole }
    /// Everything but `hole` (the callback walker's `pte_hole` also reports
    /// gaps between VMAs, which the range walker is not asked for).
    var comparable: [Int] { [none, folio, pfn, swap, migration, device, hwpoison, marker] }
    var description: String {
        "none \(none) folio \(folio) pfn \(pfn) swap \(swap) migration \(migration) device \(device) hwpoison \(hwpoison) marker \(marker)"
    }

    @inline(__always)
    mutating func add(_ leaf: SoftLeaf, _ n: Int) {
        switch leaf {
        case .swap: swap &+= n
        case .migration: migration &+= n
        case .devicePrivate, .deviceExclusive: device &+= n
        case .hwpoison: hwpoison &+= n
        case .marker: marker &+= n
        }
    }
}

// MARK: Raw walks

/// The range walker's raw walk: a for-in adding `entry.pageCount` per kind.
func rawRange(_ s: ModelSpace, batching: Bool) throws -> KindCounts {
    // Attribute differences do not matter to a count: batch as far as folios allow.
    let opts = RangeWalkOptions(batching: batching, respect: [])
    return try s.mm.withMmapReadLock { lock in
        var c = KindCounts()
        for e in try s.mm.walk(s.span, lock: lock, options: opts) {
            let n = e.pageCount
            switch e.content {
            case .none: c.none &+= n
            case .hole: c.hole &+= n
            case .folio: c.folio &+= n
            case .pfn: c.pfn &+= n
            case .present: c.folio &+= n   // not produced: this walk looks folios up
            case .swap: c.swap &+= n
            case .migration: c.migration &+= n
            case .device: c.device &+= n
            case .hwpoison: c.hwpoison &+= n
            case .marker: c.marker &+= n
            }
        }
        return c
    }
}

/// The callback walker's raw walk: `pmd_entry` counts PMD leaves,
/// `pte_entry` classifies each PTE as the range walker would (a normal page
/// is a folio, a special or folio-less one a pfn), `hugetlb_entry` the
/// hugetlb leaves, `pte_hole` the empty parts. The handlers are
/// `RawCountOps`'s, as closures.
func rawCallback(_ s: ModelSpace) throws -> KindCounts {
    let h = RawCountOps(s.mm)
    var ops = MMWalkOps<KindCounts>()
    ops.pmdEntry = { h.pmdEntry($0, $1, $2, &$3) }
    ops.pteEntry = { h.pteEntry($0, $1, $2, &$3) }
    ops.pteHole = { h.pteHole($0, $1, $2, &$3) }
    ops.hugetlbEntry = { h.hugetlbEntry($0, $1, $2, $3, &$4) }
    var counts = KindCounts()
    try s.mm.withMmapReadLock { _ in
        _ = try walkPageRange(s.mm, s.span.lowerBound, s.span.upperBound, ops: ops, private: &counts)
    }
    return counts
}

/// The same raw walk on the specialized callback walker: `RawCountOps` as
/// the generic parameter, its handlers inlined into the level functions.
func rawSpecialized(_ s: ModelSpace) throws -> KindCounts {
    var counts = KindCounts()
    try s.mm.withMmapReadLock { _ in
        _ = try walkPageRange(s.mm, s.span.lowerBound, s.span.upperBound, ops: RawCountOps(s.mm), private: &counts)
    }
    return counts
}

func rawWalk(_ s: ModelSpace, _ walker: Walker) throws -> KindCounts {
    switch walker {
    case .callback: return try rawCallback(s)
    case .rangeBatched: return try rawRange(s, batching: true)
    case .rangeUnbatched: return try rawRange(s, batching: false)
    case .specialized: return try rawSpecialized(s)
    }
}

// MARK: Producers

/// Runs one producer over one address space into `sink`; returns the bytes.
func produce<S: ProcSink>(_ work: Work, _ s: ModelSpace, _ walker: Walker, into sink: S) throws -> S {
    var w = ProcWriter(sink)
    let o = walker.procOptions
    switch work {
    case .raw, .clearRefs, .mincore, .mlock, .madvCold: break
    case .smaps: try Smaps.write(s.mm, to: &w, options: o)
    case .smapsRollup: try SmapsRollup.write(s.mm, to: &w, options: o)
    case .numaMaps: try NumaMaps.write(s.mm, to: &w, options: o)
    case .pagemap:
        for r in s.ranges { try Pagemap.read(s.mm, r, privileged: true, to: &w, options: o) }
    }
    return w.finish()
}

/// One run of a writer over one address space, on the walker's users.
func writerRun(_ work: Work, _ s: ModelSpace, _ walker: Walker) throws -> Int {
    let kind: WalkerKind = walker == .callback ? .callback : .range
    switch work {
    case .clearRefs:
        return try s.mm.clearRefs(.all, walker: kind).flushCount + 1
    case .mincore:
        var n = 0
        for r in s.ranges { n &+= try mincore(s.mm, r.lowerBound, r.upperBound - r.lowerBound, walker: kind).count }
        return n
    case .mlock:
        for r in s.ranges {
            try s.mm.mlock(r.lowerBound, r.upperBound, walker: kind)
            try s.mm.munlock(r.lowerBound, r.upperBound, walker: kind)
        }
        return s.ranges.count
    case .madvCold:
        var n = 0
        for r in s.ranges { n &+= try madviseCold(s.mm, r.lowerBound, r.upperBound, walker: kind).flushes.count }
        return n
    default:
        return 0
    }
}

/// One timed run of `work` by `walker` over the whole workload: a number
/// that depends on the result (bytes written, pages counted).
func modelRun(_ work: Work, _ wl: ModelWorkload, _ walker: Walker) -> Int {
    var r = 0
    do {
        for s in wl.spaces {
            if work.isWriter {
                r &+= try writerRun(work, s, walker)
            } else if work == .raw {
                r &+= try rawWalk(s, walker).total
            } else {
                r &+= try produce(work, s, walker, into: CountingSink()).count
            }
        }
    } catch {
        fail("\(wl.kind.rawValue) \(work.rawValue) \(walker.rawValue): \(error)")
    }
    return r
}

/// Checks, untimed, that the three walkers agree: the same page counts by
/// kind and byte-identical producer output. Returns the problems found.
func verifyWalkers(_ wl: ModelWorkload) -> [String] {
    var problems: [String] = []
    do {
        for (i, s) in wl.spaces.enumerated() {
            let raws = try Walker.allCases.map { try rawWalk(s, $0) }
            for (k, r) in raws.enumerated().dropFirst() where r.comparable != raws[0].comparable
                || (Walker.allCases[k] == .specialized && r != raws[0]) {
                problems.append("space \(i) raw walk: \(Walker.allCases[k].rawValue) counts \(r) vs callback \(raws[0])")
            }
            let vectors = try [WalkerKind.callback, .range].map { k in
                try s.ranges.map { try mincore(s.mm, $0.lowerBound, $0.upperBound - $0.lowerBound, walker: k) }
            }
            if vectors[0] != vectors[1] { problems.append("space \(i) mincore: the range walker's vectors differ from the callback's") }
            for work in Work.producers {
                let walkers = Walker.walkers(for: work)
                let outs = try walkers.map { try produce(work, s, $0, into: ByteCollector()).bytes }
                for (k, o) in outs.enumerated().dropFirst() where o != outs[0] {
                    problems.append("space \(i) \(work.rawValue): \(walkers[k].rawValue) output (\(o.count) B) differs from callback (\(outs[0].count) B)")
                }
            }
        }
    } catch {
        problems.append("verification failed: \(error)")
    }
    return problems
}

// MARK: The floor

/// What any walk that resolves each page's folio must read, and nothing
/// else: for each present PTE of the span, its memmap record (through
/// `MemmapCursor`, as the range walker does). No entries, no locks, no
/// batching: a bare loop over the tables. Its time per page is the floor a
/// per-page walk of this shape cannot go below on this machine; the raw
/// walks are compared with it.
func rawFloor(_ s: ModelSpace) -> Int {
    let mm = s.mm
    let g = mm.geometry
    let layout = g.layout
    let levels = mm.tableLevels
    var folios = MemmapCursor(mm.memory)
    var found = 0
    let pmdSpan = g.entrySize(.pmd)
    var a = s.span.lowerBound
    while a < s.span.upperBound {
        // Descend to the PTE table of `a` (upper tables are not timed apart:
        // one descent per 512 pages).
        var table = mm.root
        var ptes: UnsafeMutablePointer<Atomic<UInt64>>? = nil
        for level in levels.dropLast() {
            let w = mm.memory.tables.entries(table)[g.tableIndex(a, level)].load(ordering: .relaxed)
            guard layout.isTable(w, level) else { break }
            table = mm.lowerTable(w)
            if mm.memory.tables.level(table) == .pte { ptes = mm.memory.tables.entries(table); break }
        }
        let next = Swift.min((a & ~(pmdSpan - 1)) &+ pmdSpan, s.span.upperBound)
        if let e = ptes {
            for i in g.tableIndex(a, .pte)..<(g.tableIndex(a, .pte) + Int((next - a) >> Geometry.pageShift)) {
                let w = e[i].load(ordering: .relaxed)
                if layout.isPresent(w, .pte) && folios.folio(containing: layout.pfn(w)) != nil { found &+= 1 }
            }
        }
        a = next
    }
    return found
}
