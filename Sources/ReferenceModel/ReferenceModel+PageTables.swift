import MemoryModel

/// The reference's view of page-table structure, the counterpart of
/// `AddressSpace+PageTables.swift`: the reference keeps no tables, only page
/// states and the set of PMD regions that have a PTE table, so table lookups are
/// answered from those.
extension ReferenceModel {
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
        for k in 0..<512 where p.pages[r + UInt64(k) << Geometry.pageShift] != nil { return false }
        return true
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
}
