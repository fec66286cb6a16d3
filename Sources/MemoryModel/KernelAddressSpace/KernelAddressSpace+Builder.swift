/// How a kernel range is cut into leaves.
public enum KernelLeafPolicy: Hashable, Sendable {
    /// Every leaf at this level (PTE 4K, PMD 2M, PUD 1G); with `contiguous`
    /// (arm64 only) in aligned runs of 16 entries carrying the contiguous bit.
    case fixed(PageTableLevel, contiguous: Bool)
    /// The largest leaf that alignment and size allow, up to `upTo`, as the
    /// kernel's linear-map and vmemmap code choose; with `contiguous` (arm64)
    /// aligned runs of 16 PTEs (64K) or 16 PMDs (32M) get the contiguous bit.
    case largest(upTo: PageTableLevel, contiguous: Bool)

    public static let pte = KernelLeafPolicy.fixed(.pte, contiguous: false)
    public static let pmd = KernelLeafPolicy.fixed(.pmd, contiguous: false)
    public static let pud = KernelLeafPolicy.fixed(.pud, contiguous: false)
}

/// One run of equal leaves that a policy cut a range into.
public struct KernelLeafRun: Hashable, Sendable {
    public var virtualAddress: UInt64
    public var size: UInt64
    public var pfn: UInt64
    public var level: PageTableLevel
    public var contiguous: Bool
}

/// The shared chain of tables behind a KASAN-style zero shadow (the
/// kernel's `kasan_early_shadow_pte/pmd/pud/p4d`): a PTE table whose every
/// entry maps one read-only page, and above it one table per real level whose
/// every entry points at the table below. Any upper entry that covers only
/// zero shadow points at the shared table of the level below it.
public struct ZeroShadowTables: Hashable, Sendable {
    /// Shared tables by the level of the entries they hold (`.pte` is the
    /// table of leaves; `.pmd` the table whose entries point to it …).
    public let tables: [PageTableLevel: TableID]
    /// The leaf in every entry of the shared PTE table.
    public let pte: UInt64
    /// The page all of it maps (the zero page).
    public let pagePFN: UInt64

    /// Whether `table` is one of the shared tables.
    public func contains(_ table: TableID) -> Bool { tables.values.contains(table) }
    /// The level of entries `table` holds, if it is one of the shared tables.
    public func level(of table: TableID) -> PageTableLevel? { tables.first { $0.value == table }?.key }
}

/// Builds kernel page tables (`init_mm`) in an address space created with
/// `kernel: true`: maps ranges with leaves at chosen levels and kernel
/// protections, allocating tables as needed, and points many upper entries
/// at one shared lower table (KASAN zero shadow, ESPfix), recording each
/// extra reference with the table's share count so that teardown frees
/// every table exactly once.
///
/// Physical frames are raw PFNs (no folios), except for the zero page.
/// The builder is meant for one thread (as `init_mm` is built at boot); each
/// entry write still takes the lock the kernel would.
public final class KernelLayoutBuilder {
    public let mm: AddressSpace
    /// References made through this builder to each table it allocated as
    /// shared (the first reference is the table's own, later ones are shares).
    private var sharedReferences: [TableID: Int] = [:]
    private var sharedLevels: [TableID: PageTableLevel] = [:]
    /// Raw frames handed out by `takeFrames`, for data pages the layout
    /// needs (vmemmap, shadow, vmalloc backing).
    private var framePool: Range<UInt64>
    private var nextFrame: UInt64

    /// - Parameters:
    ///   - mm: a kernel address space (`isKernel`).
    ///   - framePool: PFNs `takeFrames` may hand out.
    public init(_ mm: AddressSpace, framePool: Range<UInt64> = 0x100000..<0x200000) throws(ModelError) {
        guard mm.isKernel else {
            throw .invalidArgument(name: "mm", reason: "kernel layouts need an address space created with kernel: true")
        }
        try mm.checkAlive()
        self.mm = mm
        self.framePool = framePool
        self.nextFrame = framePool.lowerBound
    }

    public var geometry: Geometry { mm.geometry }
    var layout: EntryLayout { mm.geometry.layout }

    // MARK: Frames

    /// Hands out `count` consecutive raw frames aligned to `alignment` frames.
    public func takeFrames(_ count: UInt64, alignment: UInt64 = 1) throws(ModelError) -> UInt64 {
        guard count > 0, alignment > 0, alignment & (alignment - 1) == 0 else {
            throw .invalidArgument(name: "frames", reason: "count must be positive and alignment a power of two")
        }
        let first = (nextFrame + alignment - 1) & ~(alignment - 1)
        guard first + count <= framePool.upperBound else {
            throw .outOfMemory(requestedBytes: count << Geometry.pageShift, budgetBytes: UInt64(framePool.count) << Geometry.pageShift)
        }
        nextFrame = first + count
        return first
    }

    // MARK: Planning

    /// Cuts `[va, va + size)` mapping frames from `pfn` into runs of leaves
    /// according to `policy`, without touching the tables.
    public func plan(_ va: UInt64, size: UInt64, pfn: UInt64, policy: KernelLeafPolicy) throws(ModelError) -> [KernelLeafRun] {
        try checkRange(va, size)
        guard va & Geometry.pageOffsetMask == 0, size & Geometry.pageOffsetMask == 0 else {
            throw .unaligned(name: "kernel mapping", value: va | size, alignment: Geometry.pageSize)
        }
        let g = geometry
        let pa = pfn << Geometry.pageShift
        switch policy {
        case .fixed(let level, let cont):
            try checkLeafLevel(level, contiguous: cont)
            let unit = g.entrySize(level) * (cont ? 16 : 1)
            guard va % unit == 0 else { throw .unaligned(name: "\(level) leaf address", value: va, alignment: unit) }
            guard size % unit == 0 else { throw .unaligned(name: "\(level) leaf range size", value: size, alignment: unit) }
            guard pa % unit == 0 else { throw .unaligned(name: "\(level) leaf physical address", value: pa, alignment: unit) }
            return [KernelLeafRun(virtualAddress: va, size: size, pfn: pfn, level: level, contiguous: cont)]
        case .largest(let top, let cont):
            try checkLeafLevel(top, contiguous: false)
            let useCont = cont && layout.contiguous != 0
            var candidates: [(PageTableLevel, Bool)] = []
            for level in [PageTableLevel.pud, .pmd, .pte] where level <= top && isRealLeafLevel(level) {
                if useCont && level != .pud { candidates.append((level, true)) }
                candidates.append((level, false))
            }
            var runs: [KernelLeafRun] = []
            var off: UInt64 = 0
            while off < size {
                let a = va &+ off, p = pa + off, left = size - off
                var chosen = (PageTableLevel.pte, false)
                for (level, c) in candidates {
                    let unit = g.entrySize(level) * (c ? 16 : 1)
                    if a % unit == 0 && p % unit == 0 && left >= unit { chosen = (level, c); break }
                }
                let unit = g.entrySize(chosen.0) * (chosen.1 ? 16 : 1)
                if var last = runs.last, last.level == chosen.0, last.contiguous == chosen.1,
                   last.virtualAddress &+ last.size == a {
                    last.size += unit
                    runs[runs.count - 1] = last
                } else {
                    runs.append(KernelLeafRun(virtualAddress: a, size: unit, pfn: p >> Geometry.pageShift, level: chosen.0, contiguous: chosen.1))
                }
                off += unit
            }
            return runs
        }
    }

    private func isRealLeafLevel(_ level: PageTableLevel) -> Bool {
        level == .pte || (mm.hasEntries(at: level) && !geometry.isFolded(level))
    }

    private func checkLeafLevel(_ level: PageTableLevel, contiguous: Bool) throws(ModelError) {
        guard level <= .pud else { throw .unsupported("kernel leaves at \(level) level") }
        guard isRealLeafLevel(level) else { throw .unsupported("\(geometry) has no \(level) leaves") }
        if contiguous {
            guard layout.contiguous != 0 else { throw .unsupported("contiguous leaves on \(geometry.architecture)") }
            guard level != .pud else { throw .unsupported("contiguous PUD leaves") }
        }
    }

    private func checkRange(_ va: UInt64, _ size: UInt64) throws(ModelError) {
        let end = va &+ size
        guard size > 0, end == 0 || end > va else {
            throw .invalidRange(start: va, end: end, reason: "empty or wrapping kernel range")
        }
        guard va >= geometry.kernelAddressStart else {
            throw .invalidRange(start: va, end: end, reason: "not in the kernel half of \(geometry)")
        }
    }

    // MARK: Mapping

    /// Maps `[va, va + size)` to frames from `pfn` with `protection`, leaves
    /// cut by `policy`, allocating tables as needed. Every entry it writes
    /// must be empty: an overlap with an existing mapping is an error, found
    /// before anything is written.
    @discardableResult
    public func map(_ va: UInt64, size: UInt64, pfn: UInt64, policy: KernelLeafPolicy,
                    _ protection: KernelProtection) throws(ModelError) -> [KernelLeafRun] {
        try mm.checkAlive()
        let runs = try plan(va, size: size, pfn: pfn, policy: policy)
        for r in runs { try checkFree(r) }
        for r in runs { try write(r, protection) }
        return runs
    }

    /// Maps `[va, va + size)` with every leaf at `level`.
    public func map(_ va: UInt64, size: UInt64, pfn: UInt64, level: PageTableLevel,
                    contiguous: Bool = false, _ protection: KernelProtection) throws(ModelError) {
        try map(va, size: size, pfn: pfn, policy: .fixed(level, contiguous: contiguous), protection)
    }

    /// Maps each page of `[va, va + size)` that is not mapped yet (at any
    /// level) to a fresh frame from the pool: 2M leaves where a whole
    /// empty PMD entry is covered and `allowPMD`, else 4K pages. Used for
    /// the real (non-zero) shadow and other backing that may overlap.
    public func populate(_ va: UInt64, size: UInt64, allowPMD: Bool, _ protection: KernelProtection) throws(ModelError) {
        try checkRange(va, size)
        let g = geometry
        let end = va &+ size
        var a = va & ~Geometry.pageOffsetMask
        while a != end && (end == 0 || a < end) {
            let pmdEnd = g.entryEnd(a, at: .pmd, limit: end)
            if allowPMD && isRealLeafLevel(.pmd) && a % g.entrySize(.pmd) == 0 && pmdEnd &- a == g.entrySize(.pmd),
               case .slot(let s) = try mm.slot(a, at: .pmd, allocate: true), mm.load(s) == 0 {
                let f = try takeFrames(512, alignment: 512)
                storeChecked(s, protection.encode(pfn: f, level: .pmd, layout: layout))
                a = pmdEnd
                continue
            }
            switch try mm.slot(a, at: .pte, allocate: true) {
            case .slot(let s):
                if mm.load(s) == 0 {
                    let f = try takeFrames(1)
                    storeChecked(s, protection.encode(pfn: f, level: .pte, layout: layout))
                }
                a &+= Geometry.pageSize
            case .blocked(let s), .missing(let s):
                // A larger leaf already covers this address.
                a = g.entryEnd(a, at: s.level, limit: end)
            }
        }
    }

    private func checkFree(_ r: KernelLeafRun) throws(ModelError) {
        let step = geometry.entrySize(r.level)
        var off: UInt64 = 0
        while off < r.size {
            let a = r.virtualAddress &+ off
            switch try mm.slot(a, at: r.level, allocate: false) {
            case .slot(let s):
                let w = mm.load(s)
                if w != 0 {
                    throw .invalidRange(start: a, end: a &+ step, reason: "already mapped at \(r.level) level")
                }
                off += step
            case .missing(let s):
                // Nothing below this entry: the whole of it is free.
                let span = geometry.entrySize(s.level)
                off = ((a & ~(span - 1)) &+ span) &- r.virtualAddress
                if off == 0 { return }
            case .blocked(let s):
                throw .invalidRange(start: a, end: a &+ step, reason: "covered by a \(s.level) leaf")
            }
        }
    }

    private func write(_ r: KernelLeafRun, _ protection: KernelProtection) throws(ModelError) {
        let step = geometry.entrySize(r.level)
        let prot = protection.contiguous(r.contiguous)
        let count = r.size / step
        var i: UInt64 = 0
        while i < count {
            let a = r.virtualAddress &+ i * step
            guard case .slot(let s) = try mm.slot(a, at: r.level, allocate: true) else {
                throw .invalidRange(start: a, end: a &+ step, reason: "covered by a larger leaf")
            }
            // Fill the rest of this table's run directly.
            let inTable = min(count - i, UInt64(Geometry.entriesPerTable - s.index))
            let lock = mm.lock(forEntriesOf: s.table, level: s.level)
            lock.lock()
            for k in 0..<Int(inTable) {
                let slot = EntrySlot(s.table, s.index + k, s.level)
                let pfn = r.pfn + (i + UInt64(k)) * (step >> Geometry.pageShift)
                mm.store(slot, prot.encode(pfn: pfn, level: r.level, layout: layout))
            }
            lock.unlock()
            i += inTable
        }
    }

    private func storeChecked(_ s: EntrySlot, _ raw: UInt64) {
        let lock = mm.lock(forEntriesOf: s.table, level: s.level)
        lock.lock()
        mm.store(s, raw)
        lock.unlock()
    }

    // MARK: Shared tables

    /// Allocates an empty table holding `level` entries, meant to be pointed
    /// at from many upper entries (`link`). It counts as one page-table page
    /// of the address space however many entries reference it.
    public func makeSharedTable(holding level: PageTableLevel) throws(ModelError) -> TableID {
        guard level != mm.tableLevels[0], mm.tableLevels.contains(level) else {
            throw .invalidArgument(name: "level", reason: "\(geometry) has no lower tables holding \(level) entries")
        }
        let t = try mm.arena.allocate(level: level)
        mm.addTables(level, 1)
        sharedReferences[t] = 0
        sharedLevels[t] = level
        return t
    }

    /// Writes entry `index` of a table made with `makeSharedTable`
    /// (typically to fill it before linking).
    public func setEntry(_ table: TableID, _ index: Int, _ raw: UInt64) throws(ModelError) {
        guard let level = sharedLevels[table] else {
            throw .invalidArgument(name: "table", reason: "\(table) was not made by this builder")
        }
        guard (0..<Geometry.entriesPerTable).contains(index) else {
            throw .invalidArgument(name: "index", reason: "\(index) is not in 0…511")
        }
        storeChecked(EntrySlot(table, index, level), raw)
    }

    /// Points the `level` entry covering `va` at `table` (which must hold
    /// entries of the next lower level), allocating the tables above as
    /// needed. The entry must be empty.
    public func link(_ va: UInt64, at level: PageTableLevel, to table: TableID) throws(ModelError) {
        try checkRange(va, Geometry.pageSize)
        guard level != .pte, mm.hasEntries(at: level), mm.childLevel(of: level) == mm.arena.level(table) else {
            throw .invalidArgument(name: "table", reason: "a \(level) entry cannot point at a table of \(mm.arena.level(table)) entries")
        }
        switch try mm.slot(va, at: level, allocate: true) {
        case .slot(let s): try link(s, to: table)
        case .blocked(let s), .missing(let s):
            throw .invalidRange(start: va, end: va &+ geometry.entrySize(level), reason: "covered by a \(s.level) entry")
        }
    }

    /// Points entry `index` of the shared table `parent` at `table`.
    public func link(sharedTable parent: TableID, index: Int, to table: TableID) throws(ModelError) {
        guard let level = sharedLevels[parent] else {
            throw .invalidArgument(name: "table", reason: "\(parent) was not made by this builder")
        }
        guard (0..<Geometry.entriesPerTable).contains(index) else {
            throw .invalidArgument(name: "index", reason: "\(index) is not in 0…511")
        }
        try link(EntrySlot(parent, index, level), to: table)
    }

    func link(_ s: EntrySlot, to table: TableID) throws(ModelError) {
        guard s.level != .pte, mm.childLevel(of: s.level) == mm.arena.level(table) else {
            throw .invalidArgument(name: "table", reason: "a \(s.level) entry cannot point at a table of \(mm.arena.level(table)) entries")
        }
        guard mm.load(s) == 0 else {
            throw .invalidRange(start: 0, end: 0, reason: "\(s.level) entry \(s.index) of \(s.table) is not empty")
        }
        storeChecked(s, layout.table(pfn: mm.arena.pfn(of: table), user: false))
        // A table this builder made starts unreferenced; any other table is
        // already referenced once from where it was installed.
        let refs = sharedReferences[table] ?? 1
        if refs > 0 { mm.arena.adjustShares(table, 1) }
        sharedReferences[table] = refs + 1
    }

    /// How many entries this builder pointed at `table`.
    public func references(to table: TableID) -> Int { sharedReferences[table] ?? 0 }

    /// Frees the shared tables that nothing references (after a failed
    /// build, or tables made and never linked).
    public func discardUnlinkedSharedTables() {
        // Freeing one may leave the shared tables below it unreferenced too.
        while let t = sharedReferences.first(where: { $0.value == 0 })?.key {
            // Its own entries may reference other shared tables.
            let e = mm.arena.entries(t)
            let level = sharedLevels[t]!
            for i in 0..<Geometry.entriesPerTable {
                let w = e[i].load(ordering: .relaxed)
                if level != .pte && layout.isTable(w, level) {
                    let child = mm.arena.uncheckedTable(atPFN: layout.pfn(w))
                    if mm.arena.shareCount(child) > 0 { mm.arena.adjustShares(child, -1) }
                    if let r = sharedReferences[child] { sharedReferences[child] = r - 1 }
                }
                e[i].store(0, ordering: .relaxed)
            }
            mm.arena.free(t)
            mm.addTables(level, -1)
            sharedReferences[t] = nil
            sharedLevels[t] = nil
        }
    }

    // MARK: Zero shadow

    /// Makes the shared zero-shadow chain: a PTE table mapping `pagePFN`
    /// with `protection` in all 512 entries, and for each real level above it
    /// (below the root) a table whose 512 entries point at the one below.
    public func makeZeroShadow(pagePFN: UInt64, _ protection: KernelProtection = .kernelRO) throws(ModelError) -> ZeroShadowTables {
        var tables: [PageTableLevel: TableID] = [:]
        let pte = protection.contiguous(false).encode(pfn: pagePFN, level: .pte, layout: layout)
        let pteTable = try makeSharedTable(holding: .pte)
        for i in 0..<Geometry.entriesPerTable { try setEntry(pteTable, i, pte) }
        tables[.pte] = pteTable
        var below = pteTable
        for level in mm.tableLevels.dropFirst().reversed().dropFirst() {
            let t = try makeSharedTable(holding: level)
            for i in 0..<Geometry.entriesPerTable { try link(sharedTable: t, index: i, to: below) }
            tables[level] = t
            below = t
        }
        return ZeroShadowTables(tables: tables, pte: pte, pagePFN: pagePFN)
    }

    /// Fills every empty part of `[start, end)` with the zero shadow, as
    /// `kasan_populate_early_shadow()` does: an empty upper entry wholly
    /// inside the range points at the shared table of the level below;
    /// a partly covered one gets a private table filled the same way; what
    /// is already mapped (real shadow) stays.
    public func mapZeroShadow(_ start: UInt64, _ end: UInt64, using z: ZeroShadowTables) throws(ModelError) {
        guard start & Geometry.pageOffsetMask == 0, end & Geometry.pageOffsetMask == 0 else {
            throw .unaligned(name: "zero shadow range", value: start | end, alignment: Geometry.pageSize)
        }
        try checkRange(start, end &- start)
        try fillZero(mm.root, level: mm.tableLevels[0], start, end, z)
    }

    private func fillZero(_ table: TableID, level: PageTableLevel, _ start: UInt64, _ end: UInt64,
                          _ z: ZeroShadowTables) throws(ModelError) {
        let g = geometry
        var a = start
        while a != end {
            let next = g.entryEnd(a, at: level, limit: end)
            let s = EntrySlot(table, g.tableIndex(a, level), level)
            let w = mm.load(s)
            if level == .pte {
                if w == 0 { storeChecked(s, z.pte) }
            } else if w == 0 {
                let child = mm.childLevel(of: level)
                let span = g.entrySize(level)
                if a & (span - 1) == 0 && next &- a == span, let shared = z.tables[child] {
                    try link(s, to: shared)
                } else {
                    let nw = try mm.installTable(at: s)
                    try fillZero(mm.arena.uncheckedTable(atPFN: layout.pfn(nw)), level: child, a, next, z)
                }
            } else if layout.isTable(w, level) {
                let t = mm.arena.uncheckedTable(atPFN: layout.pfn(w))
                if !z.contains(t) { try fillZero(t, level: mm.childLevel(of: level), a, next, z) }
            }
            a = next
        }
    }
}
