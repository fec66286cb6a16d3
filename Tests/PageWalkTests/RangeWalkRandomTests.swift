import Testing
import MemoryModel
@testable import PageWalk

/// Random seeded scenarios on every geometry: the range walker (batched and
/// unbatched) must report every page as the callback walker does.
@Suite struct RangeWalkRandomTests {
    /// What one page looks like to a walker: the entry word mapping it, or
    /// the depth of the hole covering it.
    enum Seen: Equatable { case entry(UInt64), hole(Int32) }

    /// Per page, from the range walker. Holes outside VMAs are asked for;
    /// none entries at upper levels are holes of their real depth, as
    /// `pte_hole` reports them; a PTE-level none is the zero entry.
    func rangeLog(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64, batching: Bool) throws -> [UInt64: Seen] {
        var seen: [UInt64: Seen] = [:]
        try mm.withMmapReadLock { lock in
            let options = RangeWalkOptions(batching: batching, reportHoles: true)
            for e in try mm.walk(start..<end, lock: lock, options: options) {
                for k in 0..<e.pageCount {
                    let a = e.start + UInt64(k) * page
                    switch e.content {
                    case .hole:
                        seen[a] = .hole(-1)
                    case .none:
                        seen[a] = e.level.tableLevel == .pte ? .entry(0)
                            : .hole(Int32(mm.geometry.realDepth(e.level.tableLevel.holeDepth)))
                    default:
                        // Rebuild the word of page k from the entry's first word.
                        switch mm.translate(a) {
                        case .present(_, let raw, _), .softLeaf(_, let raw, _): seen[a] = .entry(raw)
                        case .none: seen[a] = .entry(0)
                        }
                        if case .folio(let f, let first, _) = e.content,
                           case .present(_, _, let pfn) = mm.translate(a), pfn != f.pfn + UInt64(first + k) {
                            seen[a] = .entry(~0)
                        }
                    }
                }
            }
        }
        return seen
    }

    @Test(arguments: allGeometries, [UInt64(11), 12, 13])
    func rangeWalkerMatchesCallbackWalker(_ g: Geometry, _ seed: UInt64) throws {
        let base = RandomizedWalkTests()
        let (mm, start, end) = try base.scenario(g, seed: seed)
        // Extra entry kinds: mTHP, migration entries, markers.
        if let vma = mm.vmas.first(where: { $0.size >= 64 << 10 }) {
            try? mm.populateLargeFolios(vma.start, vma.start + (64 << 10), order: 4)
            try? mm.startMigration(vma.start, vma.start + (16 << 10))
        }
        let callback = try base.walkLog(mm, start, end, mode: .vmas)
        for batching in [true, false] {
            let range = try rangeLog(mm, start, end, batching: batching)
            var mismatches = 0
            for a in stride(from: start, to: end, by: Int(page)) {
                let c: Seen? = callback[a].map {
                    switch $0 {
                    case .entry(let w): return .entry(w)
                    case .hole(let d): return .hole(d)
                    }
                }
                if range[a] != c {
                    mismatches += 1
                    if mismatches <= 3 {
                        Issue.record("\(g) seed \(seed) batching \(batching): 0x\(String(a, radix: 16)) range \(String(describing: range[a])) callback \(String(describing: c))")
                    }
                }
            }
            #expect(mismatches == 0)
        }
    }
}
