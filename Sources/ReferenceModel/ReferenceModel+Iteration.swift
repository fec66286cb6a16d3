import MemoryModel

/// The reference's walkers, the counterpart of `AddressSpace+Iteration.swift`:
/// the same visiting order and PMD split-or-skip choices as the model's, so
/// operations built on them touch the same pages.
extension ReferenceModel {
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
                while b < next { try body(b); b += Geometry.pageSize }
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
            let first = a - UInt64(i) * Geometry.pageSize
            guard first >= start, first + (UInt64(Geometry.pageSize) << UInt64(fo.order)) <= end else { return }
            seen.insert(f)
            out.append((f, first))
        }
        return out
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
}
