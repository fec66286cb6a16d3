import MemoryModel

/// The reference's madvise-style operations (MADV_FREE, KSM, clear_refs, poison,
/// userfaultfd, guards, PFN maps), the page-granular counterpart of
/// `AddressSpace+Madvise.swift`. Each operation follows the documented semantics
/// of the model's operation (named in its comment), checks its arguments in the
/// same order and throws the same `ModelError` cases.
extension ReferenceModel {
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
                let size = UInt64(Geometry.pageSize) << UInt64(folios[f]!.order)
                try forEachPTE(p, a, a + size, pmd: { (x) throws(ModelError) -> PMDDecision in
                    if case .present(var pp)? = p.pages[self.pmdBase(x)], case .folio(f, _) = pp.target {
                        pp.attrs.subtract([.dirty, .young])
                        self.setRegion(p, self.pmdBase(x), pp)
                    }
                    return .skip
                }) { (x) throws(ModelError) in
                    guard case .present(let pp)? = p.pages[x], case .folio(f, _) = pp.target else { return }
                    updateAccess(p, x) { $0.subtract([.dirty, .young]) }
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
        if kind == .hiwaterRSS { return }
        defer { collect() }
        // VM_SOFTDIRTY goes from every VMA; the walk skips PFN maps
        // (`test_walk`) and has no hugetlb handler.
        if kind == .softDirty { for vma in p.vmas { vma.flags.remove(.softDirty) } }
        for vma in p.vmas where !vma.isHugetlb && !vma.isPFNMap {
            if kind == .anonymous && !vma.isAnonymous { continue }
            if kind == .file && vma.isAnonymous { continue }
            try forEachPTE(p, vma.start, vma.end, pmd: { (a) throws(ModelError) -> PMDDecision in
                let r = self.pmdBase(a)
                switch p.pages[r] {
                case .present(var pp)?:
                    if kind == .softDirty { pp.attrs.subtract([.writable, .softDirty]) } else { pp.attrs.remove(.young) }
                    self.setRegion(p, r, pp)
                case .migration(let k, let f, _, let y, let d, let b, .pmd)? where kind == .softDirty:
                    // clear_soft_dirty_pmd(): a PMD migration entry loses
                    // its swap soft-dirty bit.
                    for i in 0..<512 {
                        self.set(p, r + UInt64(i) << Geometry.pageShift,
                                 .migration(k, folio: f, page: i, young: y, dirty: d, bits: b.subtracting(.softDirty), level: .pmd))
                    }
                default: break
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
                } else if case .present(let pp) = s, !pp.attrs.contains(.special) {
                    // Only normal pages are made old (`vm_normal_folio()`).
                    updateAccess(p, a) { $0.remove(.young) }
                }
            }
        }
    }

    // MARK: Poison

    /// `AddressSpace.poison` (memory failure on one page).
    public func poison(pid: Int, _ address: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        guard let vma = p.vma(containing: address) else { throw .noVMA(address: address) }
        guard !vma.isHugetlb else { throw .unsupported("hwpoison of hugetlb pages") }
        let a = address & ~Geometry.pageOffsetMask
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
            let e = min(end, vma.end)
            // A whole PMD of an anonymous VMA keeps its huge mapping.
            let wholePMD = { (a: UInt64) -> PMDDecision in
                guard vma.isAnonymous, a % ReferenceModel.pmdSize == 0, a + ReferenceModel.pmdSize <= e else { return .split }
                switch p.pages[a] {
                case .present(var pp)?:
                    pp.attrs.remove(.writable); pp.attrs.insert(.uffdWP); self.setRegion(p, a, pp)
                case .migration(let k, let f, _, let y, let d, let b, .pmd)?:
                    for i in 0..<512 {
                        self.set(p, a + UInt64(i) << Geometry.pageShift,
                                 .migration(self.readableKind(k, f), folio: f, page: i, young: y, dirty: d, bits: b.union(.uffdWP), level: .pmd))
                    }
                default: break
                }
                return .skip
            }
            try forEachPTE(p, max(start, vma.start), e, allocate: true, pmd: wholePMD) { (a) throws(ModelError) in
                guard let s = p.pages[a] else { set(p, a, .marker(.uffdWP)); return }
                switch s {
                case .present(var pp):
                    // Every present entry is written, protected already or not.
                    pp.attrs.remove(.writable); pp.attrs.insert(.uffdWP); set(p, a, .present(pp), rewrite: true)
                case .marker: break   // guard and poison markers stay as they are, a uffd-wp marker has the bit
                case .swap(let sl, let b): set(p, a, .swap(slot: sl, bits: b.union(.uffdWP)))
                case .migration(let k, let f, let i, let y, let d, let b, let l):
                    set(p, a, .migration(readableKind(k, f), folio: f, page: i, young: y, dirty: d, bits: b.union(.uffdWP), level: l))
                case .devicePrivate(let f, let w, let b): set(p, a, .devicePrivate(folio: f, writable: w, bits: b.union(.uffdWP)))
                case .deviceExclusive(let f, let i, let b): set(p, a, .deviceExclusive(folio: f, page: i, bits: b.union(.uffdWP)))
                case .hwpoison(let fr, let b): set(p, a, .hwpoison(fr, bits: b.union(.uffdWP)))
                }
            }
        }
    }

    /// `AddressSpace.readableMigrationEntry`: a protection change makes a
    /// writable migration entry readable, exclusive for an anonymous folio.
    func readableKind(_ k: MigrationKind, _ f: ReferenceFolioID) -> MigrationKind {
        k == .write ? (folios[f]!.isAnon ? .readExclusive : .read) : k
    }

    /// `madvise(MADV_GUARD_INSTALL)` (PageWalk's `madviseGuardInstall`): VMA
    /// by VMA in address order, each marked VM_MAYBE_GUARD, zapped, and its
    /// none entries made guard markers; the first VMA that may not hold
    /// them stops the call (-EINVAL, the earlier ones stay done); a gap is
    /// reported (-ENOMEM) after the mapped parts are done.
    public func installGuardMarkers(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        try forEachMadviseVMA(p, start, end) { (v, s, e) throws(ModelError) in
            guard guardAllowed(v, allowLocked: false) else {
                throw .wrongVMAKind(address: v.start, reason: "guard regions are refused in hugetlb, locked and PFN-mapped VMAs")
            }
            v.flags.insert(.maybeGuard)
            if v.isAnonymous { v.hasAnonVMA = true }   // anon_vma_prepare()
            try zapRange(p, v, s, e, dropMarkers: false)
            try forEachPTE(p, s, e, allocate: true) { (a) throws(ModelError) in
                guard let st = p.pages[a] else { set(p, a, .marker(.guardRegion)); return }
                if case .marker(let m) = st { set(p, a, .marker(m.union(.guardRegion))) }
            }
        }
    }

    /// `madvise(MADV_GUARD_REMOVE)`: the same walk, clearing guard markers;
    /// locked VMAs are allowed, hugetlb and special ones are not (-EINVAL).
    public func removeGuardMarkers(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        try forEachMadviseVMA(p, start, end) { (v, s, e) throws(ModelError) in
            guard guardAllowed(v, allowLocked: true) else {
                throw .wrongVMAKind(address: v.start, reason: "guard regions are refused in hugetlb and PFN-mapped VMAs")
            }
            try forEachPTE(p, s, e, pmd: { _ in .skip }) { (a) throws(ModelError) in
                guard case .marker(let m)? = p.pages[a], m.contains(.guardRegion) else { return }
                let rest = m.subtracting(.guardRegion)
                set(p, a, rest.isEmpty ? nil : .marker(rest))
            }
        }
    }

    /// `is_valid_guard_vma()`.
    func guardAllowed(_ v: ReferenceVMA, allowLocked: Bool) -> Bool {
        v.flags.intersection(ReferenceModel.specialFlags).isEmpty && !v.isHugetlb && (allowLocked || !v.flags.contains(.locked))
    }

    /// `madvise_walk_vmas()`: an aligned start (the end rounded up to a
    /// page; an empty range does nothing), then `body` for each VMA piece
    /// in order, stopping at its first error; a gap throws `.noVMA` once the
    /// mapped pieces are done.
    func forEachMadviseVMA(_ p: ReferenceProcess, _ start: UInt64, _ end: UInt64,
                           _ body: (ReferenceVMA, UInt64, UInt64) throws(ModelError) -> Void) throws(ModelError) {
        guard start & Geometry.pageOffsetMask == 0 else { throw .unaligned(name: "madvise start", value: start, alignment: Geometry.pageSize) }
        guard end >= start, end <= UInt64.max - Geometry.pageSize else {
            throw .invalidRange(start: start, end: end, reason: "madvise: the range wraps")
        }
        let end = (end + Geometry.pageOffsetMask) & ~Geometry.pageOffsetMask
        guard start < end else { return }
        var gap: UInt64?
        var a = start
        for v in p.vmas(intersecting: start, end) {
            if a < v.start && gap == nil { gap = a }
            let s = max(a, v.start), e = min(end, v.end)
            try body(v, s, e)
            a = e
        }
        if a < end && gap == nil { gap = a }
        if let gap { throw .noVMA(address: gap) }
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
                set(p, a, .present(ReferencePresent(target: .pfn(base + (a - v.start) / Geometry.pageSize), attrs: attrs)))
            }
        }
    }
}
