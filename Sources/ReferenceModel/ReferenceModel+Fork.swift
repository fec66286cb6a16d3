import MemoryModel

/// The reference's `fork`, the page-granular counterpart of
/// `AddressSpace+Fork.swift`. Each operation follows the documented semantics of
/// the model's operation (named in its comment), checks its arguments in the same
/// order and throws the same `ModelError` cases.
extension ReferenceModel {
    /// `AddressSpace.fork`: returns the child's pid (as given).
    public func fork(pid: Int, childPID: Int) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        let c = ReferenceProcess(pid: childPID, family: p.family)
        c.gateVMA = p.gateVMA          // dup_mm() copies mm->context
        processes.append(c)
        for vma in p.vmas where !vma.flags.contains(.dontCopy) {
            let cv = vma.copy(start: vma.start, end: vma.end)
            cv.flags.subtract([.uffdWP, .uffdMissing, .uffdMinor, .locked, .lockOnFault])
            if cv.hasAnonVMA { cv.anonVMA = ReferenceVMA.newAnonVMA() }   // anon_vma_fork()
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
                    let x = r + UInt64(k) << Geometry.pageShift
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
                // The parent's entries are write-protected in place
                // (wrprotect_ptes()): a folded block stays folded, an
                // unfolded one is not folded, even when it becomes uniform.
                let folded = p.foldedBlocks
                var b = a
                while b < next {
                    if let s = p.pages[b], let cs = copyPTE(p, b, s, cow: cow, vma: vma, tryFold: folded.contains(contBlockBase(b))) {
                        set(c, b, cs)
                    }
                    b += Geometry.pageSize
                }
            }
        }
    }

    func copyPTE(_ p: ReferenceProcess, _ a: UInt64, _ s: ExpectedPage, cow: Bool, vma: ReferenceVMA,
                 tryFold: Bool = true) -> ExpectedPage? {
        switch s {
        case .present(var pp):
            if cow { pp.attrs.remove(.writable) }
            set(p, a, .present(pp), tryFold: tryFold)
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
            for k in 0..<Int(vma.hugePageSize / Geometry.pageSize) {
                let x = a + UInt64(k) << Geometry.pageShift
                guard case .present(var q)? = p.pages[x] else { continue }
                q.attrs = pp.attrs
                set(p, x, .present(q))
                q.attrs = cp.attrs
                set(c, x, .present(q))
            }
        }
    }
}
