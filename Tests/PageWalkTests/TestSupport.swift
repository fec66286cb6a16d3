import MemoryModel
@testable import PageWalk

let page: UInt64 = 4096
let mb2: UInt64 = 2 << 20
let gb1: UInt64 = 1 << 30

let arm64ThreeLevel = try! Geometry(.arm64, levels: 3)
let arm64TwoLevel = try! Geometry(.arm64, levels: 2)
/// x86-64 5- and 4-level, arm64 4-, 3- and 2-level.
let allGeometries: [Geometry] = [.x86_64FiveLevel, .x86_64, .arm64, arm64ThreeLevel, arm64TwoLevel]

func makeSpace(_ g: Geometry = .x86_64, budget: UInt64 = 512 << 20) throws -> AddressSpace {
    try AddressSpace(geometry: g, memory: PhysicalMemory(budgetBytes: budget))
}

/// Runs `body` with `mm`'s mmap lock held (read, or write).
@discardableResult
func locked<R, E: Error>(_ mm: AddressSpace, write: Bool = false, _ body: () throws(E) -> R) throws(E) -> R {
    if write { mm.mmapLock.lockWrite() } else { mm.mmapLock.lockRead() }
    defer { if write { mm.mmapLock.unlockWrite() } else { mm.mmapLock.unlockRead() } }
    return try body()
}

struct Hole: Hashable, CustomStringConvertible {
    let start: UInt64, end: UInt64, depth: Int32
    var description: String { "hole(0x\(String(start, radix: 16))-0x\(String(end, radix: 16)) d\(depth))" }
}

/// What a walk reported, in order.
struct WalkLog {
    var holes: [Hole] = []
    var ptes: [(addr: UInt64, raw: UInt64)] = []
    var pmds: [(addr: UInt64, next: UInt64, raw: UInt64)] = []
    var puds: [(addr: UInt64, next: UInt64, raw: UInt64)] = []
    var hugetlb: [(addr: UInt64, next: UInt64, hmask: UInt64, level: PageTableLevel, raw: UInt64)] = []
    /// Contiguous ranges covered by holes and PTEs, in walk order.
    var covered: [(UInt64, UInt64)] = []
    var violations: [String] = []
}

/// Ops that log holes and PTEs (and PMD/PUD entries when asked).
func loggingOps(pmd: Bool = false, pud: Bool = false) -> MMWalkOps<WalkLog> {
    var ops = MMWalkOps<WalkLog>()
    ops.pteHole = { s, e, d, walk in
        walk.privateData.holes.append(Hole(start: s, end: e, depth: d))
        walk.privateData.covered.append((s, e))
        return 0
    }
    ops.pteEntry = { p, a, n, walk in
        walk.privateData.ptes.append((a, p.rawValue))
        walk.privateData.covered.append((a, n))
        return 0
    }
    if pmd {
        ops.pmdEntry = { p, a, n, walk in
            walk.privateData.pmds.append((a, n, p.rawValue))
            return 0
        }
    }
    if pud {
        ops.pudEntry = { p, a, n, walk in
            walk.privateData.puds.append((a, n, p.rawValue))
            return 0
        }
    }
    return ops
}

/// The slot holding `level` entries for `addr`, allocating tables above it.
func slotAllocating(_ mm: AddressSpace, _ addr: UInt64, _ level: PageTableLevel) throws -> EntrySlot {
    var table = mm.root
    for lv in mm.tableLevels {
        let s = EntrySlot(table, mm.geometry.tableIndex(addr, lv), lv)
        if lv == level { return s }
        table = mm.lowerTable(try mm.installTable(at: s))
    }
    fatalError("no \(level) entries in \(mm.geometry)")
}

func guardMarker(_ mm: AddressSpace) throws -> UInt64 {
    try SoftLeafEntry(.marker(.guardRegion)).encode(mm.geometry.layout)
}

func isGuard(_ t: AddressSpace.Translation) -> Bool {
    if case .softLeaf(.pte, _, let e) = t, case .marker(let m) = e.leaf { return m.contains(.guardRegion) }
    return false
}

