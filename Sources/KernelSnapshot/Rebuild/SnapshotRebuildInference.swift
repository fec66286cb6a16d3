import MemoryModel

/// Matching smaps counters that pagemap cannot explain page by page.
///
/// smaps counts a page as dirty when its PTE (or PMD) is dirty or its folio
/// is, and as referenced when the PTE is young or the folio is referenced;
/// it splits dirty pages into shared (page mapcount ≥ 2) and private. The
/// fixed rules of `SnapshotRebuilder` give every PTE a dirty and a young
/// bit; this pass then changes those bits on PTE-mapped pages, in address
/// order (IDLE pages first for young), until each VMA's Shared_Dirty,
/// Private_Dirty and Referenced equal the captured values. Only pages whose
/// folio flags do not already decide the counter are touched; PMD and
/// hugetlb leaves keep the fixed rules. What cannot be met is warned
/// (`inferenceShortfall`).
extension RebuildSession {
    func matchSmaps(_ plan: inout [PlannedEntry], _ p: ProcessSnapshot, _ i: Int, _ vma: VMA) {
        let block = p.smaps[i]
        guard let sharedDirtyKB = block.kilobytes("Shared_Dirty"), let privateDirtyKB = block.kilobytes("Private_Dirty"),
              let referencedKB = block.kilobytes("Referenced") else { return }
        let recs = snap.kpageflags
        var sharedDirty = 0, privateDirty = 0, referenced = 0
        for e in plan {
            switch e {
            case .pte(let t):
                guard t.folio != nil else { continue }
                let dirty = t.attrs.contains(.dirty) || t.folioDirty
                if dirty { if t.shared { sharedDirty += 1 } else { privateDirty += 1 } }
                if t.attrs.contains(.young) || t.folioReferenced { referenced += 1 }
            case .pmd(_, let fi, let attrs, _):
                let c = folios[fi]
                guard c.pfn != hugeZeroPFN else { continue }
                let dirty = attrs.contains(.dirty) || c.head.contains(.dirty)
                for k in 0..<c.pageCount {
                    if dirty { if recs[c.first + k].count >= 2 { sharedDirty += 1 } else { privateDirty += 1 } }
                }
                if attrs.contains(.young) || c.head.contains(.referenced) { referenced += c.pageCount }
            default:
                continue
            }
        }
        let pid = p.pid
        let example = p.maps[i].raw
        func adjustDirty(shared: Bool, current: Int, target: Int) {
            var diff = target - current
            guard diff != 0 else { return }
            for j in plan.indices where diff != 0 {
                guard case .pte(var t) = plan[j], t.folio != nil, t.shared == shared, !t.folioDirty else { continue }
                if diff < 0 && t.attrs.contains(.dirty) {
                    t.attrs.remove(.dirty); diff += 1
                } else if diff > 0 && !t.attrs.contains(.dirty) {
                    t.attrs.insert(.dirty); diff -= 1
                } else { continue }
                plan[j] = .pte(t)
                stats.dirtyBitsAdjusted += 1
            }
            if diff != 0 {
                warnings.add(.inferenceShortfall, pid: pid,
                             detail: "\(shared ? "Shared_Dirty" : "Private_Dirty") \(diff > 0 ? "short by" : "over by") \(abs(diff)) pages after matching",
                             example: example, count: abs(diff))
            }
        }
        adjustDirty(shared: true, current: sharedDirty, target: Int(sharedDirtyKB / 4))
        adjustDirty(shared: false, current: privateDirty, target: Int(privateDirtyKB / 4))

        var excess = referenced - Int(referencedKB / 4)
        if excess > 0 {
            for pass in 0..<2 where excess > 0 {
                for j in plan.indices where excess > 0 {
                    switch plan[j] {
                    case .pte(var t):
                        guard t.folio != nil, !t.folioReferenced, t.attrs.contains(.young), t.idle == (pass == 0) else { continue }
                        t.attrs.remove(.young)
                        plan[j] = .pte(t)
                        excess -= 1
                        stats.youngBitsCleared += 1
                    case .pmd(let address, let fi, var attrs, let word):
                        // A PMD leaf is young or old as a whole (fork leaves the child's old).
                        let c = folios[fi]
                        guard c.pfn != hugeZeroPFN, !c.head.contains(.referenced), attrs.contains(.young),
                              c.head.contains(.idle) == (pass == 0), excess >= c.pageCount else { continue }
                        attrs.remove(.young)
                        plan[j] = .pmd(address: address, folio: fi, attrs: attrs, word: word)
                        excess -= c.pageCount
                        stats.youngBitsCleared += 1
                    default:
                        continue
                    }
                }
            }
        }
        if excess != 0 {
            warnings.add(.inferenceShortfall, pid: pid,
                         detail: "Referenced \(excess > 0 ? "over by" : "short by") \(abs(excess)) pages after matching",
                         example: example, count: abs(excess))
        }
    }
}
