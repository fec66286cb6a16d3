import MemoryModel

/// The reference's version of each `AddressSpace` operation, at page
/// granularity. Each follows the documented semantics of the model's
/// operation (named in its comment), checks its arguments in the same order
/// and throws the same `ModelError` cases.
extension ReferenceModel {
    static let specialFlags: VMFlags = [.io, .dontExpand, .pfnMap, .mixedMap]

    func alive(_ pid: Int) throws(ModelError) -> ReferenceProcess {
        guard let p = processes.first(where: { $0.pid == pid }) else {
            throw .invalidArgument(name: "pid", reason: "no reference process \(pid)")
        }
        guard p.alive else { throw .tornDown }
        return p
    }

    func familyMembers(_ p: ReferenceProcess) -> [ReferenceProcess] {
        processes.filter { $0.family == p.family && $0.alive }
    }

    func node(_ vma: ReferenceVMA, _ a: UInt64) -> Int {
        let n: Int
        switch vma.policy {
        case .default, .local: n = 0
        case .preferred(let x): n = x
        case .bind(let ns): n = ns.first ?? 0
        case .interleave(let ns), .weightedInterleave(let ns):
            n = ns.isEmpty ? 0 : ns[Int((a >> 12) % UInt64(ns.count))]
        }
        return min(max(n, 0), nodeCount - 1)
    }

    func faultAttrs(_ vma: ReferenceVMA, write: Bool, writable: Bool) -> LeafAttributes {
        var a: LeafAttributes = [.young]
        if writable && vma.flags.contains(.write) { a.insert(.writable) }
        if write {
            a.insert(.dirty)
            if tracksSoftDirty { a.insert(.softDirty) }
        }
        return a
    }

    // MARK: VMA bookkeeping

    func covered(_ p: ReferenceProcess, _ start: UInt64, _ end: UInt64, _ op: String) throws(ModelError) -> [ReferenceVMA] {
        guard start & 4095 == 0 else { throw .unaligned(name: "\(op) start", value: start, alignment: 4096) }
        guard end & 4095 == 0 else { throw .unaligned(name: "\(op) end", value: end, alignment: 4096) }
        guard start < end else { throw .invalidRange(start: start, end: end, reason: "\(op): start must be below end") }
        let vs = p.vmas(intersecting: start, end)
        var a = start
        for v in vs {
            if v.start > a { throw .noVMA(address: a) }
            a = v.end
        }
        if a < end { throw .noVMA(address: a) }
        return vs
    }

    func splitVMA(_ p: ReferenceProcess, at a: UInt64) throws(ModelError) {
        guard let i = p.vmaIndex(containing: a) else { return }
        let v = p.vmas[i]
        guard v.start != a else { return }
        if v.isHugetlb && a % v.hugePageSize != 0 {
            throw .unaligned(name: "hugetlb split address", value: a, alignment: v.hugePageSize)
        }
        try splitLeafStraddling(p, a)
        p.vmas.replaceSubrange(i...i, with: [v.copy(start: v.start, end: a), v.copy(start: a, end: v.end)])
    }

    func isolate(_ p: ReferenceProcess, _ s: UInt64, _ e: UInt64) throws(ModelError) -> [ReferenceVMA] {
        try splitVMA(p, at: s)
        try splitVMA(p, at: e)
        return p.vmas(intersecting: s, e)
    }

    func canMerge(_ a: ReferenceVMA, _ b: ReferenceVMA) -> Bool {
        guard a.end == b.start, a.flags == b.flags, a.name == b.name, a.policy == b.policy,
              a.protectionKey == b.protectionKey, a.hugePageSize == b.hugePageSize,
              a.flags.intersection(ReferenceModel.specialFlags).isEmpty else { return false }
        switch (a.backing, b.backing) {
        case (.anonymous, .anonymous): return true
        case (.file(let f, let o), .file(let g, let q)), (.shmem(let f, let o), .shmem(let g, let q)):
            return f === g && o + (a.end - a.start) / 4096 == q
        default: return false
        }
    }

    func merge(_ p: ReferenceProcess, _ start: UInt64, _ end: UInt64) {
        var i = max(0, (p.vmas.firstIndex { $0.end > start } ?? p.vmas.count) - 1)
        while i + 1 < p.vmas.count && p.vmas[i].start <= end {
            let a = p.vmas[i], b = p.vmas[i + 1]
            if canMerge(a, b) {
                let m = a.copy(start: a.start, end: b.end)
                m.hasAnonVMA = a.hasAnonVMA || b.hasAnonVMA
                p.vmas.replaceSubrange(i...(i + 1), with: [m])
            } else {
                i += 1
            }
        }
    }

    // MARK: PMD-level state

    enum PMDState { case none, table, leaf, blocked }

    func pmdBase(_ a: UInt64) -> UInt64 { a & ~(ReferenceModel.pmdSize - 1) }

    func pmdState(_ p: ReferenceProcess, _ a: UInt64) -> PMDState {
        let r = pmdBase(a)
        if p.pteTables.contains(r) { return .table }
        switch p.pages[r] {
        case .present(let pp)?:
            if pp.level == .pmd { return .leaf }
            if pp.level == .pud { return .blocked }
        case .migration(_, _, _, _, _, _, let l)?:
            if l == .pmd { return .leaf }
        default: break
        }
        // A PUD leaf covering the region (1G hugetlb) does not start at r.
        let pudBase = a & ~(geometry.entrySize(.pud) - 1)
        if case .present(let pp)? = p.pages[pudBase], pp.level == .pud { return .blocked }
        return .none
    }

    /// Whether the PTE table of the region holding `a` has no entries left.
    func tableEmpty(_ p: ReferenceProcess, _ a: UInt64) -> Bool {
        let r = pmdBase(a)
        for k in 0..<512 where p.pages[r + UInt64(k) << 12] != nil { return false }
        return true
    }

    /// Splits the PMD leaf or PMD migration entry of the region at `a`
    /// (`splitPMD`): 512 PTE-level states, folio stays large.
    func splitPMD(_ p: ReferenceProcess, _ a: UInt64) throws(ModelError) {
        let r = pmdBase(a)
        guard let head = p.pages[r] else { return }
        switch head {
        case .present(let pp) where pp.level == .pmd:
            switch pp.target {
            case .hugeZero:
                var attrs = pp.attrs
                attrs.insert(.special)
                attrs.remove(.writable)
                for k in 0..<512 { set(p, r + UInt64(k) << 12, .present(ReferencePresent(target: .zero, attrs: attrs))) }
            case .folio(let f, _):
                if folios[f]!.isHugetlb { throw .unsupported("hugetlb PMDs cannot be split") }
                if folios[f]!.isAnon && folios[f]!.exclusive[0] {
                    for k in 0..<folios[f]!.pageCount { folios[f]!.exclusive[k] = true }
                }
                for k in 0..<512 {
                    set(p, r + UInt64(k) << 12, .present(ReferencePresent(target: .folio(f, page: k), attrs: pp.attrs)))
                }
            case .zero, .pfn:
                return
            }
        case .migration(let kind, let f, _, let y, let d, let bits, .pmd):
            for k in 0..<512 {
                set(p, r + UInt64(k) << 12, .migration(kind, folio: f, page: k, young: y, dirty: d, bits: bits, level: .pte))
            }
        default:
            return
        }
        p.pteTables.insert(r)
    }

    func splitLeafStraddling(_ p: ReferenceProcess, _ a: UInt64) throws(ModelError) {
        guard a % ReferenceModel.pmdSize != 0 else { return }
        guard pmdState(p, a) == .leaf else { return }
        if case .present(let pp)? = p.pages[pmdBase(a)], case .folio(let f, _) = pp.target, folios[f]!.isHugetlb { return }
        try splitPMD(p, a)
    }

    /// `lockPTETable(allocate: true)` as states: a table exists afterwards
    /// unless a PMD leaf (or something above) covers the region.
    enum TableLookup { case table, pmdEntry, blocked, absent }
    func lookupTable(_ p: ReferenceProcess, _ a: UInt64, allocate: Bool) -> TableLookup {
        switch pmdState(p, a) {
        case .table: return .table
        case .leaf: return .pmdEntry
        case .blocked: return .blocked
        case .none:
            guard allocate else { return .absent }
            p.pteTables.insert(pmdBase(a))
            return .table
        }
    }

    enum PMDDecision { case split, skip }

    /// `forEachPTE`: calls `body` for every page of `[start, end)` whose PTE
    /// table exists (or is allocated); PMD entries are split or skipped.
    func forEachPTE(_ p: ReferenceProcess, _ start: UInt64, _ end: UInt64, allocate: Bool = false,
                    pmd: (UInt64) throws(ModelError) -> PMDDecision = { _ in .split },
                    _ body: (UInt64) throws(ModelError) -> Void) throws(ModelError) {
        var a = start
        while a < end {
            let next = geometry.entryEnd(a, at: .pmd, limit: end)
            switch lookupTable(p, a, allocate: allocate) {
            case .table:
                var b = a
                while b < next { try body(b); b += 4096 }
            case .pmdEntry:
                if try pmd(a) == .split { try splitPMD(p, a); continue }
            case .blocked:
                let size = geometry.entrySize(.pud)
                a = min(end, (a & ~(size - 1)) &+ size)
                continue
            case .absent:
                break
            }
            a = next
        }
    }

    /// Folios mapped by present PTEs/PMDs wholly inside `[start, end)`,
    /// with their first address (`anonFoliosFullyInside`).
    func anonFoliosInside(_ p: ReferenceProcess, _ start: UInt64, _ end: UInt64,
                          accept: (ReferenceFolio) -> Bool) throws(ModelError) -> [(ReferenceFolioID, UInt64)] {
        var out: [(ReferenceFolioID, UInt64)] = []
        var seen = Set<ReferenceFolioID>()
        try forEachPTE(p, start, end, pmd: { (a) throws(ModelError) -> PMDDecision in
            if case .present(let pp)? = p.pages[self.pmdBase(a)], case .folio(let f, _) = pp.target,
               let fo = self.folios[f], fo.isAnon, accept(fo), a % ReferenceModel.pmdSize == 0,
               a + ReferenceModel.pmdSize <= end, seen.insert(f).inserted {
                out.append((f, a))
            }
            return .skip
        }) { (a) throws(ModelError) in
            guard case .present(let pp)? = p.pages[a], !pp.attrs.contains(.special),
                  case .folio(let f, let i) = pp.target, let fo = folios[f] else { return }
            guard fo.isAnon, accept(fo), !seen.contains(f) else { return }
            let first = a - UInt64(i) * 4096
            guard first >= start, first + (UInt64(4096) << UInt64(fo.order)) <= end else { return }
            seen.insert(f)
            out.append((f, first))
        }
        return out
    }

    // MARK: mmap / munmap / tearDown

    /// `AddressSpace.mmap`.
    public func mmap(pid: Int, start: UInt64, end: UInt64, access: VMFlags, shared: Bool = false,
                     kind: MappingKind = .anonymous, name: String? = nil, extraFlags: VMFlags = [],
                     policy: MemoryPolicy = .default, protectionKey: Int = 0) throws(ModelError) {
        let p = try alive(pid)
        guard start & 4095 == 0 else { throw .unaligned(name: "start", value: start, alignment: 4096) }
        guard end & 4095 == 0 else { throw .unaligned(name: "end", value: end, alignment: 4096) }
        guard start < end else { throw .invalidRange(start: start, end: end, reason: "start must be below end") }
        guard end <= geometry.userAddressLimit else {
            throw .invalidRange(start: start, end: end, reason: "beyond the user address space")
        }
        guard access.subtracting(.access).isEmpty else { throw .invalidArgument(name: "access", reason: "only read, write and exec") }
        if let v = p.vmas(intersecting: start, end).first {
            throw .overlappingVMA(start: start, end: end, existingStart: v.start, existingEnd: v.end)
        }
        var flags = access.union([.mayRead, .mayWrite, .mayExec]).union(extraFlags)
        if shared { flags.formUnion([.shared, .mayShare]) }
        if tracksSoftDirty { flags.insert(.softDirty) }
        var huge: UInt64 = 0
        let backing: ReferenceBacking
        switch kind {
        case .anonymous:
            if shared { backing = .shmem(newFile(nil, shmem: true), pageOffset: 0) }
            else { backing = .anonymous; if access.contains(.write) { flags.insert(.account) } }
        case .file(let f, let offset):
            guard offset & 4095 == 0 else { throw .unaligned(name: "file offset", value: offset, alignment: 4096) }
            backing = .file(newFile(f, shmem: f.isShmem), pageOffset: offset / 4096)
            if !shared && access.contains(.write) { flags.insert(.account) }
        case .shmem(let f, let offset):
            guard offset & 4095 == 0 else { throw .unaligned(name: "file offset", value: offset, alignment: 4096) }
            backing = .shmem(newFile(f, shmem: true), pageOffset: offset / 4096)
            if !shared && access.contains(.write) { flags.insert(.account) }
        case .hugetlb(let size, let f):
            guard geometry.hugetlbSizes.contains(size) else {
                throw .invalidArgument(name: "huge page size", reason: "\(size) is not a hugetlb size on \(geometry)")
            }
            guard start % size == 0, end % size == 0 else {
                throw .unaligned(name: "hugetlb mapping", value: start % size == 0 ? end : start, alignment: size)
            }
            huge = size
            flags.formUnion([.hugetlb, .dontExpand])
            backing = .file(newFile(f, shmem: false), pageOffset: 0)
        case .pfnMap(let pfn), .mixedMap(let pfn):
            guard pfn + (end - start) / 4096 <= geometry.maxPFN else {
                throw .invalidArgument(name: "pfn", reason: "range exceeds the architecture's frames")
            }
            if case .pfnMap = kind { flags.formUnion([.pfnMap, .io, .dontExpand, .dontDump]) } else { flags.insert(.mixedMap) }
            backing = .pfnRange(firstPFN: pfn)
        }
        let v = ReferenceVMA(start: start, end: end, flags: flags, backing: backing, name: name, policy: policy,
                             protectionKey: protectionKey, hugePageSize: huge, hasAnonVMA: false)
        let i = p.vmas.firstIndex { $0.end > start } ?? p.vmas.count
        p.vmas.insert(v, at: i)
    }

    func newFile(_ real: FileObject?, shmem: Bool) -> ReferenceFile {
        if let real, let f = files[ObjectIdentifier(real)] { return f }
        let f = ReferenceFile(id: nextFile, isShmem: shmem, real: real)
        nextFile += 1
        if let real { files[ObjectIdentifier(real)] = f }
        allFiles.append(f)
        return f
    }

    /// `AddressSpace.munmap`.
    public func munmap(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        guard start & 4095 == 0, end & 4095 == 0, start < end else {
            throw .invalidRange(start: start, end: end, reason: "munmap needs a page-aligned, non-empty range")
        }
        for v in p.vmas(intersecting: start, end) where v.isHugetlb {
            if max(start, v.start) % v.hugePageSize != 0 || min(end, v.end) % v.hugePageSize != 0 {
                throw .unaligned(name: "hugetlb munmap", value: start, alignment: v.hugePageSize)
            }
        }
        let vs = try isolate(p, start, end)
        for v in vs { try zapRange(p, v, v.start, v.end, dropMarkers: true) }
        p.vmas.removeAll { v in vs.contains { $0 === v } }
        // free_pgtables(): empty PTE tables no VMA needs.
        var a = pmdBase(start)
        while a < end {
            if p.pteTables.contains(a) && tableEmpty(p, a) && p.vmas(intersecting: a, a + ReferenceModel.pmdSize).isEmpty {
                p.pteTables.remove(a)
            }
            a += ReferenceModel.pmdSize
        }
    }

    /// `AddressSpace.tearDown`.
    public func tearDown(pid: Int) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for v in p.vmas { try? zapRange(p, v, v.start, v.end, dropMarkers: true) }
        p.vmas.removeAll()
        p.pteTables.removeAll()
        p.alive = false
    }

    // MARK: Zap

    /// `AddressSpace.zap` (MADV_DONTNEED).
    public func zap(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        let vs = try covered(p, start, end, "zap")
        for v in vs where v.flags.contains(.locked) || v.flags.contains(.pfnMap) {
            throw .wrongVMAKind(address: v.start, reason: "MADV_DONTNEED on a VM_LOCKED or VM_PFNMAP VMA")
        }
        for v in vs { try zapRange(p, v, max(start, v.start), min(end, v.end), dropMarkers: false) }
    }

    func zapRange(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ start: UInt64, _ end: UInt64, dropMarkers: Bool) throws(ModelError) {
        if vma.isHugetlb { try zapHugetlb(p, vma, start, end); return }
        var a = start
        while a < end {
            let next = geometry.entryEnd(a, at: .pmd, limit: end)
            switch lookupTable(p, a, allocate: false) {
            case .table:
                var b = a
                while b < next { zapPTE(p, vma, b, dropMarkers: dropMarkers); b += 4096 }
                if tableEmpty(p, a) { p.pteTables.remove(pmdBase(a)) }
            case .pmdEntry:
                if a % ReferenceModel.pmdSize == 0 && next - a == ReferenceModel.pmdSize {
                    for k in 0..<512 { set(p, a + UInt64(k) << 12, nil) }
                } else {
                    try splitPMD(p, a)
                    continue
                }
            case .blocked:
                let size = geometry.entrySize(.pud)
                a = min(end, (a & ~(size - 1)) + size)
                continue
            case .absent:
                break
            }
            a = next
        }
    }

    func zapPTE(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ a: UInt64, dropMarkers: Bool) {
        guard let old = p.pages[a] else { return }
        switch old {
        case .present(let pp):
            set(p, a, nil)
            if case .folio(let f, _) = pp.target, !pp.attrs.contains(.special) {
                if pp.attrs.contains(.dirty) && !folios[f]!.isAnon { folios[f]!.flags.insert(.dirty) }
                freeSwapCache(f)
            }
            if !dropMarkers && vma.flags.contains(.uffdWP) && pp.attrs.contains(.uffdWP) { set(p, a, .marker(.uffdWP)) }
        case .marker(let m):
            if dropMarkers || m == .poisoned { set(p, a, nil) }
        case .swap(let slot, _):
            set(p, a, nil)
            releaseSwap(slot)
        case .migration, .devicePrivate, .deviceExclusive, .hwpoison:
            set(p, a, nil)
        }
    }

    /// `AddressSpace.freeSwapCache`: an unmapped anonymous folio whose
    /// swap-cache slots no swap entry refers to leaves the swap cache.
    func freeSwapCache(_ f: ReferenceFolioID) {
        guard let folio = folios[f], folio.isAnon, folio.mapcount == 0 else { return }
        folioFreeSwap(f)
    }

    /// `AddressSpace.folioFreeSwap`: out of the swap cache unless a swap
    /// entry still refers to one of its slots.
    func folioFreeSwap(_ f: ReferenceFolioID) {
        guard let folio = folios[f], folio.flags.contains(.swapCache) else { return }
        let slots = swapCache.filter { $0.value.folio == f }.map(\.key)
        guard slots.allSatisfy({ slotCounts[$0, default: 0] == 0 }) else { return }
        for slot in slots {
            swapCache[slot] = nil
            folios[f]!.swapCacheRefs -= 1
        }
        folios[f]!.flags.remove(.swapCache)
    }

    /// `releaseSwapReference`: a slot left with only its cached, unmapped
    /// folio releases it.
    func releaseSwap(_ slot: ReferenceSlotID) {
        if slotCounts[slot] == 0, let (f, _) = swapCache[slot], folios[f]!.mapcount == 0 {
            swapCache[slot] = nil
            folios[f]!.swapCacheRefs -= 1
            folios[f]!.flags.remove(.swapCache)
        }
    }

    func hugetlbShape(_ size: UInt64) -> (level: PageTableLevel, entries: Int) {
        switch size {
        case 64 << 10: return (.pte, 16)
        case 2 << 20: return (.pmd, 1)
        case 32 << 20: return (.pmd, 16)
        default: return (.pud, 1)
        }
    }

    func zapHugetlb(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let size = vma.hugePageSize
        guard start % size == 0, end % size == 0 else {
            throw .unaligned(name: "hugetlb range", value: start % size == 0 ? end : start, alignment: size)
        }
        var a = start
        while a < end {
            for k in 0..<Int(size / 4096) { set(p, a + UInt64(k) << 12, nil) }
            a += size
        }
    }

    // MARK: Faults

    /// `AddressSpace.fault`.
    public func fault(pid: Int, _ start: UInt64, _ end: UInt64, write: Bool) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for vma in try covered(p, start, end, "fault") {
            let s = max(start, vma.start), e = min(end, vma.end)
            if write && !vma.flags.contains(.write) {
                throw .wrongVMAKind(address: s, reason: "write fault on a VMA without write permission")
            }
            if vma.flags.intersection(.access).isEmpty {
                throw .wrongVMAKind(address: s, reason: "access to a PROT_NONE VMA")
            }
            if vma.isHugetlb { try populateHugetlbRange(p, vma, s, e, write: write); continue }
            if vma.flags.contains(.pfnMap) || vma.flags.contains(.mixedMap) { continue }
            try faultPTEs(p, vma, s, e, write: write)
        }
    }

    func faultPTEs(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ start: UInt64, _ end: UInt64, write: Bool) throws(ModelError) {
        if write && (vma.isAnonymous || vma.isPrivate) { vma.hasAnonVMA = true }
        var a = start
        while a < end {
            let next = geometry.entryEnd(a, at: .pmd, limit: end)
            switch lookupTable(p, a, allocate: true) {
            case .table:
                // Populated entries first, then none ones (faultTable()).
                let none = (0..<Int((next - a) >> 12)).map { a + UInt64($0) << 12 }.filter { p.pages[$0] == nil }
                var b = a
                while b < next {
                    if p.pages[b] != nil { try faultPage(p, vma, b, write: write) }
                    b += 4096
                }
                for x in none { try faultPage(p, vma, x, write: write) }
            case .pmdEntry:
                if try faultPMD(p, vma, a, write: write) { a = next }
                continue
            case .blocked, .absent:
                throw .allocationFailed("no page table")
            }
            a = next
        }
    }

    /// `faultPMD`: true when the whole PMD was handled.
    func faultPMD(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ a: UInt64, write: Bool) throws(ModelError) -> Bool {
        let r = pmdBase(a)
        guard case .present(let pp)? = p.pages[r] else { return true }   // PMD migration entry
        let writable = pp.attrs.contains(.writable)
        if write && !writable, case .folio(let f, _) = pp.target, folios[f]!.isAnon, !folios[f]!.isKSM, folios[f]!.exclusive[0] {
            var n = pp
            n.attrs.formUnion([.writable, .dirty, .young])
            if tracksSoftDirty { n.attrs.insert(.softDirty) }
            setRegion(p, r, n)
            return true
        }
        if write && !writable {
            try splitPMD(p, r)
            return false
        }
        var n = pp
        n.attrs.insert(.young)
        if write { n.attrs.insert(.dirty); if tracksSoftDirty { n.attrs.insert(.softDirty) } }
        setRegion(p, r, n)
        return true
    }

    /// Rewrites the attributes of a PMD leaf (all 512 page states).
    func setRegion(_ p: ReferenceProcess, _ r: UInt64, _ pp: ReferencePresent) {
        for k in 0..<512 {
            let a = r + UInt64(k) << 12
            guard case .present(var x)? = p.pages[a] else { continue }
            x.attrs = pp.attrs
            set(p, a, .present(x))
        }
    }

    /// One page's fault (`faultPTE`).
    func faultPage(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ a: UInt64, write: Bool) throws(ModelError) {
        guard let old = p.pages[a] else { try faultNone(p, vma, a, write: write, uffdWP: false); return }
        switch old {
        case .marker(let m):
            if m.contains(.guardRegion) || m.contains(.poisoned) { return }
            set(p, a, nil)
            try faultNone(p, vma, a, write: write, uffdWP: true)
        case .swap:
            try swapInPage(p, vma, a, write: write)
            if write { try faultPage(p, vma, a, write: true) }
        case .devicePrivate(let f, let w, let bits):
            let nf = newFolio(order: 0, node: node(vma, a), flags: [.anon, .swapBacked, .dirty])
            var attrs: LeafAttributes = [.young]
            if w { attrs.insert(.writable) }
            if bits.contains(.softDirty) { attrs.insert(.softDirty) }
            if bits.contains(.uffdWP) { attrs.insert(.uffdWP) }
            if bits.contains(.exclusive) { folios[nf]!.exclusive[0] = true }
            set(p, a, .present(ReferencePresent(target: .folio(nf, page: 0), attrs: attrs)))
            _ = f
            if write { try faultPage(p, vma, a, write: true) }
        case .deviceExclusive(let f, let i, let bits):
            var attrs: LeafAttributes = []
            if vma.flags.contains(.write) && !bits.contains(.uffdWP) && bits.contains(.exclusive) { attrs.insert(.writable) }
            if folios[f]!.flags.contains(.dirty) { attrs.insert(.dirty) }
            if bits.contains(.softDirty) { attrs.insert(.softDirty) }
            if bits.contains(.uffdWP) { attrs.insert(.uffdWP) }
            set(p, a, .present(ReferencePresent(target: .folio(f, page: i), attrs: attrs)))
            if write { try faultPage(p, vma, a, write: true) }
        case .migration, .hwpoison:
            return
        case .present(var pp):
            if write && !pp.attrs.contains(.writable) {
                try writeProtectFault(p, vma, a, pp)
                return
            }
            pp.attrs.insert(.young)
            if write { pp.attrs.insert(.dirty); if tracksSoftDirty { pp.attrs.insert(.softDirty) } }
            set(p, a, .present(pp))
        }
    }

    func faultNone(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ a: UInt64, write: Bool, uffdWP: Bool) throws(ModelError) {
        if vma.isAnonymous {
            if !write {
                var attrs: LeafAttributes = [.young, .special]
                if uffdWP { attrs.insert(.uffdWP) }
                set(p, a, .present(ReferencePresent(target: .zero, attrs: attrs)))
                return
            }
            var attrs = faultAttrs(vma, write: true, writable: !uffdWP)
            if uffdWP { attrs.insert(.uffdWP) }
            mapNewAnon(p, vma, a, attrs)
            vma.hasAnonVMA = true
            return
        }
        guard let file = vma.file else { return }
        let cached = pageCache(file, vma.pageIndex(a), node: node(vma, a))
        if vma.isPrivate && write {
            var attrs = faultAttrs(vma, write: true, writable: !uffdWP)
            if uffdWP { attrs.insert(.uffdWP) }
            mapNewAnon(p, vma, a, attrs)
            vma.hasAnonVMA = true
            return
        }
        let writable = vma.isShared && (write || folios[cached]!.flags.contains(.swapBacked))
        var attrs = faultAttrs(vma, write: write, writable: writable && !uffdWP)
        if uffdWP { attrs.insert(.uffdWP) }
        if write { folios[cached]!.flags.insert(.dirty) }
        set(p, a, .present(ReferencePresent(target: .folio(cached, page: 0), attrs: attrs)))
    }

    func mapNewAnon(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ a: UInt64, _ attrs: LeafAttributes) {
        let f = newFolio(order: 0, node: node(vma, a), flags: [.anon, .swapBacked])
        folios[f]!.exclusive[0] = true
        set(p, a, .present(ReferencePresent(target: .folio(f, page: 0), attrs: attrs)))
    }

    /// The page-cache folio of `file` at `index`, read in if absent.
    func pageCache(_ file: ReferenceFile, _ index: UInt64, node: Int) -> ReferenceFolioID {
        if let f = file.cache[index] { return f }
        let f = newFolio(order: 0, node: node, flags: file.isShmem ? [.swapBacked] : [])
        file.cache[index] = f
        folios[f]!.cacheRefs += 1
        return f
    }

    func writeProtectFault(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ a: UInt64, _ old: ReferencePresent) throws(ModelError) {
        if old.attrs.contains(.uffdWP) { return }
        var reuse = old
        reuse.attrs.formUnion([.writable, .dirty, .young])
        if tracksSoftDirty { reuse.attrs.insert(.softDirty) }
        if vma.isShared {
            if case .folio(let f, _) = old.target { folios[f]!.flags.insert(.dirty) }
            set(p, a, .present(reuse))
            return
        }
        if case .folio(let f, let i) = old.target, let fo = folios[f], fo.isAnon, !fo.isKSM {
            // wp_can_reuse_anon_folio(): the swap cache is freed first when it can be.
            if !fo.exclusive[i] && fo.mapcount == 1 && !fo.isLarge && fo.flags.contains(.swapCache) && fo.refcount == 2 {
                folioFreeSwap(f)
            }
            if fo.exclusive[i] || (folios[f]!.refcount == 1 && fo.mapcount == 1 && !fo.isLarge) {
                folios[f]!.exclusive[i] = true
                set(p, a, .present(reuse))
                return
            }
        }
        if case .folio(let f, _) = old.target, old.attrs.contains(.dirty), !folios[f]!.isAnon { folios[f]!.flags.insert(.dirty) }
        set(p, a, nil)
        mapNewAnon(p, vma, a, faultAttrs(vma, write: true, writable: true))
        vma.hasAnonVMA = true
    }

    // MARK: THP, mTHP, hugetlb

    /// `AddressSpace.populateTHP`.
    public func populateTHP(pid: Int, _ start: UInt64, _ end: UInt64, write: Bool = true) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for vma in try covered(p, start, end, "thp") {
            guard vma.isAnonymous, !vma.isHugetlb else { throw .wrongVMAKind(address: vma.start, reason: "THP needs a private anonymous VMA") }
            if write && !vma.flags.contains(.write) {
                throw .wrongVMAKind(address: vma.start, reason: "write fault on a VMA without write permission")
            }
            let s = max(start, vma.start), e = min(end, vma.end)
            var a = s
            while a < e {
                let next = geometry.entryEnd(a, at: .pmd, limit: e)
                if a % ReferenceModel.pmdSize == 0 && next - a == ReferenceModel.pmdSize && pmdState(p, a) == .none {
                    if !write && options.useHugeZeroPage {
                        for k in 0..<512 {
                            set(p, a + UInt64(k) << 12, .present(ReferencePresent(target: .hugeZero(page: k), attrs: [.young, .special],
                                                                                  level: .pmd, entire: true)))
                        }
                    } else {
                        let f = newFolio(order: 9, node: node(vma, a), flags: [.anon, .swapBacked])
                        folios[f]!.exclusive[0] = true
                        let attrs = faultAttrs(vma, write: true, writable: true)
                        for k in 0..<512 {
                            set(p, a + UInt64(k) << 12, .present(ReferencePresent(target: .folio(f, page: k), attrs: attrs,
                                                                                  level: .pmd, entire: true)))
                        }
                        vma.hasAnonVMA = true
                    }
                    a = next
                    continue
                }
                try faultPTEs(p, vma, a, next, write: write)
                a = next
            }
        }
    }

    /// `AddressSpace.populateLargeFolios`.
    public func populateLargeFolios(pid: Int, _ start: UInt64, _ end: UInt64, order: Int) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        guard (2...8).contains(order) else { throw .invalidArgument(name: "order", reason: "mTHP orders are 2…8, not \(order)") }
        for vma in try covered(p, start, end, "mthp") {
            guard vma.isAnonymous, !vma.isHugetlb, vma.flags.contains(.write) else {
                throw .wrongVMAKind(address: vma.start, reason: "mTHP needs a writable private anonymous VMA")
            }
            vma.hasAnonVMA = true
            let s = max(start, vma.start), e = min(end, vma.end)
            let n = 1 << order
            let size = UInt64(4096) << UInt64(order)
            var a = s
            while a < e {
                let next = geometry.entryEnd(a, at: .pmd, limit: e)
                switch lookupTable(p, a, allocate: true) {
                case .table:
                    var b = a
                    while b < next {
                        if b % size == 0 && b + size <= next && (0..<n).allSatisfy({ p.pages[b + UInt64($0) << 12] == nil }) {
                            let f = newFolio(order: order, node: node(vma, b), flags: [.anon, .swapBacked])
                            let attrs = faultAttrs(vma, write: true, writable: true)
                            for k in 0..<n {
                                folios[f]!.exclusive[k] = true
                                set(p, b + UInt64(k) << 12, .present(ReferencePresent(target: .folio(f, page: k), attrs: attrs)))
                            }
                            b += size
                        } else {
                            try faultPage(p, vma, b, write: true)
                            b += 4096
                        }
                    }
                case .pmdEntry:
                    break
                case .blocked, .absent:
                    throw .allocationFailed("no page table")
                }
                a = next
            }
        }
    }

    /// `AddressSpace.populateHugetlb`.
    public func populateHugetlb(pid: Int, _ start: UInt64, _ end: UInt64, write: Bool = true) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for vma in try covered(p, start, end, "hugetlb") {
            guard vma.isHugetlb else { throw .wrongVMAKind(address: vma.start, reason: "not a hugetlb VMA") }
            try populateHugetlbRange(p, vma, max(start, vma.start), min(end, vma.end), write: write)
        }
    }

    func populateHugetlbRange(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ start: UInt64, _ end: UInt64, write: Bool) throws(ModelError) {
        let size = vma.hugePageSize
        guard start % size == 0, end % size == 0 else {
            throw .unaligned(name: "hugetlb range", value: start % size == 0 ? end : start, alignment: size)
        }
        if write && !vma.flags.contains(.write) {
            throw .wrongVMAKind(address: start, reason: "write fault on a VMA without write permission")
        }
        let (level, _) = hugetlbShape(size)
        let order = (size / 4096).trailingZeroBitCount
        var a = start
        while a < end {
            defer { a += size }
            if level == .pte { p.pteTables.insert(pmdBase(a)) }
            guard p.pages[a] == nil else { continue }
            let f: ReferenceFolioID
            if vma.isShared, let file = vma.file {
                let index = vma.pageIndex(a)
                if let c = file.cache[index] { f = c } else {
                    f = newFolio(order: order, node: node(vma, a), flags: [.hugetlb])
                    file.cache[index] = f
                    folios[f]!.cacheRefs += 1
                }
            } else {
                f = newFolio(order: order, node: node(vma, a), flags: [.hugetlb, .anon])
                folios[f]!.exclusive[0] = true
                vma.hasAnonVMA = true
            }
            var attrs: LeafAttributes = [.young]
            if vma.flags.contains(.write) && (vma.isShared || write) { attrs.formUnion([.writable, .dirty]) }
            if write && tracksSoftDirty { attrs.insert(.softDirty) }
            for k in 0..<(1 << order) {
                set(p, a + UInt64(k) << 12, .present(ReferencePresent(target: .folio(f, page: k), attrs: attrs, level: level, entire: true)))
            }
        }
    }

    // MARK: Swap

    /// `AddressSpace.swapOut`.
    public func swapOut(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for vma in try covered(p, start, end, "swapout") {
            guard vma.isPrivate, !vma.isHugetlb, !vma.isPFNMap else {
                throw .wrongVMAKind(address: vma.start, reason: "swap-out applies to private memory")
            }
            if vma.flags.contains(.locked) { continue }
            let list = try anonFoliosInside(p, max(start, vma.start), min(end, vma.end)) { f in
                !f.isKSM && !f.isHugetlb && !f.flags.contains(.mlocked) && !f.flags.contains(.swapCache) && !f.flags.contains(.zoneDevice)
            }
            for (f, a) in list { try swapOutFolio(p, f, a) }
        }
    }

    func swapOutFolio(_ p: ReferenceProcess, _ f: ReferenceFolioID, _ address: UInt64) throws(ModelError) {
        let n = folios[f]!.pageCount
        let first = nextSlot
        nextSlot += n
        for k in 0..<n { slotCounts[first + k] = 0 }
        for mm in familyMembers(p) {
            for k in 0..<n {
                let a = address + UInt64(k) * 4096
                try withPTEMapping(mm, a, folio: f, page: k) { (pp) in
                    var bits: SwapPTEBits = []
                    if self.folios[f]!.exclusive[k] { bits.insert(.exclusive) }
                    if pp.attrs.contains(.softDirty) { bits.insert(.softDirty) }
                    if pp.attrs.contains(.uffdWP) { bits.insert(.uffdWP) }
                    self.set(mm, a, .swap(slot: first + k, bits: bits))
                }
            }
        }
        if folios[f]!.mapcount > 0 {
            folios[f]!.flags.insert(.swapCache)
            for k in 0..<n {
                swapCache[first + k] = (f, k)
                folios[f]!.swapCacheRefs += 1
            }
        } else {
            for k in 0..<n { folios[f]!.exclusive[k] = false }
        }
    }

    /// `withPTEMapping`: the PTE of `mm` at `a` if it maps page `page` of
    /// `f` (a PMD mapping is split first).
    func withPTEMapping(_ mm: ReferenceProcess, _ a: UInt64, folio f: ReferenceFolioID, page: Int,
                        _ body: (ReferencePresent) throws(ModelError) -> Void) throws(ModelError) {
        while true {
            switch lookupTable(mm, a, allocate: false) {
            case .table:
                if case .present(let pp)? = mm.pages[a], case .folio(f, page) = pp.target { try body(pp) }
                return
            case .pmdEntry:
                guard case .present(let pp)? = mm.pages[a], case .folio(f, page) = pp.target else { return }
                try splitPMD(mm, a)
            case .blocked, .absent:
                return
            }
        }
    }

    /// `AddressSpace.swapIn`.
    public func swapIn(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for vma in try covered(p, start, end, "swapin") {
            try forEachPTE(p, max(start, vma.start), min(end, vma.end), pmd: { _ in .skip }) { (a) throws(ModelError) in
                if case .swap? = p.pages[a] { try swapInPage(p, vma, a, write: false) }
            }
        }
    }

    func swapInPage(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ a: UInt64, write: Bool) throws(ModelError) {
        guard case .swap(let slot, let bits)? = p.pages[a] else { return }
        let f: ReferenceFolioID, i: Int
        if let (cf, ci) = swapCache[slot] { f = cf; i = ci } else {
            f = newFolio(order: 0, node: node(vma, a), flags: [.anon, .swapBacked, .swapCache])
            i = 0
            swapCache[slot] = (f, 0)
            folios[f]!.swapCacheRefs += 1
        }
        set(p, a, nil)   // the swap reference goes
        var exclusive = bits.contains(.exclusive)
        var attrs: LeafAttributes = [.young]
        if bits.contains(.softDirty) { attrs.insert(.softDirty) }
        if bits.contains(.uffdWP) { attrs.insert(.uffdWP) }
        let freeSwap = slotCounts[slot] == 0 && folios[f]!.mapcount == 0
            && (write || vma.flags.contains(.locked) || folios[f]!.flags.contains(.mlocked))
        if freeSwap {
            swapCache[slot] = nil
            folios[f]!.swapCacheRefs -= 1
            folios[f]!.flags.remove(.swapCache)
            folios[f]!.flags.insert(.dirty)
            exclusive = true
        }
        if exclusive && vma.flags.contains(.write) && !bits.contains(.uffdWP) {
            attrs.insert(.writable)
            if write { attrs.insert(.dirty); if tracksSoftDirty { attrs.insert(.softDirty) } }
        }
        if exclusive { folios[f]!.exclusive[i] = true }
        set(p, a, .present(ReferencePresent(target: .folio(f, page: i), attrs: attrs)))
        vma.hasAnonVMA = true
    }

    // MARK: Migration

    /// `AddressSpace.migrate`.
    public func migrate(pid: Int, _ start: UInt64, _ end: UInt64, toNode target: Int) throws(ModelError) {
        guard (0..<nodeCount).contains(target) else {
            throw .invalidArgument(name: "node", reason: "node \(target) does not exist (\(nodeCount) nodes)")
        }
        let p = try alive(pid)
        defer { collect() }
        for (f, a) in try migratable(p, start, end) {
            try installMigration(p, f, a)
            let old = folios[f]!
            let nf = newFolio(order: old.order, node: target, flags: old.flags)
            folios[nf]!.poisoned = old.poisoned
            try removeMigration(p, f, a, onto: nf)
        }
    }

    /// `AddressSpace.startMigration`.
    public func startMigration(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for (f, a) in try migratable(p, start, end) { try installMigration(p, f, a) }
    }

    /// `AddressSpace.finishMigration`.
    public func finishMigration(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        var done = Set<ReferenceFolioID>()
        for vma in try covered(p, start, end, "migration") {
            var found: [(ReferenceFolioID, UInt64)] = []
            try forEachPTE(p, max(start, vma.start), min(end, vma.end), pmd: { (a) throws(ModelError) -> PMDDecision in
                if case .migration(_, let f, _, _, _, _, .pmd)? = p.pages[self.pmdBase(a)] { found.append((f, a)) }
                return .skip
            }) { (a) throws(ModelError) in
                if case .migration(_, let f, let i, _, _, _, _)? = p.pages[a] { found.append((f, a - UInt64(i) * 4096)) }
            }
            for (f, a) in found where done.insert(f).inserted { try removeMigration(p, f, a, onto: f) }
        }
    }

    func migratable(_ p: ReferenceProcess, _ start: UInt64, _ end: UInt64) throws(ModelError) -> [(ReferenceFolioID, UInt64)] {
        var out: [(ReferenceFolioID, UInt64)] = []
        for vma in try covered(p, start, end, "migrate") {
            guard !vma.isHugetlb, !vma.isPFNMap else {
                throw .wrongVMAKind(address: vma.start, reason: "migration of hugetlb or PFN-mapped memory is not modelled")
            }
            let s = max(start, vma.start), e = min(end, vma.end)
            out += try anonFoliosInside(p, s, e) { !$0.isKSM && !$0.flags.contains(.zoneDevice) && !$0.flags.contains(.swapCache) }
            try forEachPTE(p, s, e, pmd: { _ in .skip }) { (a) throws(ModelError) in
                guard case .present(let pp)? = p.pages[a], !pp.attrs.contains(.special), case .folio(let f, _) = pp.target,
                      let fo = folios[f], !fo.isAnon, !fo.isLarge, fo.mapcount == 1 else { return }
                out.append((f, a))
            }
        }
        return out
    }

    func migrationKind(_ pp: ReferencePresent, exclusive: Bool) -> MigrationKind {
        pp.attrs.contains(.writable) ? .write : (exclusive ? .readExclusive : .read)
    }

    func installMigration(_ p: ReferenceProcess, _ f: ReferenceFolioID, _ address: UInt64) throws(ModelError) {
        let spaces = folios[f]!.isAnon ? familyMembers(p) : [p]
        for mm in spaces {
            if folios[f]!.order == 9, address % ReferenceModel.pmdSize == 0,
               case .present(let pp)? = mm.pages[address], pp.level == .pmd, case .folio(f, 0) = pp.target {
                var bits: SwapPTEBits = []
                if pp.attrs.contains(.softDirty) { bits.insert(.softDirty) }
                if pp.attrs.contains(.uffdWP) { bits.insert(.uffdWP) }
                let kind = migrationKind(pp, exclusive: folios[f]!.exclusive[0])
                for k in 0..<512 {
                    set(mm, address + UInt64(k) << 12, .migration(kind, folio: f, page: k, young: pp.attrs.contains(.young),
                                                                  dirty: pp.attrs.contains(.dirty), bits: bits, level: .pmd))
                }
                if folios[f]!.isAnon { folios[f]!.exclusive[0] = false }
            }
            for k in 0..<folios[f]!.pageCount {
                let a = address + UInt64(k) * 4096
                try withPTEMapping(mm, a, folio: f, page: k) { (pp) in
                    var bits: SwapPTEBits = []
                    if pp.attrs.contains(.softDirty) { bits.insert(.softDirty) }
                    if pp.attrs.contains(.uffdWP) { bits.insert(.uffdWP) }
                    let kind = self.migrationKind(pp, exclusive: self.folios[f]!.exclusive[k])
                    self.set(mm, a, .migration(kind, folio: f, page: k, young: pp.attrs.contains(.young),
                                               dirty: pp.attrs.contains(.dirty), bits: bits, level: .pte))
                    if self.folios[f]!.isAnon { self.folios[f]!.exclusive[k] = false }
                }
            }
        }
    }

    func removeMigration(_ p: ReferenceProcess, _ f: ReferenceFolioID, _ address: UInt64, onto t: ReferenceFolioID) throws(ModelError) {
        let anon = folios[f]!.isAnon
        let spaces = anon ? familyMembers(p) : [p]
        let n = folios[f]!.pageCount
        let size = UInt64(4096) << UInt64(folios[f]!.order)
        for mm in spaces {
            guard mm.vma(containing: address) != nil else { continue }
            func attrs(_ kind: MigrationKind, _ y: Bool, _ d: Bool, _ bits: SwapPTEBits) -> LeafAttributes {
                var a: LeafAttributes = []
                if kind == .write { a.insert(.writable) }
                if y { a.insert(.young) }
                if d { a.insert(.dirty) }
                if bits.contains(.softDirty) { a.insert(.softDirty) }
                if bits.contains(.uffdWP) { a.insert(.uffdWP) }
                return a
            }
            if folios[f]!.order == 9, address % ReferenceModel.pmdSize == 0,
               case .migration(let kind, f, 0, let y, let d, let bits, .pmd)? = mm.pages[address] {
                for k in 0..<512 {
                    set(mm, address + UInt64(k) << 12, .present(ReferencePresent(target: .folio(t, page: k), attrs: attrs(kind, y, d, bits),
                                                                                 level: .pmd, entire: true)))
                }
                if kind != .read && anon { folios[t]!.exclusive[0] = true }
            }
            var a = address
            while a < address + size {
                let next = geometry.entryEnd(a, at: .pmd, limit: address + size)
                if lookupTable(mm, a, allocate: false) == .table {
                    var b = a
                    while b < next {
                        let k = Int((b - address) >> 12)
                        if case .migration(let kind, f, k, let y, let d, let bits, .pte)? = mm.pages[b] {
                            set(mm, b, .present(ReferencePresent(target: .folio(t, page: k), attrs: attrs(kind, y, d, bits))))
                            if kind != .read && anon { folios[t]!.exclusive[k] = true }
                        }
                        b += 4096
                    }
                }
                a = next
            }
        }
        guard f != t else { return }
        if let vma = p.vma(containing: address), let file = vma.file, !anon {
            let index = vma.pageIndex(address)
            for k in 0..<n where file.cache[index + UInt64(k)] == f && k == 0 {
                file.cache[index + UInt64(k)] = t
                folios[t]!.cacheRefs += 1
                folios[f]!.cacheRefs -= 1
            }
        }
    }

    // MARK: Device memory, poison

    /// `AddressSpace.makeDevicePrivate`.
    public func makeDevicePrivate(pid: Int, _ start: UInt64, _ end: UInt64, writable: Bool) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for vma in try covered(p, start, end, "device_private") {
            guard vma.isAnonymous else { throw .wrongVMAKind(address: vma.start, reason: "device-private migration needs anonymous memory") }
            try forEachPTE(p, max(start, vma.start), min(end, vma.end)) { (a) throws(ModelError) in
                guard case .present(let pp)? = p.pages[a], !pp.attrs.contains(.special), case .folio(let f, _) = pp.target,
                      let fo = folios[f], fo.isAnon, !fo.isLarge, !fo.isKSM, fo.mapcount == 1 else { return }
                let d = newFolio(order: 0, node: fo.node, flags: [.anon, .swapBacked, .zoneDevice, .devicePrivate])
                folios[d]!.exclusive[0] = true
                var bits: SwapPTEBits = [.exclusive]
                if pp.attrs.contains(.softDirty) { bits.insert(.softDirty) }
                if pp.attrs.contains(.uffdWP) { bits.insert(.uffdWP) }
                set(p, a, .devicePrivate(folio: d, writable: writable && pp.attrs.contains(.writable), bits: bits))
            }
        }
    }

    /// `AddressSpace.makeDeviceExclusive`.
    public func makeDeviceExclusive(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for vma in try covered(p, start, end, "device_exclusive") {
            guard vma.isPrivate, !vma.isHugetlb else { throw .wrongVMAKind(address: vma.start, reason: "device-exclusive needs private memory") }
            try forEachPTE(p, max(start, vma.start), min(end, vma.end)) { (a) throws(ModelError) in
                guard case .present(let pp)? = p.pages[a], !pp.attrs.contains(.special), case .folio(let f, let i) = pp.target,
                      let fo = folios[f], fo.isAnon, fo.exclusive[i], !fo.isKSM else { return }
                var bits: SwapPTEBits = [.exclusive]
                if pp.attrs.contains(.softDirty) { bits.insert(.softDirty) }
                if pp.attrs.contains(.uffdWP) { bits.insert(.uffdWP) }
                if pp.attrs.contains(.dirty) { folios[f]!.flags.insert(.dirty) }
                set(p, a, .deviceExclusive(folio: f, page: i, bits: bits))
            }
        }
    }

    /// `AddressSpace.poison` (memory failure on one page).
    public func poison(pid: Int, _ address: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        guard let vma = p.vma(containing: address) else { throw .noVMA(address: address) }
        guard !vma.isHugetlb else { throw .unsupported("hwpoison of hugetlb pages") }
        let a = address & ~4095
        if pmdState(p, a) == .leaf { try splitPMD(p, a) }
        guard case .present(let pp)? = p.pages[a], !pp.attrs.contains(.special), case .folio(var f, var i) = pp.target else {
            throw .invalidArgument(name: "address", reason: "maps no normal page")
        }
        if folios[f]!.isLarge {
            guard !folios[f]!.isHugetlb, folios[f]!.entireMaps == 0 else {
                throw .unsupported("splitting a folio that is PMD-mapped or hugetlb")
            }
            let parts = splitFolio(f)
            f = parts[i]
            i = 0
        }
        folios[f]!.poisoned[0] = true
        let frame = ReferenceFrame(folio: f, page: 0)
        for mm in folios[f]!.isAnon ? familyMembers(p) : [p] {
            try withPTEMapping(mm, a, folio: f, page: 0) { (_) in
                self.set(mm, a, .hwpoison(frame, bits: []))
            }
        }
        if !folios[f]!.isAnon, let file = vma.file {
            let index = vma.pageIndex(a)
            if file.cache[index] == f { file.cache[index] = nil; folios[f]!.cacheRefs -= 1 }
        }
    }

    /// Splits a PTE-mapped large folio into order-0 folios (`splitFolio`);
    /// every state naming a page is rewritten to the page's new folio.
    func splitFolio(_ f: ReferenceFolioID) -> [ReferenceFolioID] {
        let old = folios[f]!
        var parts: [ReferenceFolioID] = []
        for k in 0..<old.pageCount {
            let n = newFolio(order: 0, node: old.node, flags: old.flags)
            folios[n]!.exclusive[0] = old.exclusive[k]
            folios[n]!.poisoned[0] = old.poisoned[k]
            parts.append(n)
        }
        // Rewrite every reference to the old folio.
        for p in processes where p.alive {
            for (a, s) in p.pages {
                switch s {
                case .present(var pp):
                    if case .folio(f, let k) = pp.target { pp.target = .folio(parts[k], page: 0); set(p, a, .present(pp)) }
                case .migration(let kind, f, let k, let y, let d, let b, let l):
                    set(p, a, .migration(kind, folio: parts[k], page: 0, young: y, dirty: d, bits: b, level: l))
                case .deviceExclusive(f, let k, let b):
                    set(p, a, .deviceExclusive(folio: parts[k], page: 0, bits: b))
                default: break
                }
            }
        }
        for file in allFiles { for (i, v) in file.cache where v == f { file.cache[i] = parts[0]; folios[parts[0]]!.cacheRefs += 1 } }
        folios[f]!.cacheRefs = 0
        for (slot, (cf, k)) in swapCache where cf == f {
            swapCache[slot] = (parts[k], 0)
            folios[parts[k]]!.swapCacheRefs += 1
            folios[f]!.swapCacheRefs -= 1
        }
        return parts
    }

    // MARK: userfaultfd, guards, PFN maps

    /// `AddressSpace.userfaultWriteProtect`.
    public func userfaultWriteProtect(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for vma in try covered(p, start, end, "uffd_wp") {
            guard vma.flags.contains(.uffdWP), !vma.isHugetlb else {
                throw .wrongVMAKind(address: vma.start, reason: "userfaultfd write-protect needs a VM_UFFD_WP, non-hugetlb VMA")
            }
            try forEachPTE(p, max(start, vma.start), min(end, vma.end), allocate: true) { (a) throws(ModelError) in
                guard let s = p.pages[a] else { set(p, a, .marker(.uffdWP)); return }
                switch s {
                case .present(var pp):
                    pp.attrs.remove(.writable); pp.attrs.insert(.uffdWP); set(p, a, .present(pp))
                case .marker(let m): set(p, a, .marker(m.union(.uffdWP)))
                case .swap(let sl, let b): set(p, a, .swap(slot: sl, bits: b.union(.uffdWP)))
                case .migration(let k, let f, let i, let y, let d, let b, let l):
                    set(p, a, .migration(k, folio: f, page: i, young: y, dirty: d, bits: b.union(.uffdWP), level: l))
                case .devicePrivate(let f, let w, let b): set(p, a, .devicePrivate(folio: f, writable: w, bits: b.union(.uffdWP)))
                case .deviceExclusive(let f, let i, let b): set(p, a, .deviceExclusive(folio: f, page: i, bits: b.union(.uffdWP)))
                case .hwpoison(let fr, let b): set(p, a, .hwpoison(fr, bits: b.union(.uffdWP)))
                }
            }
        }
    }

    /// `AddressSpace.installGuardMarkers`.
    public func installGuardMarkers(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        let vs = try covered(p, start, end, "guard_install")
        for v in vs where !(v.flags.intersection(ReferenceModel.specialFlags).isEmpty && !v.isHugetlb && !v.flags.contains(.locked)) {
            throw .wrongVMAKind(address: v.start, reason: "guard regions are refused in hugetlb, locked and PFN-mapped VMAs")
        }
        for v in vs { v.flags.insert(.maybeGuard) }   // VM_MAYBE_GUARD, as AddressSpace.installGuardMarkers
        for v in vs {
            let s = max(start, v.start), e = min(end, v.end)
            try zapRange(p, v, s, e, dropMarkers: false)
            try forEachPTE(p, s, e, allocate: true) { (a) throws(ModelError) in
                guard let st = p.pages[a] else { set(p, a, .marker(.guardRegion)); return }
                if case .marker(let m) = st { set(p, a, .marker(m.union(.guardRegion))) }
            }
        }
    }

    /// `AddressSpace.removeGuardMarkers`.
    public func removeGuardMarkers(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for v in try covered(p, start, end, "guard_remove") where !v.isHugetlb {
            try forEachPTE(p, max(start, v.start), min(end, v.end), pmd: { _ in .skip }) { (a) throws(ModelError) in
                guard case .marker(let m)? = p.pages[a], m.contains(.guardRegion) else { return }
                let rest = m.subtracting(.guardRegion)
                set(p, a, rest.isEmpty ? nil : .marker(rest))
            }
        }
    }

    /// `AddressSpace.remapPFN`.
    public func remapPFN(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for v in try covered(p, start, end, "remap_pfn") {
            guard case .pfnRange(let base) = v.backing else {
                throw .wrongVMAKind(address: v.start, reason: "remap_pfn needs a VM_PFNMAP or VM_MIXEDMAP VMA")
            }
            var attrs: LeafAttributes = [.young, .special]
            if v.flags.contains(.write) && v.isShared { attrs.formUnion([.writable, .dirty]) }
            try forEachPTE(p, max(start, v.start), min(end, v.end), allocate: true) { (a) throws(ModelError) in
                guard p.pages[a] == nil else { return }
                set(p, a, .present(ReferencePresent(target: .pfn(base + (a - v.start) / 4096), attrs: attrs)))
            }
        }
    }

    // MARK: fork

    /// `AddressSpace.fork`: returns the child's pid (as given).
    public func fork(pid: Int, childPID: Int) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        let c = ReferenceProcess(pid: childPID, family: p.family)
        processes.append(c)
        for vma in p.vmas where !vma.flags.contains(.dontCopy) {
            let cv = vma.copy(start: vma.start, end: vma.end)
            cv.flags.subtract([.uffdWP, .uffdMissing, .uffdMinor, .locked, .lockOnFault])
            c.vmas.append(cv)
            if vma.flags.contains(.wipeOnFork) { cv.hasAnonVMA = false; continue }
            guard vma.hasAnonVMA || vma.flags.contains(.pfnMap) || vma.flags.contains(.mixedMap)
                    || vma.flags.contains(.maybeGuard) else { continue }   // VM_MAYBE_GUARD copies on fork
            if vma.isHugetlb { copyHugetlb(p, vma, c) } else { try copyTables(p, vma, c) }
        }
    }

    func copyTables(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ c: ReferenceProcess) throws(ModelError) {
        let cow = !vma.flags.contains(.shared) && vma.flags.contains(.mayWrite)
        var a = vma.start
        while a < vma.end {
            let next = geometry.entryEnd(a, at: .pmd, limit: vma.end)
            defer { a = next }
            switch pmdState(p, a) {
            case .none, .blocked: continue
            case .leaf:
                let r = pmdBase(a)
                for k in 0..<512 {
                    let x = r + UInt64(k) << 12
                    guard let s = p.pages[x] else { continue }
                    switch s {
                    case .present(var pp):
                        if cow { pp.attrs.remove(.writable) }
                        set(p, x, .present(pp))
                        if k == 0, case .folio(let f, _) = pp.target, folios[f]!.isAnon { folios[f]!.exclusive[0] = false }
                        var cp = pp
                        cp.attrs.subtract([.young, .uffdWP])
                        set(c, x, .present(cp))
                    case .migration(var kind, let f, let i, let y, let d, var bits, let l):
                        if cow && kind != .read { kind = .read }
                        set(p, x, .migration(kind, folio: f, page: i, young: y, dirty: d, bits: bits, level: l))
                        bits.remove(.uffdWP)
                        set(c, x, .migration(kind, folio: f, page: i, young: y, dirty: d, bits: bits, level: l))
                    default: break
                    }
                }
            case .table:
                c.pteTables.insert(pmdBase(a))
                var b = a
                while b < next {
                    if let s = p.pages[b], let cs = copyPTE(p, b, s, cow: cow, vma: vma) { set(c, b, cs) }
                    b += 4096
                }
            }
        }
    }

    func copyPTE(_ p: ReferenceProcess, _ a: UInt64, _ s: ExpectedPage, cow: Bool, vma: ReferenceVMA) -> ExpectedPage? {
        switch s {
        case .present(var pp):
            if cow { pp.attrs.remove(.writable) }
            set(p, a, .present(pp))
            var cp = pp
            cp.attrs.subtract([.young, .uffdWP])
            if vma.flags.contains(.shared) { cp.attrs.remove(.dirty) }
            if !pp.attrs.contains(.special), case .folio(let f, let i) = pp.target, folios[f]!.isAnon { folios[f]!.exclusive[i] = false }
            return .present(cp)
        case .swap(let slot, var bits):
            bits.remove(.exclusive)
            set(p, a, .swap(slot: slot, bits: bits))
            bits.remove(.uffdWP)
            return .swap(slot: slot, bits: bits)
        case .migration(var kind, let f, let i, let y, let d, var bits, let l):
            if cow && kind != .read { kind = .read }
            set(p, a, .migration(kind, folio: f, page: i, young: y, dirty: d, bits: bits, level: l))
            bits.remove(.uffdWP)
            return .migration(kind, folio: f, page: i, young: y, dirty: d, bits: bits, level: l)
        case .devicePrivate(let f, var w, var bits):
            if cow { w = false }
            bits.remove(.exclusive)
            set(p, a, .devicePrivate(folio: f, writable: w, bits: bits))
            folios[f]!.exclusive[0] = false
            bits.remove(.uffdWP)
            return .devicePrivate(folio: f, writable: w, bits: bits)
        case .deviceExclusive(let f, let i, var bits):
            folios[f]!.exclusive[i] = false
            bits.remove(.exclusive)
            set(p, a, .deviceExclusive(folio: f, page: i, bits: bits))
            bits.remove(.uffdWP)
            return .deviceExclusive(folio: f, page: i, bits: bits)
        case .hwpoison(let fr, var bits):
            bits.remove(.uffdWP)
            return .hwpoison(fr, bits: bits)
        case .marker(let m):
            let kept = m.subtracting(.uffdWP)
            return kept.isEmpty ? nil : .marker(kept)
        }
    }

    func copyHugetlb(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ c: ReferenceProcess) {
        let cow = !vma.flags.contains(.shared) && vma.flags.contains(.mayWrite)
        let (level, _) = hugetlbShape(vma.hugePageSize)
        var a = vma.start
        while a < vma.end {
            defer { a += vma.hugePageSize }
            guard case .present(var pp)? = p.pages[a] else { continue }
            if level == .pte { c.pteTables.insert(pmdBase(a)) }
            if case .folio(let f, _) = pp.target, folios[f]!.isAnon { folios[f]!.exclusive[0] = false }
            if cow { pp.attrs.remove(.writable) }
            var cp = pp
            cp.attrs.remove(.young)
            for k in 0..<Int(vma.hugePageSize / 4096) {
                let x = a + UInt64(k) << 12
                guard case .present(var q)? = p.pages[x] else { continue }
                q.attrs = pp.attrs
                set(p, x, .present(q))
                q.attrs = cp.attrs
                set(c, x, .present(q))
            }
        }
    }

    // MARK: mprotect, mlock

    /// `AddressSpace.mprotect`.
    public func mprotect(pid: Int, _ start: UInt64, _ end: UInt64, access: VMFlags) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        guard access.subtracting(.access).isEmpty else { throw .invalidArgument(name: "access", reason: "only read, write and exec") }
        let cov = try covered(p, start, end, "mprotect")
        for v in cov where access.contains(.write) && !v.flags.contains(.mayWrite) {
            throw .wrongVMAKind(address: v.start, reason: "write access to a VMA without VM_MAYWRITE")
        }
        for v in cov where v.isHugetlb {
            if max(start, v.start) % v.hugePageSize != 0 || min(end, v.end) % v.hugePageSize != 0 {
                throw .unaligned(name: "hugetlb mprotect", value: start, alignment: v.hugePageSize)
            }
        }
        for vma in try isolate(p, start, end) {
            var flags = vma.flags.subtracting(.access).union(access)
            if access.contains(.write) && vma.isPrivate && !vma.isHugetlb && !vma.isPFNMap { flags.insert(.account) }
            vma.flags = flags
            if vma.isHugetlb {
                if !vma.flags.contains(.write) {
                    var a = vma.start
                    while a < vma.end {
                        if case .present(var pp)? = p.pages[a] { pp.attrs.remove(.writable); set(p, a, .present(pp)) }
                        a += 4096
                    }
                }
                continue
            }
            try changeProtection(p, vma)
        }
        merge(p, start, end)
    }

    func protect(_ pp: ReferencePresent, _ vma: ReferenceVMA) -> ReferencePresent {
        var n = pp
        let none = vma.flags.intersection(.access).isEmpty
        if !vma.flags.contains(.write) || none {
            n.attrs.remove(.writable)
        } else if !n.attrs.contains(.writable) && !n.attrs.contains(.uffdWP) && !n.attrs.contains(.special) {
            let sdOK = !tracksSoftDirty || vma.flags.contains(.softDirty) || n.attrs.contains(.softDirty)
            var ok = false
            if vma.isShared { ok = n.attrs.contains(.dirty) } else if case .folio(let f, let i) = n.target, let fo = folios[f] {
                ok = fo.isAnon && !fo.isKSM && fo.exclusive[i]
            }
            if ok && sdOK { n.attrs.insert(.writable) }
        }
        return n
    }

    func changeProtection(_ p: ReferenceProcess, _ vma: ReferenceVMA) throws(ModelError) {
        try forEachPTE(p, vma.start, vma.end, pmd: { (a) throws(ModelError) -> PMDDecision in
            guard a % ReferenceModel.pmdSize == 0, a + ReferenceModel.pmdSize <= vma.end else { return .split }
            if case .present(let pp)? = p.pages[a] { self.setRegion(p, a, self.protect(pp, vma)) }
            return .skip
        }) { (a) throws(ModelError) in
            guard let s = p.pages[a] else { return }
            switch s {
            case .present(let pp):
                set(p, a, .present(protect(pp, vma)))
            case .migration(.write, let f, let i, let y, let d, let b, let l) where !vma.flags.contains(.write):
                set(p, a, .migration(.readExclusive, folio: f, page: i, young: y, dirty: d, bits: b, level: l))
            case .devicePrivate(let f, true, let b) where !vma.flags.contains(.write):
                set(p, a, .devicePrivate(folio: f, writable: false, bits: b))
            default: break
            }
        }
    }

    /// `AddressSpace.mlock`.
    public func mlock(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        _ = try covered(p, start, end, "mlock")
        for vma in try isolate(p, start, end) {
            vma.flags.insert(.locked)
            if vma.flags.contains(.pfnMap) || vma.flags.contains(.io) { continue }
            let write = vma.flags.contains(.write) && !vma.flags.contains(.shared)
            if vma.isHugetlb { try populateHugetlbRange(p, vma, vma.start, vma.end, write: write); continue }
            if vma.flags.intersection(.access).isEmpty { continue }
            try faultPTEs(p, vma, vma.start, vma.end, write: write)
            try setMlocked(p, vma, true)
        }
        merge(p, start, end)
    }

    /// `AddressSpace.munlock`.
    public func munlock(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        _ = try covered(p, start, end, "munlock")
        for vma in try isolate(p, start, end) where vma.flags.contains(.locked) {
            vma.flags.remove(.locked)
            if !vma.isHugetlb { try setMlocked(p, vma, false) }
        }
        merge(p, start, end)
    }

    func setMlocked(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ on: Bool) throws(ModelError) {
        let flags: PageFlags = [.mlocked, .unevictable]
        func apply(_ f: ReferenceFolioID) { if on { folios[f]!.flags.formUnion(flags) } else { folios[f]!.flags.subtract(flags) } }
        try forEachPTE(p, vma.start, vma.end, pmd: { (a) throws(ModelError) -> PMDDecision in
            if case .present(let pp)? = p.pages[self.pmdBase(a)], case .folio(let f, _) = pp.target { apply(f) }
            return .skip
        }) { (a) throws(ModelError) in
            guard case .present(let pp)? = p.pages[a], !pp.attrs.contains(.special), case .folio(let f, let i) = pp.target else { return }
            let first = a - UInt64(i) * 4096
            if !on || (first >= vma.start && first + (UInt64(4096) << UInt64(folios[f]!.order)) <= vma.end) { apply(f) }
        }
    }

    // MARK: MADV_FREE, KSM, clear_refs

    /// `AddressSpace.madviseFree`.
    public func madviseFree(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for vma in try covered(p, start, end, "madv_free") {
            guard vma.isAnonymous, !vma.flags.contains(.locked), !vma.isHugetlb else {
                throw .wrongVMAKind(address: vma.start, reason: "MADV_FREE applies to private anonymous, unlocked memory")
            }
            let s = max(start, vma.start), e = min(end, vma.end)
            try forEachPTE(p, s, e, pmd: { _ in .skip }) { (a) throws(ModelError) in
                guard case .swap(let slot, _)? = p.pages[a] else { return }
                set(p, a, nil)
                releaseSwap(slot)
            }
            let list = try anonFoliosInside(p, s, e) { f in
                !f.isKSM && !f.flags.contains(.zoneDevice) && f.mapcount == (f.entireMaps > 0 ? 1 : f.pageCount) && f.entireMaps <= 1
            }
            for (f, a) in list {
                let size = UInt64(4096) << UInt64(folios[f]!.order)
                try forEachPTE(p, a, a + size, pmd: { (x) throws(ModelError) -> PMDDecision in
                    if case .present(var pp)? = p.pages[self.pmdBase(x)], case .folio(f, _) = pp.target {
                        pp.attrs.subtract([.dirty, .young])
                        self.setRegion(p, self.pmdBase(x), pp)
                    }
                    return .skip
                }) { (x) throws(ModelError) in
                    guard case .present(var pp)? = p.pages[x], case .folio(f, _) = pp.target else { return }
                    pp.attrs.subtract([.dirty, .young])
                    set(p, x, .present(pp))
                }
                if folios[f]!.flags.contains(.swapCache) { continue }
                folios[f]!.flags.subtract([.dirty, .swapBacked])
            }
        }
    }

    /// `AddressSpace.ksmMerge`.
    public func ksmMerge(pid: Int, _ start: UInt64, _ end: UInt64, distinct: Int, contentBase: Int = 0) throws(ModelError) {
        guard distinct >= 1 else { throw .invalidArgument(name: "distinct", reason: "must be at least 1") }
        let p = try alive(pid)
        defer { collect() }
        var k = 0
        for vma in try covered(p, start, end, "ksm") {
            guard vma.flags.contains(.mergeable), vma.isAnonymous else {
                throw .wrongVMAKind(address: vma.start, reason: "KSM needs a VM_MERGEABLE private anonymous VMA")
            }
            try forEachPTE(p, max(start, vma.start), min(end, vma.end), pmd: { _ in .skip }) { (a) throws(ModelError) in
                guard case .present(var pp)? = p.pages[a], !pp.attrs.contains(.special), case .folio(let f, _) = pp.target,
                      let fo = folios[f], fo.isAnon, !fo.isLarge, !fo.isKSM, fo.mapcount == 1 else { return }
                let id = contentBase + k % distinct
                k += 1
                pp.attrs.subtract([.writable, .dirty])
                if let stable = ksmStable[id], folios[stable] != nil {
                    pp.target = .folio(stable, page: 0)
                    set(p, a, .present(pp))
                } else {
                    folios[f]!.flags.formUnion([.ksm, .dirty])
                    folios[f]!.exclusive[0] = false
                    set(p, a, .present(pp))
                    ksmStable[id] = f
                }
            }
        }
    }

    /// `AddressSpace.clearRefs`.
    public func clearRefs(pid: Int, _ kind: AddressSpace.ClearRefs) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for vma in p.vmas where !vma.isHugetlb {
            if kind == .softDirty { vma.flags.remove(.softDirty) }
            if kind == .anonymous && !vma.isAnonymous { continue }
            if kind == .file && vma.isAnonymous { continue }
            try forEachPTE(p, vma.start, vma.end, pmd: { (a) throws(ModelError) -> PMDDecision in
                if case .present(var pp)? = p.pages[self.pmdBase(a)] {
                    if kind == .softDirty { pp.attrs.subtract([.writable, .softDirty]) } else { pp.attrs.remove(.young) }
                    self.setRegion(p, self.pmdBase(a), pp)
                }
                return .skip
            }) { (a) throws(ModelError) in
                guard let s = p.pages[a] else { return }
                if kind == .softDirty {
                    switch s {
                    case .present(var pp): pp.attrs.subtract([.writable, .softDirty]); set(p, a, .present(pp))
                    case .swap(let sl, let b): set(p, a, .swap(slot: sl, bits: b.subtracting(.softDirty)))
                    case .migration(let k, let f, let i, let y, let d, let b, let l):
                        set(p, a, .migration(k, folio: f, page: i, young: y, dirty: d, bits: b.subtracting(.softDirty), level: l))
                    case .devicePrivate(let f, let w, let b): set(p, a, .devicePrivate(folio: f, writable: w, bits: b.subtracting(.softDirty)))
                    case .deviceExclusive(let f, let i, let b): set(p, a, .deviceExclusive(folio: f, page: i, bits: b.subtracting(.softDirty)))
                    case .hwpoison(let fr, let b): set(p, a, .hwpoison(fr, bits: b.subtracting(.softDirty)))
                    case .marker: break
                    }
                } else if case .present(var pp) = s {
                    pp.attrs.remove(.young)
                    set(p, a, .present(pp))
                }
            }
        }
    }
}
