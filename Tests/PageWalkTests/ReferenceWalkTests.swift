import Testing
import MemoryModel
import TestKit
import ReferenceModel
@testable import PageWalk

/// Random seeded scenarios applied to both the model and the page-state
/// reference (ReferenceModel, independent of page tables); the callback
/// walk must report, page by page, what the reference expects.
@Suite struct ReferenceWalkTests {
    /// What a page holds, in terms both sides can state.
    enum Kind: Equatable { case none, present(PageTableLevel, zero: Bool), swap, marker(PTEMarker), other }

    static func kind(_ e: ExpectedPage?) -> Kind {
        guard let e else { return .none }
        switch e {
        case .present(let p):
            if case .zero = p.target { return .present(p.level, zero: true) }
            if case .hugeZero = p.target { return .present(p.level, zero: true) }
            return .present(p.level, zero: false)
        case .swap: return .swap
        case .marker(let m): return .marker(m)
        default: return .other
        }
    }

    static func kind(_ raw: UInt64, _ level: PageTableLevel, _ mm: AddressSpace) -> Kind {
        if raw == 0 { return .none }
        let pte = PTE(rawValue: raw, architecture: mm.geometry.architecture)
        if level == .pte && pte.isPresent || level != .pte && PMD(rawValue: raw, architecture: pte.architecture).isPresent {
            let pfn = pte.pfn
            let zero = pfn == mm.memory.zeroPage.pfn || mm.memory.folio(containing: pfn)?.test(.hugeZeroPage) == true
            return .present(level, zero: zero)
        }
        switch SoftLeafEntry(decoding: raw, layout: mm.geometry.layout).leaf {
        case .swap: return .swap
        case .marker(let m): return .marker(m)
        default: return .other
        }
    }

    @Test(arguments: [Geometry.x86_64, .arm64, arm64ThreeLevel], [UInt64(11), 12, 13])
    func walksMatchTheReference(_ g: Geometry, _ seed: UInt64) throws {
        var rng = SeededRandom(seed: seed &+ UInt64(g.levels) << 8)
        let memory = try PhysicalMemory(budgetBytes: 1 << 30)
        let options = AddressSpaceOptions(pid: 1)
        let mm = try AddressSpace(geometry: g, memory: memory, options: options)
        let ref = ReferenceModel(geometry: g, options: options)
        ref.addProcess(pid: 1)
        let base: UInt64 = 1 << 30
        var at = base
        for _ in 0..<6 {
            at += UInt64.random(in: 0...2, using: &rng) * mb2 + UInt64.random(in: 1...8, using: &rng) * page
            let end = at + UInt64.random(in: 1...4, using: &rng) * mb2
            try mm.mmap(start: at, end: end, access: [.read, .write])
            try ref.mmap(pid: 1, start: at, end: end, access: [.read, .write])
            at = end
        }
        for vma in mm.vmas {
            for _ in 0..<4 {
                let s = vma.start + UInt64.random(in: 0..<(vma.size / page), using: &rng) * page
                let e = min(vma.end, s + UInt64.random(in: 1...700, using: &rng) * page)
                switch Int.random(in: 0..<5, using: &rng) {
                case 0: try mm.fault(s, e, write: false); try ref.fault(pid: 1, s, e, write: false)
                case 1: try mm.fault(s, e, write: true); try ref.fault(pid: 1, s, e, write: true)
                case 2: try mm.populateTHP(s, e); try ref.populateTHP(pid: 1, s, e)
                case 3: try madviseGuardInstall(mm, s, e); try ref.installGuardMarkers(pid: 1, s, e)
                default: try mm.zap(s, e); try ref.zap(pid: 1, s, e)
                }
            }
        }
        // Leaves are recorded whole and not descended, so nothing is split.
        var ops = MMWalkOps<[UInt64: Kind]>()
        ops.pteEntry = { p, a, _, walk in
            walk.privateData[a] = ReferenceWalkTests.kind(p.rawValue, .pte, walk.mm)
            return 0
        }
        ops.pmdEntry = { p, a, n, walk in
            guard p.entry.isLeaf || !(p.entry.isNone || p.entry.isPresent) else { return 0 }
            for x in stride(from: a, to: n, by: Int(page)) { walk.privateData[x] = ReferenceWalkTests.kind(p.rawValue, .pmd, walk.mm) }
            walk.action = .continue
            return 0
        }
        var seen: [UInt64: Kind] = [:]
        _ = try locked(mm) { () throws(PageWalkError) in try walkPageRange(mm, base, at, ops: ops, private: &seen) }
        let process = try #require(ref.process(1))
        var mismatches = 0
        for vma in mm.vmas {
            for a in stride(from: vma.start, to: vma.end, by: Int(page)) {
                let expected = Self.kind(process.pages[a])
                if (seen[a] ?? .none) != expected {
                    mismatches += 1
                    if mismatches <= 3 { Issue.record("\(g) seed \(seed) 0x\(String(a, radix: 16)): walk \(String(describing: seen[a])) reference \(expected)") }
                }
            }
        }
        #expect(mismatches == 0)
    }
}
