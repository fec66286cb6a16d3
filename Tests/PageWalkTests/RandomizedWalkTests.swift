import Testing
import MemoryModel
import TestKit
@testable import PageWalk

/// Random seeded scenarios built with the AddressSpace mutation API; every
/// page of the window must be reported by the walk exactly as
/// `AddressSpace.translate(_:)` sees it, by the callback walker over
/// closures (with VMAs, and ignoring them) and over a handler type.
@Suite struct RandomizedWalkTests {
    static let seeds: [UInt64] = [1, 2, 3, 4]

    /// Builds a scenario of anonymous VMAs (some THP-eligible) in a 64M
    /// window: faults, THPs, zaps, swap-outs and guard regions.
    func scenario(_ g: Geometry, seed: UInt64) throws -> (AddressSpace, UInt64, UInt64) {
        var rng = SeededRandom(seed: seed &* 0x1000_0001 &+ UInt64(g.levels))
        let mm = try makeSpace(g, budget: 1 << 30)
        let base = min(gb1, g.userAddressLimit / 4)
        let window: UInt64 = 64 << 20
        var at = base
        while at < base + window {
            at += UInt64.random(in: 0...3, using: &rng) * mb2 + UInt64.random(in: 0...8, using: &rng) * page
            let size = UInt64.random(in: 1...6, using: &rng) * mb2 + UInt64.random(in: 0...64, using: &rng) * page
            let end = min(at + size, base + window)
            if end <= at { break }
            try mm.mmap(start: at, end: end, access: [.read, .write], extraFlags: Bool.random(using: &rng) ? [.hugePage] : [])
            at = end
        }
        for vma in mm.vmas {
            for _ in 0..<Int.random(in: 0...4, using: &rng) {
                let pages = vma.size / page
                let s = vma.start + UInt64.random(in: 0..<pages, using: &rng) * page
                let e = min(vma.end, s + UInt64.random(in: 1...600, using: &rng) * page)
                switch Int.random(in: 0..<6, using: &rng) {
                case 0: try mm.fault(s, e, write: false)
                case 1, 2: try mm.fault(s, e, write: true)
                case 3: try mm.populateTHP(s, e)
                case 4: try madviseGuardInstall(mm, s, e)
                default:
                    try mm.fault(s, e, write: true)
                    try mm.swapOut(s, s + (e - s) / 2 / page * page + page)
                }
            }
            if Bool.random(using: &rng) {
                let s = vma.start + UInt64.random(in: 0..<(vma.size / page), using: &rng) * page
                try mm.zap(s, min(vma.end, s + 300 * page))
            }
        }
        return (mm, base, base + window)
    }

    /// Per page: the PTE or PMD leaf word the walk reported, or the depth of
    /// the hole covering it.
    enum Seen: Equatable { case entry(UInt64), hole(Int32) }

    /// The handlers of `walkLog` as a type, for the callback walker over
    /// handlers known at compile time (`MMWalkOpsProtocol`).
    struct SeenOps: MMWalkOpsProtocol {
        typealias Private = [UInt64: Seen]
        var hasPMDEntry: Bool { true }
        var hasPTEEntry: Bool { true }
        var hasPTEHole: Bool { true }

        func pteHole(_ s: UInt64, _ e: UInt64, _ d: Int32, _ walk: inout MMWalk<Private>) -> Int32 {
            for a in stride(from: s, to: e, by: Int(page)) { walk.privateData[a] = .hole(d) }
            return 0
        }
        func pteEntry(_ p: EntryPointer<PTE>, _ a: UInt64, _ n: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
            walk.privateData[a] = .entry(p.rawValue)
            return 0
        }
        func pmdEntry(_ p: EntryPointer<PMD>, _ a: UInt64, _ n: UInt64, _ walk: inout MMWalk<Private>) -> Int32 {
            guard p.entry.isLeaf || !(p.entry.isNone || p.entry.isPresent) else { return 0 }
            for x in stride(from: a, to: n, by: Int(page)) { walk.privateData[x] = .entry(p.rawValue) }
            walk.action = .continue
            return 0
        }
    }

    /// How `walkLog` walks: the closure walker with VMAs or ignoring them,
    /// or the walker over `SeenOps`.
    enum Mode: CaseIterable { case vmas, debug, typed }

    func walkLog(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64, mode: Mode) throws -> [UInt64: Seen] {
        var ops = MMWalkOps<[UInt64: Seen]>()
        ops.pteHole = { s, e, d, walk in
            for a in stride(from: s, to: e, by: Int(page)) { walk.privateData[a] = .hole(d) }
            return 0
        }
        ops.pteEntry = { p, a, _, walk in walk.privateData[a] = .entry(p.rawValue); return 0 }
        // Leaves are recorded whole and not descended, so nothing is split.
        ops.pmdEntry = { p, a, n, walk in
            guard p.entry.isLeaf || !(p.entry.isNone || p.entry.isPresent) else { return 0 }
            for x in stride(from: a, to: n, by: Int(page)) { walk.privateData[x] = .entry(p.rawValue) }
            walk.action = .continue
            return 0
        }
        var seen: [UInt64: Seen] = [:]
        seen.reserveCapacity(Int((end - start) / page))
        switch mode {
        case .debug:
            _ = try locked(mm, write: true) { () throws(PageWalkError) in
                try walkPageRangeDebug(mm, start, end, ops: ops, private: &seen)
            }
        case .vmas:
            _ = try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, start, end, ops: ops, private: &seen) }
        case .typed:
            _ = try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, start, end, ops: SeenOps(), private: &seen) }
        }
        return seen
    }

    @Test(arguments: allGeometries, seeds)
    func walksMatchTranslate(_ g: Geometry, _ seed: UInt64) throws {
        let (mm, start, end) = try scenario(g, seed: seed)
        for mode in Mode.allCases {
            let debug = mode == .debug
            let seen = try walkLog(mm, start, end, mode: mode)
            var mismatches = 0
            for a in stride(from: start, to: end, by: Int(page)) {
                let expected: Seen
                if !debug && mm.vma(containing: a) == nil {
                    expected = .hole(-1)
                } else {
                    switch mm.translate(a) {
                    case .none(let level):
                        expected = level == .pte ? .entry(0) : .hole(Int32(g.realDepth(level.holeDepth)))
                    case .present(_, let raw, _), .softLeaf(_, let raw, _):
                        expected = .entry(raw)
                    }
                }
                if seen[a] != expected {
                    mismatches += 1
                    if mismatches <= 3 {
                        Issue.record("\(g) seed \(seed) \(mode): 0x\(String(a, radix: 16)) walk \(String(describing: seen[a])) translate \(expected)")
                    }
                }
            }
            #expect(mismatches == 0)
        }
    }
}
