import MemoryModel

/// The reference's page-fault handling, the page-granular counterpart of
/// `AddressSpace+Fault.swift`. Each operation follows the documented semantics of
/// the model's operation (named in its comment), checks its arguments in the same
/// order and throws the same `ModelError` cases.
extension ReferenceModel {
    func node(_ vma: ReferenceVMA, _ a: UInt64) -> Int {
        let n: Int
        switch vma.policy {
        case .default, .local: n = 0
        case .preferred(let x): n = x
        case .bind(let ns): n = ns.first ?? 0
        case .interleave(let ns), .weightedInterleave(let ns):
            n = ns.isEmpty ? 0 : ns[Int((a >> Geometry.pageShift) % UInt64(ns.count))]
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
                let none = (0..<Int((next - a) >> Geometry.pageShift)).map { a + UInt64($0) << Geometry.pageShift }.filter { p.pages[$0] == nil }
                var b = a
                while b < next {
                    if p.pages[b] != nil { try faultPage(p, vma, b, write: write) }
                    b += Geometry.pageSize
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
        if write && pp.attrs.contains(.uffdWP) { return true }             // userfaultfd would handle it
        let writable = pp.attrs.contains(.writable)
        if write && !writable, case .folio(let f, _) = pp.target, folios[f]!.isAnon, !folios[f]!.isKSM, folios[f]!.exclusive[0] {
            var n = pp
            n.attrs.formUnion([.writable, .dirty, .young])
            if tracksSoftDirty { n.attrs.insert(.softDirty) }
            setRegion(p, r, n)
            return true
        }
        if write && !writable, case .hugeZero = pp.target {
            // do_huge_zero_wp_pmd(): a new THP replaces the huge zero PMD.
            let f = newFolio(order: 9, node: node(vma, r), flags: [.anon, .swapBacked])
            folios[f]!.exclusive[0] = true
            let attrs = faultAttrs(vma, write: true, writable: true)
            for k in 0..<512 {
                set(p, r + UInt64(k) << Geometry.pageShift, .present(ReferencePresent(target: .folio(f, page: k), attrs: attrs,
                                                                      level: .pmd, entire: true)))
            }
            vma.hasAnonVMA = true
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
            let a = r + UInt64(k) << Geometry.pageShift
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
            if m.failsFaults { return }
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
        case .present(let pp):
            if write && !pp.attrs.contains(.writable) {
                try writeProtectFault(p, vma, a, pp)
                return
            }
            let softDirty = tracksSoftDirty
            updateAccess(p, a) { attrs in
                attrs.insert(.young)
                if write { attrs.insert(.dirty); if softDirty { attrs.insert(.softDirty) } }
            }
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
        mlockIfLocked(vma, cached)
        if !write { faultAround(p, vma, a, file) }
    }

    /// Fault-around: the cached pages of the aligned window around a read
    /// fault, inside the VMA and its PTE table, fill the none entries.
    func faultAround(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ a: UInt64, _ file: ReferenceFile) {
        guard vma.flags.isDisjoint(with: [.uffdWP, .uffdMinor]) else { return }
        let window = UInt64(options.faultAroundPages(tableEntries: Geometry.entriesPerTable)) << Geometry.pageShift
        guard window > Geometry.pageSize else { return }
        let table = pmdBase(a)
        let lo = max(a & ~(window - 1), vma.start, table)
        let hi = min(lo + window, vma.end, table + UInt64(Geometry.entriesPerTable) << Geometry.pageShift)
        var x = lo
        while x < hi {
            defer { x += Geometry.pageSize }
            guard x != a, p.pages[x] == nil, let f = file.cache[vma.pageIndex(x)],
                  !folios[f]!.flags.contains(.hwpoison) else { continue }
            var attrs = faultAttrs(vma, write: false, writable: vma.isShared && folios[f]!.flags.contains(.swapBacked))
            if geometry.architecture == .arm64 { attrs.remove(.young) }
            set(p, x, .present(ReferencePresent(target: .folio(f, page: 0), attrs: attrs)))
            mlockIfLocked(vma, f)
        }
    }

    func mapNewAnon(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ a: UInt64, _ attrs: LeafAttributes) {
        let f = newFolio(order: 0, node: node(vma, a), flags: [.anon, .swapBacked])
        folios[f]!.exclusive[0] = true
        set(p, a, .present(ReferencePresent(target: .folio(f, page: 0), attrs: attrs)))
        mlockIfLocked(vma, f)
    }

    /// The fault path's mlock: a small folio mapped into a VM_LOCKED VMA
    /// that is not VM_SPECIAL becomes mlocked and unevictable.
    func mlockIfLocked(_ vma: ReferenceVMA, _ f: ReferenceFolioID) {
        guard folios[f]!.order == 0, vma.flags.contains(.locked),
              vma.flags.isDisjoint(with: [.io, .dontExpand, .pfnMap, .mixedMap]) else { return }
        folios[f]!.flags.formUnion([.mlocked, .unevictable])
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
            set(p, a, .present(reuse), tryFold: false)
            return
        }
        if case .folio(let f, let i) = old.target, let fo = folios[f], fo.isAnon, !fo.isKSM {
            // wp_can_reuse_anon_folio(): the swap cache is freed first when it can be.
            if !fo.exclusive[i] && fo.mapcount == 1 && !fo.isLarge && fo.flags.contains(.swapCache) && fo.refcount == 2 {
                folioFreeSwap(f)
            }
            if fo.exclusive[i] || (folios[f]!.refcount == 1 && fo.mapcount == 1 && !fo.isLarge) {
                folios[f]!.exclusive[i] = true
                set(p, a, .present(reuse), tryFold: false)
                return
            }
        }
        if case .folio(let f, _) = old.target, old.attrs.contains(.dirty), !folios[f]!.isAnon { folios[f]!.flags.insert(.dirty) }
        set(p, a, nil)
        mapNewAnon(p, vma, a, faultAttrs(vma, write: true, writable: true))
        vma.hasAnonVMA = true
    }
}
