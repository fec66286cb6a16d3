import MemoryModel
import Scenario
import KernelSnapshot

/// One address space of a model workload and what the benchmark walks in it.
struct ModelSpace {
    let mm: AddressSpace
    /// The user VMAs' ranges: pagemap reads each of them, as a reader of
    /// `/proc/PID/pagemap` preads each mapping it cares about.
    let ranges: [Range<UInt64>]
    /// First VMA start ..< last VMA end (user space): the raw walk's range.
    let span: Range<UInt64>
}

/// A workload built in the model.
struct ModelWorkload {
    let kind: WorkloadKind
    let detail: String
    let spaces: [ModelSpace]
    /// Virtual pages covered by the walked VMAs: the per-page denominator.
    let pages: Int
    let buildSeconds: Double
    /// The dense workload's populate figures.
    var populate: PopulateFigures?
    /// Keeps the built scenario or snapshot alive.
    let owner: Any?
}

/// The populate row: the dense mapping faulted in page by page.
struct PopulateFigures: Codable {
    var pages: Int
    var seconds: Double
    var pagesPerSecond: Double
    var rssGrowthBytes: Int
    var bytesPerMappedPage: Double
}

/// Where the model's workloads live (a 2 MiB-aligned user address).
let modelBase: UInt64 = 0x7f00_0000_0000

/// Deterministic pseudo-random numbers (SplitMix64), the same every run.
struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// The sparse workload's VMA addresses: `count` ranges of `bytes` scattered
/// over the user space of `userBits` bits (47: 4-level x86-64, 56: the user
/// half of the 57-bit 5-level space), 2 MiB aligned so no two share a PTE
/// table, sorted.
func sparseAddresses(count: Int, bytes: UInt64, seed: UInt64, userBits: Int = 47,
                     avoid: (UInt64) -> Bool = { _ in false }) -> [UInt64] {
    var rng = SplitMix(state: seed)
    let low: UInt64 = 1 << 32, high: UInt64 = (1 << UInt64(userBits)) - (1 << 32)
    let align: UInt64 = 2 << 20
    var set = Set<UInt64>()
    var out: [UInt64] = []
    while out.count < count {
        let a = (low + rng.next() % (high - low)) & ~(align - 1)
        let blocks = (bytes + align - 1) / align
        var clash = false
        for b in 0..<blocks + 1 where set.contains(a + b * align) || (b > 0 && set.contains(a - b * align)) { clash = true }
        if clash || avoid(a) { continue }
        set.insert(a)
        out.append(a)
    }
    return out.sorted()
}

/// The mTHP mix: 256 KiB segments cycling through 16K, 32K, 64K, 128K and
/// 256K folios (orders 2…6).
let mixOrders = [2, 3, 4, 5, 6]
let mixSegment: UInt64 = 256 << 10

/// The swap workload: runs of 32 pages alternately resident and swapped out.
let swapRunPages: UInt64 = 32

func space(_ mm: AddressSpace) -> ModelSpace {
    let limit = mm.geometry.userAddressLimit
    let ranges = mm.vmas.filter { $0.end <= limit }.map { $0.start..<$0.end }
    let span = (ranges.first?.lowerBound ?? 0)..<(ranges.last?.upperBound ?? 0)
    return ModelSpace(mm: mm, ranges: ranges, span: span)
}

func pageCount(_ spaces: [ModelSpace]) -> Int {
    spaces.reduce(0) { $0 + $1.ranges.reduce(0) { $0 + Int(($1.upperBound - $1.lowerBound) >> Geometry.pageShift) } }
}

func buildModelWorkload(_ kind: WorkloadKind, _ c: Config) throws -> ModelWorkload {
    let t0 = nanoseconds()
    let bytes = UInt64(c.size(kind)) << 20
    func plain(budget: UInt64, geometry: Geometry = .x86_64) throws -> (PhysicalMemory, AddressSpace) {
        let memory = try PhysicalMemory(budgetBytes: budget + (64 << 20), swapSlots: Int(budget >> Geometry.pageShift) + Geometry.pageBytes)
        return (memory, try AddressSpace(geometry: geometry, memory: memory))
    }
    func done(_ detail: String, _ spaces: [ModelSpace], populate: PopulateFigures? = nil, owner: Any? = nil) -> ModelWorkload {
        ModelWorkload(kind: kind, detail: detail, spaces: spaces, pages: pageCount(spaces),
                      buildSeconds: seconds(since: t0), populate: populate, owner: owner)
    }
    let end = modelBase + bytes
    switch kind {
    case .dense:
        let (_, mm) = try plain(budget: bytes)
        try mm.mmap(start: modelBase, end: end, access: [.read, .write], extraFlags: [.noHugePage])
        let rss0 = residentBytes()
        let p0 = nanoseconds()
        try mm.fault(modelBase, end, write: true)
        let secs = seconds(since: p0)
        let growth = residentBytes() - rss0
        let pages = Int(bytes >> Geometry.pageShift)
        let pop = PopulateFigures(pages: pages, seconds: secs, pagesPerSecond: Double(pages) / secs,
                                  rssGrowthBytes: growth, bytesPerMappedPage: Double(growth) / Double(pages))
        return done("\(bytes >> 20) MiB, order-0 folios, every page written", [space(mm)], populate: pop)
    case .thp:
        let (_, mm) = try plain(budget: bytes)
        try mm.mmap(start: modelBase, end: end, access: [.read, .write], extraFlags: [.hugePage])
        try mm.populateTHP(modelBase, end, write: true)
        return done("\(bytes >> 20) MiB, PMD-mapped order-9 folios (MADV_HUGEPAGE)", [space(mm)])
    case .mthp64:
        let (_, mm) = try plain(budget: bytes)
        try mm.mmap(start: modelBase, end: end, access: [.read, .write])
        try mm.populateLargeFolios(modelBase, end, order: 4)
        return done("\(bytes >> 20) MiB, PTE-mapped order-4 (64K) folios", [space(mm)])
    case .mthpMix:
        let (_, mm) = try plain(budget: bytes)
        try mm.mmap(start: modelBase, end: end, access: [.read, .write])
        var a = modelBase, k = 0
        while a < end {
            try mm.populateLargeFolios(a, min(a + mixSegment, end), order: mixOrders[k % mixOrders.count])
            a += mixSegment; k += 1
        }
        return done("\(bytes >> 20) MiB, 256K segments of 16K/32K/64K/128K/256K folios in turn", [space(mm)])
    case .swap:
        let (_, mm) = try plain(budget: bytes)
        try mm.mmap(start: modelBase, end: end, access: [.read, .write], extraFlags: [.noHugePage])
        try mm.fault(modelBase, end, write: true)
        let run = swapRunPages << Geometry.pageShift
        var a = modelBase + run
        while a < end { try mm.swapOut(a, min(a + run, end)); a += 2 * run }
        return done("\(bytes >> 20) MiB dense 4K, every other run of \(swapRunPages) pages swapped out", [space(mm)])
    case .sparse:
        let vmaBytes = UInt64(c.sparseKiB) << 10
        let geometry: Geometry = c.sparseFiveLevel ? .x86_64FiveLevel : .x86_64
        let (_, mm) = try plain(budget: UInt64(c.sparseVMAs) * vmaBytes, geometry: geometry)
        for a in sparseAddresses(count: c.sparseVMAs, bytes: vmaBytes, seed: c.seed, userBits: c.sparseUserBits) {
            try mm.mmap(start: a, end: a + vmaBytes, access: [.read, .write])
            try mm.fault(a, a + vmaBytes, write: true)
        }
        return done("\(c.sparseVMAs) VMAs of \(c.sparseKiB) KiB, 4K pages, scattered over \(c.sparseUserBits) bits (\(geometry))", [space(mm)])
    case .scenario:
        let built = try ScenarioBuilder.buildDefault()
        let spaces = built.processes.map { space($0.addressSpace) }
        return done("DefaultScenario: \(built.processes.count) processes, \(spaces.reduce(0) { $0 + $1.ranges.count }) VMAs",
                    spaces, owner: built)
    case .snapshot:
        let dir = c.snapshot ?? ""
        let rebuilt = try SnapshotRebuilder.rebuild(directory: dir)
        let spaces = rebuilt.processes.map { space($0.addressSpace) }
        return done("\(dir): \(rebuilt.processes.count) processes, \(spaces.reduce(0) { $0 + $1.ranges.count }) VMAs",
                    spaces, owner: rebuilt)
    }
}
