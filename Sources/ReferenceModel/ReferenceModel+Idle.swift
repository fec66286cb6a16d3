import MemoryModel

/// The reference's page-idle state (PG_idle): what DAMON's `mkold` leaves,
/// the page-granular counterpart of `DAMONVaddr.mkold` with the folio
/// rules of `Folio.markIdle` and `Folio.markAccessed`.
extension ReferenceModel {
    /// DAMON's `mkold` of the page holding `address` (`damon_va_mkold()`):
    /// a present page of a normal folio on an LRU list (not device memory)
    /// is made old — the whole PMD for a PMD-mapped THP, the whole huge
    /// page for hugetlb — and its folio becomes idle. A hole, the zero
    /// pages, PFN maps and non-present entries are left alone. The folio's
    /// young flag is not tracked.
    public func damonMkold(pid: Int, _ address: UInt64) throws(ModelError) {
        let p = try alive(pid)
        let a = address & ~Geometry.pageOffsetMask
        guard let vma = p.vma(containing: a), !vma.flags.contains(.pfnMap),
              case .present(let pp)? = p.pages[a], case .folio(let f, _) = pp.target,
              !pp.attrs.contains(.special), let folio = folios[f],
              folio.flags.isDisjoint(with: [.zoneDevice]) else { return }
        if vma.isHugetlb || pp.level == .pmd {
            let size = vma.isHugetlb ? vma.hugePageSize : ReferenceModel.pmdSize
            let base = a & ~(size - 1)
            for k in 0..<Int(size >> Geometry.pageShift) {
                let x = base + UInt64(k) << Geometry.pageShift
                guard case .present(var q)? = p.pages[x] else { continue }
                q.attrs.remove(.young)
                p.pages[x] = .present(q)
            }
        } else {
            updateAccess(p, a) { $0.remove(.young) }
        }
        folios[f]!.flags.insert(.idle)
    }
}
