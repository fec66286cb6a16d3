import MemoryModel

/// Everything a writer can change in an address space, as text lines to
/// compare two spaces built the same way (two walkers, one end state): each
/// mapped page's translation, the flags, reference and map counts of its
/// folio, every VMA's flags, and the RSS and table counters. Spaces built
/// by the same deterministic steps allocate the same frames, so nothing is
/// masked.
public func endState(_ mm: AddressSpace) -> [String] {
    var out: [String] = []
    for vma in mm.vmas {
        out.append("vma \(String(vma.start, radix: 16))-\(String(vma.end, radix: 16)) \(vma.flags)")
        var a = vma.start
        while a < vma.end {
            let t = mm.translate(a)
            switch t {
            case .none: break
            case .present(_, _, let pfn):
                let folio = mm.memory.folio(containing: pfn).map { "\($0)" } ?? "no folio"
                out.append("  \(String(a, radix: 16)) \(t) \(folio)")
            case .softLeaf:
                out.append("  \(String(a, radix: 16)) \(t)")
            }
            a += Geometry.pageSize
        }
    }
    out.append("counters \(mm.counterSnapshot)")
    return out
}

/// The first lines where two end states differ, for a failure message.
public func endStateDifferences(_ a: [String], _ b: [String], limit: Int = 8) -> [String] {
    var diffs: [String] = []
    for i in 0..<max(a.count, b.count) where diffs.count < limit {
        let x = i < a.count ? a[i] : "(none)", y = i < b.count ? b[i] : "(none)"
        if x != y { diffs.append("line \(i):\n  range    \(x)\n  callback \(y)") }
    }
    return diffs
}
