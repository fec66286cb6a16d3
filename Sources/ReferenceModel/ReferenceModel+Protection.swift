import MemoryModel

/// The reference's `mprotect`, `mlock` and `munlock`, the page-granular
/// counterpart of `AddressSpace+Protection.swift`. Each operation follows the
/// documented semantics of the model's operation (named in its comment), checks
/// its arguments in the same order and throws the same `ModelError` cases.
extension ReferenceModel {
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
        var populate: [Range<UInt64>] = []
        for vma in try isolate(p, start, end) {
            if AddressSpace.populatesOnMprotect(vma.flags, access) { populate.append(vma.start..<vma.end) }
            var flags = vma.flags.subtracting(.access).union(access)
            if access.contains(.write) && vma.isPrivate && !vma.isHugetlb && !vma.isPFNMap {
                flags.insert(.account)
            } else if !access.contains(.write) && vma.isAnonymous && !vma.hasAnonVMA {
                // Never faulted: the commit charge goes back (mprotect_fixup()).
                flags.remove(.account)
            }
            // A change of the executable or PROT_NONE state rewrites every
            // entry, even where the compared attributes stay.
            let rewritesAll = vma.flags.contains(.exec) != flags.contains(.exec)
                || vma.flags.intersection(.access).isEmpty != flags.intersection(.access).isEmpty
            vma.flags = flags
            if vma.isHugetlb {
                if !vma.flags.contains(.write) {
                    var a = vma.start
                    while a < vma.end {
                        if case .present(var pp)? = p.pages[a] { pp.attrs.remove(.writable); set(p, a, .present(pp)) }
                        a += Geometry.pageSize
                    }
                }
                continue
            }
            try changeProtection(p, vma, rewritesAll: rewritesAll)
        }
        merge(p, start, end)
        for r in populate { try populateForWrite(p, r) }
    }

    /// `AddressSpace`'s populate after mprotect: each page of `range`
    /// faulted for write up to the first guard or poison marker.
    private func populateForWrite(_ p: ReferenceProcess, _ range: Range<UInt64>) throws(ModelError) {
        let stop = p.pages.compactMap { (a, st) -> UInt64? in
            guard range.contains(a), case .marker(let m) = st, m.failsFaults else { return nil }
            return a
        }.min() ?? range.upperBound
        for vma in try covered(p, range.lowerBound, range.upperBound, "mprotect") {
            let s = max(range.lowerBound, vma.start), e = min(stop, vma.end)
            guard s < e, vma.flags.contains(.write), !vma.flags.contains(.pfnMap), !vma.flags.contains(.mixedMap) else { continue }
            if vma.isHugetlb { try populateHugetlbRange(p, vma, s, e, write: true) } else { try faultPTEs(p, vma, s, e, write: true) }
        }
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

    func changeProtection(_ p: ReferenceProcess, _ vma: ReferenceVMA, rewritesAll: Bool = false) throws(ModelError) {
        try forEachPTE(p, vma.start, vma.end, pmd: { (a) throws(ModelError) -> PMDDecision in
            guard a % ReferenceModel.pmdSize == 0, a + ReferenceModel.pmdSize <= vma.end else { return .split }
            if case .present(let pp)? = p.pages[a] { self.setRegion(p, a, self.protect(pp, vma)) }
            return .skip
        }) { (a) throws(ModelError) in
            guard let s = p.pages[a] else { return }
            switch s {
            case .present(let pp):
                let n = ExpectedPage.present(protect(pp, vma))
                if n != s {
                    set(p, a, n)
                } else if rewritesAll {
                    noteContPTEWrite(p, a, n, tryFold: true)
                } else {
                    noteUnchangedRewrite(p, a)
                }
            case .migration(.write, let f, let i, let y, let d, let b, let l) where !vma.flags.contains(.write):
                set(p, a, .migration(.readExclusive, folio: f, page: i, young: y, dirty: d, bits: b, level: l))
            case .devicePrivate(let f, true, let b) where !vma.flags.contains(.write):
                set(p, a, .devicePrivate(folio: f, writable: false, bits: b))
            default: break
            }
        }
    }

    /// `AddressSpace.mlock`: every VMA locked first, then populated in
    /// address order up to the first guard or poison marker.
    public func mlock(pid: Int, _ start: UInt64, _ end: UInt64, onFault: Bool = false) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        _ = try covered(p, start, end, "mlock")
        // Hugetlb and VM_SPECIAL VMAs are populated but never VM_LOCKED.
        let lockable = { (v: ReferenceVMA) in !v.isHugetlb && v.flags.intersection(Self.specialFlags).isEmpty }
        for vma in try isolate(p, start, end, where: lockable) {
            vma.flags.insert(.locked)
            if onFault { vma.flags.insert(.lockOnFault) } else { vma.flags.remove(.lockOnFault) }
        }
        merge(p, start, end)
        var failedAt: UInt64?
        for vma in try covered(p, start, end, "mlock") {
            let s = max(start, vma.start), e = min(end, vma.end)
            if vma.flags.contains(.pfnMap) || vma.flags.contains(.io) { continue }
            // Only VMAs that took VM_LOCKONFAULT are left unpopulated.
            if vma.flags.contains(.lockOnFault) {
                try setMlocked(p, vma, true)
                continue
            }
            let write = vma.flags.contains(.write) && !vma.flags.contains(.shared)
            if vma.isHugetlb { try populateHugetlbRange(p, vma, s, e, write: write); continue }
            // A PROT_NONE VMA cannot be populated: the populate stops there too.
            if vma.flags.intersection(.access).isEmpty { failedAt = failedAt ?? s; continue }
            if failedAt != nil { try setMlocked(p, vma, true); continue }
            let stop = p.pages.compactMap { (a, st) -> UInt64? in
                guard a >= s, a < e, case .marker(let m) = st, m.failsFaults else { return nil }
                return a
            }.min()
            if (stop ?? e) > s { try faultPTEs(p, vma, s, stop ?? e, write: write) }
            try setMlocked(p, vma, true)
            failedAt = stop
        }
        if let failedAt { throw .faultFailed(address: failedAt, reason: "a guard or poison marker or a PROT_NONE VMA met while populating for mlock") }
    }

    /// `AddressSpace.munlock`.
    public func munlock(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        _ = try covered(p, start, end, "munlock")
        for vma in try isolate(p, start, end, where: { $0.flags.contains(.locked) }) {
            vma.flags.subtract([.locked, .lockOnFault])
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
            let first = a - UInt64(i) * Geometry.pageSize
            if !on || (first >= vma.start && first + (UInt64(Geometry.pageSize) << UInt64(folios[f]!.order)) <= vma.end) { apply(f) }
        }
    }
}
