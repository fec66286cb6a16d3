import MemoryModel

/// One folio as the kpageflags records describe it.
struct CapturedFolio {
    /// Index of the head's record.
    let first: Int
    let pfn: UInt64
    let order: Int
    let head: KPageFlags
    var pageCount: Int { 1 << order }
    var isHugetlb: Bool { head.contains(.huge) }
    var isAnon: Bool { head.contains(.anon) }
    var isZero: Bool { head.contains(.zeroPage) }
    /// Frames without a mappable page behind them at capture time.
    var isMappable: Bool { head.isDisjoint(with: [.buddy, .slab, .pgtable, .offline, .noPage]) }
}

/// What one pagemap word becomes.
enum PlannedEntry {
    case pte(PlannedPTE)
    case pmd(address: UInt64, folio: Int, attrs: LeafAttributes, word: Int)
    case hugetlb(address: UInt64, folio: Int, attrs: LeafAttributes, word: Int)
    case softLeaf(address: UInt64, SoftLeafEntry, word: Int)
}

struct PlannedPTE {
    var address: UInt64
    var pfn: UInt64
    var attrs: LeafAttributes
    /// Captured folio index; nil for the zero page and PFN mappings.
    var folio: Int?
    var word: Int
    /// kpagecount ≥ 2 (smaps counts the page as shared).
    var shared: Bool
    var folioDirty: Bool
    var folioReferenced: Bool
    var idle: Bool
}

final class RebuildSession {
    let snap: Snapshot
    let options: SnapshotRebuildOptions
    let kpfPath: String
    var warnings = WarningCollector()
    var stats = RebuildStats()

    var folios: [CapturedFolio] = []
    /// Record index → folio index.
    var folioOfRecord: [Int] = []
    var adopted: [Int: Folio] = [:]
    var cachedFolios: Set<Int> = []
    var referencedFolios: Set<Int> = []
    var unplaced: Set<UInt64> = []
    var zeroPFN: UInt64?
    var hugeZeroPFN: UInt64?
    var swapHolders: [UInt64: Int] = [:]
    /// Record index → pagemap's exclusive bit, where it contradicts kpagecount.
    var exclusiveFromPagemap: [Int: Bool] = [:]
    var nodeCount = 1
    /// Record index → present pagemap words naming it, over every captured
    /// process (filled on first use by the count check).
    var mappersOfRecord: [Int]?
    var geometry: Geometry = .x86_64
    var softDirty = false
    var memory: PhysicalMemory!

    init(snapshot: Snapshot, options: SnapshotRebuildOptions) throws {
        snap = snapshot
        self.options = options
        kpfPath = snapshot.directory + "/kpageflags"
        try indexRecords()
    }

    // MARK: kpageflags

    /// Checks order and frame range, and groups records into folios.
    func indexRecords() throws {
        let recs = snap.kpageflags
        folioOfRecord = [Int](repeating: -1, count: recs.count)
        for (i, r) in recs.enumerated() {
            if i > 0 && r.pfn <= recs[i - 1].pfn {
                throw SnapshotError.malformedBinary(path: kpfPath, offset: i * KPageFlagsRecord.byteSize,
                    reason: "record \(i) has pfn 0x\(rhex(r.pfn)), not above the previous 0x\(rhex(recs[i - 1].pfn))")
            }
            if r.pfn >= PhysicalMemory.tableBasePFN - 512 {
                throw SnapshotError.malformedBinary(path: kpfPath, offset: i * KPageFlagsRecord.byteSize,
                    reason: "pfn 0x\(rhex(r.pfn)) collides with the model's page-table frames (from 0x\(rhex(PhysicalMemory.tableBasePFN)))")
            }
        }
        var i = 0
        while i < recs.count {
            let r = recs[i]
            let offset = i * KPageFlagsRecord.byteSize
            if r.flags.contains(.compoundTail) && !r.flags.contains(.compoundHead) {
                throw SnapshotError.malformedBinary(path: kpfPath, offset: offset,
                    reason: "pfn 0x\(rhex(r.pfn)) is a compound tail whose head has no record")
            }
            var j = i + 1
            if r.flags.contains(.compoundHead) {
                while j < recs.count, recs[j].pfn == recs[j - 1].pfn + 1,
                      recs[j].flags.contains(.compoundTail), !recs[j].flags.contains(.compoundHead) { j += 1 }
                let n = j - i
                guard n >= 2, n & (n - 1) == 0, r.pfn % UInt64(n) == 0, n <= 1 << 18 else {
                    throw SnapshotError.malformedBinary(path: kpfPath, offset: offset,
                        reason: "compound page at pfn 0x\(rhex(r.pfn)) has \(n) recorded pages, not an aligned power of two ≥ 2 (a tail record is missing or extra)")
                }
            }
            let n = j - i
            let f = CapturedFolio(first: i, pfn: r.pfn, order: n.trailingZeroBitCount, head: r.flags)
            if f.isZero {
                if f.order == 0 { zeroPFN = f.pfn } else if f.order == 9 { hugeZeroPFN = f.pfn }
            }
            for k in i..<j { folioOfRecord[k] = folios.count }
            folios.append(f)
            i = j
        }
    }

    func recordIndex(_ pfn: UInt64) -> Int? { snap.recordIndex(pfn: pfn) }

    func folioIndex(_ pfn: UInt64) -> Int? { recordIndex(pfn).map { folioOfRecord[$0] } }

    /// A frame not used by any record, for a zero page the capture did not show.
    func freeFrame(near start: UInt64, alignment: UInt64) -> UInt64 {
        var p = start
        while true {
            if (p..<(p + alignment)).allSatisfy({ recordIndex($0) == nil }) { return p }
            p += alignment
        }
    }

    // MARK: run

    func run() throws -> RebuiltSnapshot {
        try prescan()
        let zp = zeroPFN ?? freeFrame(near: PhysicalMemory.zeroPagePFN, alignment: 1)
        let hzp = hugeZeroPFN ?? freeFrame(near: PhysicalMemory.hugeZeroPFN, alignment: 512)
        let maxSwap = Int(swapHolders.keys.map { $0 & Self.swapKeyOffsetMask }.max() ?? 0)
        do {
            memory = try PhysicalMemory(budgetBytes: budgetBytes, nodes: nodeCount,
                                        swapSlots: max(1 << 22, maxSwap + 1), zeroPagePFN: zp, hugeZeroPFN: hzp)
        } catch {
            throw SnapshotError.unsupported(path: kpfPath, reason: "cannot set up physical memory: \(error)")
        }
        var processes: [RebuiltProcess] = []
        for p in snap.processes {
            processes.append(try rebuildProcess(p))
        }
        checkMapcounts()
        stats.processes = processes.count
        stats.unplacedEntries = stats.unplacedEntries
        let report = RebuildReport(warnings: warnings.warnings, stats: stats, unplacedPFNs: unplaced.count)
        return RebuiltSnapshot(memory: memory, processes: processes, report: report)
    }

    /// Geometry, soft-dirty, node count, swap holders.
    func prescan() throws {
        let limit4 = Geometry.x86_64.userAddressLimit
        var needs5 = false
        for p in snap.processes {
            for (i, m) in p.maps.enumerated() {
                if !isGate(m) && m.end > limit4 { needs5 = true }
                if p.smaps[i].hasVMFlag("sd") { softDirty = true }
                let words = p.pagemapWords(vma: i)
                for (k, w) in zip(words.indices, words) where !w.isPresent && w.isSwapped {
                    guard let t = w.swapType, t < UInt64(SoftLeaf.maxSwapFiles), let offset = w.swapOffset else { continue }
                    try checkSwapOffset(offset, p, word: k, address: m.start + UInt64(k - words.startIndex) * Geometry.pageSize)
                    swapHolders[t << Self.swapKeyTypeShift | offset, default: 0] += 1
                }
            }
            for line in p.numaMaps {
                for (n, _) in line.nodes { nodeCount = max(nodeCount, min(n + 1, 16)) }
            }
        }
        geometry = options.geometry ?? (needs5 ? .x86_64FiveLevel : .x86_64)
    }

    /// Swap holders are keyed by type and offset in one word.
    static let swapKeyTypeShift: UInt64 = 50
    static let swapKeyOffsetMask: UInt64 = (1 << swapKeyTypeShift) - 1

    /// The rebuild's memory budget (captured frames plus the extra allowance).
    var budgetBytes: UInt64 { UInt64(snap.kpageflags.count) * Geometry.pageSize + options.extraBudgetBytes }

    /// A swap offset sizes the model's swap map (a count per slot up to the
    /// highest offset): it must fit the rebuild's memory budget first.
    func checkSwapOffset(_ offset: UInt64, _ p: ProcessSnapshot, word: Int, address: UInt64) throws {
        let slotBytes = UInt64(MemoryLayout<UInt32>.size)
        let (needed, overflow) = (offset &+ 1).multipliedReportingOverflow(by: slotBytes)
        guard offset < Self.swapKeyOffsetMask, !overflow, needed <= budgetBytes else {
            throw SnapshotError.malformedBinary(path: p.directory + "/pagemap", offset: word * 8,
                reason: "word at 0x\(rhex(address)): swap offset 0x\(rhex(offset)) needs a swap map beyond the rebuild's memory budget (\(budgetBytes) bytes)")
        }
    }

    func isGate(_ m: MapsLine) -> Bool { m.name == "[vsyscall]" && m.start >= Geometry.x86_64FiveLevel.userAddressLimit }

    // MARK: one process

    func rebuildProcess(_ p: ProcessSnapshot) throws -> RebuiltProcess {
        let name = p.status("Name") ?? p.cmdline.first ?? "process"
        let space: AddressSpace
        let vsyscall = try vsyscallMode(p)
        do {
            space = try AddressSpace(geometry: geometry, memory: memory,
                                     options: AddressSpaceOptions(softDirty: softDirty, pid: Int(p.pid), name: name,
                                                                  vsyscall: vsyscall))
        } catch {
            throw SnapshotError.unsupported(path: p.directory, reason: "cannot create the address space: \(error)")
        }
        var vmas: [VMA?] = []
        for i in p.maps.indices {
            vmas.append(try buildVMA(p, i, in: space))
        }
        stats.vmas += vmas.compactMap { $0 }.count
        for i in p.maps.indices {
            // The gate VMA has no pages to place: pagemap never reaches it.
            guard let vma = vmas[i], vma !== space.gateVMA else { continue }
            var plan = try planVMA(p, i, vma)
            checkCountsAgainstSmaps(plan, p, i)
            if options.matchSmapsCounters && !vma.isHugetlb { matchSmaps(&plan, p, i, vma) }
            try execute(plan, p, i, vma, space)
        }
        return RebuiltProcess(pid: p.pid, name: p.commandName, addressSpace: space, vmas: vmas)
    }
}
