import MemoryModel

/// Builds MemoryModel address spaces from a read `Snapshot`: one
/// `AddressSpace` per captured pid, all on one `PhysicalMemory`, folios
/// placed at the captured PFNs (shared between pids that map the same
/// frame), entries as pagemap shows them.
///
/// What pagemap and kpageflags do not show is inferred by fixed, documented
/// rules (docs/SNAPSHOT-REBUILD.md has the full table):
///
/// | state                        | rule                                                                      |
/// |------------------------------|---------------------------------------------------------------------------|
/// | VMA flags                    | exactly the smaps VmFlags mnemonics; perms must agree                     |
/// | VMA backing                  | `pf` → PFN range; `ht` → hugetlb (KernelPageSize); `/dev/zero (deleted)`, `/SYSV…`, `/memfd:…`, `/dev/shm/…` or a page that is swap-backed and not anon → shmem; other inode ≠ 0 → file; else anonymous |
/// | folio extent, order          | COMPOUND_HEAD … last COMPOUND_TAIL; HUGE → hugetlb                         |
/// | folio flags                  | kpageflags bits one to one; MAPPEDTODISK on ANON = PageAnonExclusive      |
/// | NUMA node                    | the VMA's single `N<node>` in numa_maps, else node 0 (warned)             |
/// | PMD leaf                     | aligned, fully present run of one order-9 THP in one VMA, as many as the VMA's AnonHugePages/ShmemPmdMapped/FilePmdMapped allow |
/// | PTE writable                 | anon: VM_WRITE and PageAnonExclusive and not KSM; shared file/shmem: VM_WRITE and (shmem or folio dirty); else read-only; never with uffd-wp |
/// | PTE dirty                    | anon: unless lazyfree, KSM, or clean in the swap cache; file: folio dirty and writable; then matched to smaps Shared_/Private_Dirty |
/// | PTE young                    | set, then cleared (IDLE pages first) to match smaps Referenced            |
/// | swap-PTE exclusive           | the entry is held by exactly one captured PTE of a private VMA            |
/// | swap count                   | number of captured PTEs holding the entry                                 |
/// | page cache                   | non-anon folio mapped through a file/shmem VMA, at the VMA's page index   |
/// | external mappings            | kpagecount − rebuilt mapcount, added to the page (options)                |
public enum SnapshotRebuilder {
    /// Reads the snapshot at `directory` and rebuilds it.
    public static func rebuild(directory: String, options: SnapshotRebuildOptions = .init()) throws(SnapshotError) -> RebuiltSnapshot {
        try rebuild(SnapshotReader.read(directory: directory), options: options)
    }

    /// Rebuilds `snapshot`. Throws `SnapshotError` (naming file and offset
    /// or line) for corrupt or inconsistent input; nothing is returned then,
    /// and everything built so far is released.
    public static func rebuild(_ snapshot: Snapshot, options: SnapshotRebuildOptions = .init()) throws(SnapshotError) -> RebuiltSnapshot {
        do {
            let b = try RebuildSession(snapshot: snapshot, options: options)
            return try b.run()
        } catch {
            throw SnapshotError.typed(error, in: snapshot.directory)
        }
    }

    /// VmFlags mnemonic → model flag (Linux 6.18 `show_smap_vma_flags()`).
    public static let vmFlagMnemonics: [String: VMFlags] = [
        "rd": .read, "wr": .write, "ex": .exec, "sh": .shared, "mr": .mayRead, "mw": .mayWrite,
        "me": .mayExec, "ms": .mayShare, "gd": .growsDown, "pf": .pfnMap, "gu": .maybeGuard,
        "lo": .locked, "io": .io, "sr": .seqRead, "rr": .randRead, "dc": .dontCopy, "de": .dontExpand,
        "lf": .lockOnFault, "ac": .account, "nr": .noReserve, "ht": .hugetlb, "sf": .sync, "ar": .arch1,
        "wf": .wipeOnFork, "dd": .dontDump, "sd": .softDirty, "mm": .mixedMap, "hg": .hugePage,
        "nh": .noHugePage, "mg": .mergeable, "um": .uffdMissing, "uw": .uffdWP, "ui": .uffdMinor,
        "sl": .sealed,
    ]

    /// kpageflags → model page flags (folio-wide part; per-page flags and
    /// the zero pages are handled separately).
    public static func pageFlags(_ k: KPageFlags) -> PageFlags {
        var f: PageFlags = []
        let pairs: [(KPageFlags, PageFlags)] = [
            (.locked, .locked), (.referenced, .referenced), (.uptodate, .uptodate), (.dirty, .dirty),
            (.lru, .lru), (.active, .active), (.writeback, .writeback), (.reclaim, .reclaim),
            (.anon, .anon), (.swapBacked, .swapBacked), (.swapCache, .swapCache),
            (.unevictable, .unevictable), (.mlocked, .mlocked), (.ksm, .ksm), (.reserved, .reserved),
            (.idle, .idle), (.private, .private), (.huge, .hugetlb),
        ]
        for (a, b) in pairs where k.contains(a) { f.insert(b) }
        // PG_mappedtodisk doubles as PG_anon_exclusive on anonymous folios.
        if k.contains(.mappedToDisk) && !k.contains(.anon) { f.insert(.mappedToDisk) }
        return f
    }
}

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
        let capturedBytes = UInt64(snap.kpageflags.count) * Geometry.pageSize
        let zp = zeroPFN ?? freeFrame(near: PhysicalMemory.zeroPagePFN, alignment: 1)
        let hzp = hugeZeroPFN ?? freeFrame(near: PhysicalMemory.hugeZeroPFN, alignment: 512)
        let maxSwap = swapHolders.keys.map { Int($0 & ((1 << 50) - 1)) }.max() ?? 0
        do {
            memory = try PhysicalMemory(budgetBytes: capturedBytes + options.extraBudgetBytes, nodes: nodeCount,
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
                for w in words where !w.isPresent && w.isSwapped {
                    let t = w.rawValue & 0x1f
                    if t < 24 { swapHolders[t << 50 | (w.swapOffset ?? 0), default: 0] += 1 }
                }
            }
            for line in p.numaMaps {
                for (n, _) in line.nodes { nodeCount = max(nodeCount, min(n + 1, 16)) }
            }
        }
        geometry = options.geometry ?? (needs5 ? .x86_64FiveLevel : .x86_64)
    }

    func isGate(_ m: MapsLine) -> Bool { m.name == "[vsyscall]" && m.start >= Geometry.x86_64FiveLevel.userAddressLimit }

    // MARK: one process

    func rebuildProcess(_ p: ProcessSnapshot) throws -> RebuiltProcess {
        let name = p.status("Name") ?? p.cmdline.first ?? "process"
        let space: AddressSpace
        do {
            space = try AddressSpace(geometry: geometry, memory: memory,
                                     options: AddressSpaceOptions(softDirty: softDirty, pid: Int(p.pid), name: name))
        } catch {
            throw SnapshotError.unsupported(path: p.directory, reason: "cannot create the address space: \(error)")
        }
        var vmas: [VMA?] = []
        for i in p.maps.indices {
            vmas.append(try buildVMA(p, i, in: space))
        }
        stats.vmas += vmas.compactMap { $0 }.count
        for i in p.maps.indices {
            guard let vma = vmas[i] else { continue }
            var plan = try planVMA(p, i, vma)
            if options.matchSmapsCounters && !vma.isHugetlb { matchSmaps(&plan, p, i, vma) }
            try execute(plan, p, i, vma, space)
        }
        return RebuiltProcess(pid: p.pid, name: p.commandName, addressSpace: space, vmas: vmas)
    }

    // MARK: VMAs

    func buildVMA(_ p: ProcessSnapshot, _ i: Int, in space: AddressSpace) throws -> VMA? {
        let m = p.maps[i]
        let block = p.smaps[i]
        let smapsPath = p.directory + "/smaps"
        let gate = isGate(m)
        if gate && !options.includeGateVMA {
            warnings.add(.gateVMASkipped, pid: p.pid, detail: "\(m.name) (the kernel's gate VMA, outside the mm)", example: m.raw)
            return nil
        }
        guard let flagsIndex = block.fields.firstIndex(where: { $0.name == "VmFlags" }) else {
            throw SnapshotError.malformedText(path: smapsPath, line: block.headerLine,
                reason: "VMA \(rhex(m.start))-\(rhex(m.end)) has no VmFlags line")
        }
        let flagsLine = block.headerLine + flagsIndex + 1
        var flags: VMFlags = []
        for mn in block.vmFlags {
            if let f = SnapshotRebuilder.vmFlagMnemonics[mn] { flags.insert(f) } else {
                warnings.add(.unknownVMFlag, pid: p.pid, detail: "VmFlags '\(mn)'", example: "\(smapsPath):\(flagsLine)")
            }
        }
        let permsOK = m.isReadable == flags.contains(.read) && m.isWritable == flags.contains(.write)
            && m.isExecutable == flags.contains(.exec) && m.isShared == flags.contains(.mayShare)
        guard permsOK else {
            throw SnapshotError.malformedText(path: smapsPath, line: flagsLine,
                reason: "VmFlags '\(block.vmFlags.joined(separator: " "))' disagree with permissions '\(m.perms)'")
        }
        let words = p.pagemapWords(vma: i)
        var hugeSize: UInt64 = 0
        if flags.contains(.hugetlb) {
            guard let kb = block.kernelPageSizeKB, geometry.hugetlbSizes.contains(kb * 1024) else {
                throw SnapshotError.malformedText(path: smapsPath, line: block.headerLine,
                    reason: "hugetlb VMA with KernelPageSize \(block.kernelPageSizeKB.map { "\($0) kB" } ?? "missing"), not a huge page size of \(geometry)")
            }
            hugeSize = kb * 1024
        }
        let device = DeviceNumber(major: m.devMajor, minor: m.devMinor)
        let pgoff = m.offset / Geometry.pageSize
        let backing: VMABacking
        var name: String? = m.name.isEmpty ? nil : m.name
        if flags.contains(.pfnMap) {
            let first = words.enumerated().first { $0.element.isPresent }
            let pfn = first.map { ($0.element.pfn ?? 0) &- UInt64($0.offset) } ?? 0
            backing = .pfnRange(firstPFN: pfn)
        } else if flags.contains(.hugetlb) {
            backing = .file(memory.file(path: m.name, device: device, inode: m.inode, isShmem: false), pageOffset: pgoff)
            name = nil
        } else if isShmem(m, words) {
            backing = .shmem(memory.file(path: m.name, device: device, inode: m.inode, isShmem: true), pageOffset: pgoff)
            name = nil
        } else if m.inode != 0 || (m.name.hasPrefix("/") && !m.name.hasPrefix("/anon_hugepage")) {
            backing = .file(memory.file(path: m.name, device: device, inode: m.inode, isShmem: false), pageOffset: pgoff)
            name = nil
        } else {
            backing = .anonymous
        }
        // anon_vma: any anonymous page or swap entry in the VMA.
        var hasAnon = false
        for w in words {
            if w.isSwapped && !w.isPresent { hasAnon = true; break }
            if let pfn = w.pfn, let fi = folioIndex(pfn), folios[fi].isAnon { hasAnon = true; break }
        }
        let policy = parsePolicy(p, m)
        if let line = p.numaMaps.first(where: { $0.start == m.start }), line.nodes.count > 1 {
            warnings.add(.nodeUnknown, pid: p.pid, detail: "VMA pages on \(line.nodes.count) nodes; all placed on the first",
                         example: line.raw)
        }
        do {
            return try space.insertCapturedVMA(start: m.start, end: m.end, flags: flags, backing: backing, name: name,
                                               hugePageSize: hugeSize, policy: policy, protectionKey: block.protectionKey ?? 0,
                                               hasAnonVMA: hasAnon, gateArea: gate)
        } catch {
            throw SnapshotError.malformedText(path: p.directory + "/maps", line: i + 1, reason: "cannot build VMA: \(error)")
        }
    }

    func isShmem(_ m: MapsLine, _ words: ArraySlice<PagemapWord>) -> Bool {
        let n = m.name
        if n == "/dev/zero (deleted)" || n.hasPrefix("/SYSV") || n.hasPrefix("/memfd:") || n.hasPrefix("/dev/shm/") { return true }
        guard m.inode != 0 else { return false }
        for w in words {
            if let pfn = w.pfn, let fi = folioIndex(pfn) {
                let f = folios[fi]
                if !f.isAnon && f.head.contains(.swapBacked) && !f.isHugetlb { return true }
            }
        }
        return false
    }

    /// The NUMA node of the VMA's pages: its only `N<node>` in numa_maps.
    func node(_ p: ProcessSnapshot, _ m: MapsLine) -> Int {
        guard let line = p.numaMaps.first(where: { $0.start == m.start }), let first = line.nodes.first else { return 0 }
        return min(max(first.node, 0), nodeCount - 1)
    }

    func parsePolicy(_ p: ProcessSnapshot, _ m: MapsLine) -> MemoryPolicy {
        guard let line = p.numaMaps.first(where: { $0.start == m.start }) else { return .default }
        var s = Substring(line.policy)
        let weighted = s.hasPrefix("weighted ")
        if weighted { s = s.dropFirst("weighted ".count) }
        let parts = s.split(separator: ":", maxSplits: 1)
        let mode = parts.first.map { $0.split(separator: "=").first.map(String.init) ?? "" } ?? ""
        let nodes: [Int] = parts.count > 1 ? parseNodeList(parts[1]) : []
        switch mode {
        case "bind": return .bind(nodes)
        case "interleave": return weighted ? .weightedInterleave(nodes) : .interleave(nodes)
        case "prefer", "preferred": return .preferred(nodes.first ?? 0)
        case "local": return .local
        default: return .default
        }
    }

    func parseNodeList(_ s: Substring) -> [Int] {
        var out: [Int] = []
        for part in s.split(separator: ",") {
            let r = part.split(separator: "-")
            if r.count == 2, let a = Int(r[0]), let b = Int(r[1]), a <= b { out += Array(a...b) }
            else if let a = Int(part) { out.append(a) }
        }
        return out
    }

    // MARK: planning entries

    func planVMA(_ p: ProcessSnapshot, _ i: Int, _ vma: VMA) throws -> [PlannedEntry] {
        let m = p.maps[i]
        let words = p.pagemapWords(vma: i)
        let base = p.vmaPageRanges[i].lowerBound
        let block = p.smaps[i]
        var plan: [PlannedEntry] = []
        plan.reserveCapacity(words.count)
        let vmaSoftDirty = vma.flags.contains(.softDirty)
        // PMD budgets by kind (nil: unlimited).
        var anonPMDs: Int? = nil, shmemPMDs: Int? = nil, filePMDs: Int? = nil
        if options.pmdMappingsFromSmaps {
            anonPMDs = block.kilobytes("AnonHugePages").map { Int($0 / 2048) }
            shmemPMDs = block.kilobytes("ShmemPmdMapped").map { Int($0 / 2048) }
            filePMDs = block.kilobytes("FilePmdMapped").map { Int($0 / 2048) }
        }
        var k = 0
        while k < words.count {
            let w = words[words.startIndex + k]
            let address = m.start + UInt64(k) * Geometry.pageSize
            let wordIndex = base + k
            if w.rawValue == 0 || (vmaSoftDirty && w.rawValue == PagemapWord.softDirtyBit) { k += 1; continue }
            if w.isPresent {
                let pfn = w.pfn ?? 0
                if vma.isHugetlb {
                    k += try planHugetlb(p, vma, words, k, address, wordIndex, &plan)
                    continue
                }
                if let run = pmdCandidate(vma, words, k, address, pfn) {
                    let f = folios[run]
                    var allowed = true
                    if f.pfn != hugeZeroPFN {
                        let isShmemFolio = !f.isAnon && f.head.contains(.swapBacked)
                        func take(_ budget: inout Int?) -> Bool {
                            guard let b = budget else { return true }
                            if b > 0 { budget = b - 1; return true }
                            return false
                        }
                        allowed = f.isAnon ? take(&anonPMDs) : isShmemFolio ? take(&shmemPMDs) : take(&filePMDs)
                    }
                    if allowed {
                        var a = baseAttributes(vma, w)
                        inferWriteDirty(&a, vma, f, page: 0, folioIndex: run)
                        plan.append(.pmd(address: address, folio: run, attrs: a, word: wordIndex))
                        k += 512
                        continue
                    }
                }
                if let pte = planPTE(p, vma, w, address, pfn, wordIndex) { plan.append(.pte(pte)) }
                k += 1
                continue
            }
            if w.isSwapped {
                if let leaf = softLeaf(p, vma, w, address) {
                    plan.append(.softLeaf(address: address, leaf, word: wordIndex))
                }
                k += 1
                continue
            }
            warnings.add(.unexpressibleEntry, pid: p.pid, detail: "non-present word with flags only (\(w))",
                         example: "0x\(rhex(address))")
            k += 1
        }
        return plan
    }

    /// The bits every leaf of `vma` gets, plus what the word shows.
    func baseAttributes(_ vma: VMA, _ w: PagemapWord) -> LeafAttributes {
        var a: LeafAttributes = [.user, .young]
        if vma.flags.contains(.exec) { a.insert(.executable) }
        if vma.flags.isDisjoint(with: [.read, .write, .exec]) { a.insert(.protNone) }
        if w.isSoftDirty && softDirty { a.insert(.softDirty) }
        if w.isUffdWP { a.insert(.uffdWP) }
        return a
    }

    /// Writable and dirty bits by the rules in the type's documentation.
    func inferWriteDirty(_ a: inout LeafAttributes, _ vma: VMA, _ f: CapturedFolio, page: Int, folioIndex: Int) {
        let k = f.head
        let uffd = a.contains(.uffdWP)
        if f.isAnon {
            let ksm = k.contains(.ksm)
            let exclusive = k.contains(.mappedToDisk)
            if vma.flags.contains(.write) && exclusive && !ksm && !uffd { a.insert(.writable) }
            let lazyfree = !k.contains(.swapBacked)
            let cleanInSwapCache = k.contains(.swapCache) && !k.contains(.dirty)
            if !lazyfree && !ksm && !cleanInSwapCache { a.insert(.dirty) }
        } else {
            let shmem = k.contains(.swapBacked)
            if vma.isShared && vma.flags.contains(.write) && (shmem || k.contains(.dirty)) && !uffd { a.insert(.writable) }
            if k.contains(.dirty) && a.contains(.writable) { a.insert(.dirty) }
        }
    }

    /// The folio index when `words[k...]` is a PMD-mappable run.
    func pmdCandidate(_ vma: VMA, _ words: ArraySlice<PagemapWord>, _ k: Int, _ address: UInt64, _ pfn: UInt64) -> Int? {
        guard address % (2 << 20) == 0, address + (2 << 20) <= vma.end, pfn % 512 == 0,
              let fi = folioIndex(pfn) else { return nil }
        let f = folios[fi]
        guard f.order == 9, f.pfn == pfn, !f.isHugetlb, f.isMappable, !vma.isPFNMap else { return nil }
        let first = words[words.startIndex + k]
        let same = PagemapWord.softDirtyBit | PagemapWord.uffdWPBit
        for j in 0..<512 {
            let w = words[words.startIndex + k + j]
            guard w.isPresent, w.pfn == pfn + UInt64(j), w.rawValue & same == first.rawValue & same else { return nil }
        }
        return fi
    }

    func planPTE(_ p: ProcessSnapshot, _ vma: VMA, _ w: PagemapWord, _ address: UInt64, _ pfn: UInt64, _ word: Int) -> PlannedPTE? {
        var a = baseAttributes(vma, w)
        if pfn == memory.zeroPage.pfn || vma.isPFNMap {
            a.insert(.special)
            if vma.isPFNMap && vma.isShared && vma.flags.contains(.write) { a.insert(.writable) }
            if vma.isPFNMap, let fi = folioIndex(pfn), !folios[fi].isMappable {
                // Device or reserved memory behind a PFN mapping: fine, no page.
            }
            return PlannedPTE(address: address, pfn: pfn, attrs: a, folio: nil, word: word, shared: false,
                              folioDirty: false, folioReferenced: false, idle: false)
        }
        guard let ri = recordIndex(pfn) else {
            warnings.add(.missingPageFlags, pid: p.pid, detail: "mapped PFN without a kpageflags record (not placed)",
                         example: "pfn 0x\(rhex(pfn)) at 0x\(rhex(address))")
            unplaced.insert(pfn)
            stats.unplacedEntries += 1
            return nil
        }
        let fi = folioOfRecord[ri]
        let f = folios[fi]
        guard f.isMappable, !f.isHugetlb else {
            warnings.add(.pageNotMappable, pid: p.pid,
                         detail: f.isHugetlb ? "hugetlb page in a non-hugetlb VMA (not placed)" : "page no longer mappable at kpageflags time (not placed)",
                         example: "pfn 0x\(rhex(pfn)) [\(f.head)] at 0x\(rhex(address))")
            unplaced.insert(pfn)
            stats.unplacedEntries += 1
            return nil
        }
        if f.isAnon == w.isFileOrSharedAnon {
            warnings.add(.anonFlagMismatch, pid: p.pid, detail: "pagemap file bit vs kpageflags ANON",
                         example: "pfn 0x\(rhex(pfn)) at 0x\(rhex(address))")
        }
        let rec = snap.kpageflags[ri]
        if w.isExclusive != (rec.count == 1) {
            // The page changed between the pagemap and kpagecount reads; the
            // mapcount will follow pagemap (see checkMapcounts).
            exclusiveFromPagemap[ri] = w.isExclusive
            warnings.add(.exclusiveBitMismatch, pid: p.pid,
                         detail: "pagemap exclusive bit vs kpagecount (capture raced; mapcount follows pagemap)",
                         example: "pfn 0x\(rhex(pfn)) count \(rec.count) at 0x\(rhex(address))")
        }
        inferWriteDirty(&a, vma, f, page: Int(pfn - f.pfn), folioIndex: fi)
        return PlannedPTE(address: address, pfn: pfn, attrs: a, folio: fi, word: word, shared: !w.isExclusive,
                          folioDirty: f.head.contains(.dirty), folioReferenced: f.head.contains(.referenced),
                          idle: f.head.contains(.idle))
    }

    /// Plans one huge page of a hugetlb VMA; returns the words consumed.
    func planHugetlb(_ p: ProcessSnapshot, _ vma: VMA, _ words: ArraySlice<PagemapWord>, _ k: Int, _ address: UInt64,
                     _ word: Int, _ plan: inout [PlannedEntry]) throws -> Int {
        let size = vma.hugePageSize
        let pages = Int(size / Geometry.pageSize)
        let headAddress = address & ~(size - 1)
        let consumed = pages - Int((address - headAddress) / Geometry.pageSize)
        let w = words[words.startIndex + k]
        let pfn = (w.pfn ?? 0) - UInt64((address - headAddress) / Geometry.pageSize)
        guard address == headAddress, let fi = folioIndex(pfn), folios[fi].pfn == pfn, folios[fi].isHugetlb,
              folios[fi].pageCount == pages else {
            warnings.add(.unexpressibleEntry, pid: p.pid, detail: "hugetlb entry that is not one whole captured huge page",
                         example: "0x\(rhex(address)) pfn 0x\(rhex(w.pfn ?? 0))")
            if let x = w.pfn { unplaced.insert(x) }
            stats.unplacedEntries += 1
            return max(consumed, 1)
        }
        var a = baseAttributes(vma, w)
        a.remove(.softDirty)
        let f = folios[fi]
        if vma.flags.contains(.write) && (vma.isShared || f.head.contains(.mappedToDisk)) && !a.contains(.uffdWP) {
            a.formUnion([.writable, .dirty])
        }
        plan.append(.hugetlb(address: address, folio: fi, attrs: a, word: word))
        return pages
    }

    /// The softleaf a swap-format word describes, nil (warned) when the model cannot hold it.
    func softLeaf(_ p: ProcessSnapshot, _ vma: VMA, _ w: PagemapWord, _ address: UInt64) -> SoftLeafEntry? {
        let type = Int(w.rawValue & 0x1f)
        let offset = w.swapOffset ?? 0
        var bits: SwapPTEBits = []
        if w.isSoftDirty && softDirty && !vma.flags.contains(.softDirty) { bits.insert(.softDirty) }
        if w.isSoftDirty && softDirty && vma.flags.contains(.softDirty) { bits.insert(.softDirty) }
        if vma.isHugetlb {
            warnings.add(.unexpressibleEntry, pid: p.pid, detail: "non-present hugetlb entry", example: "0x\(rhex(address)) \(w)")
            return nil
        }
        switch type {
        case 0..<24:
            if w.isUffdWP { bits.insert(.uffdWP) }
            if swapHolders[UInt64(type) << 50 | offset] == 1 && vma.isPrivate { bits.insert(.exclusive) }
            guard type == 0 else {
                warnings.add(.unexpressibleEntry, pid: p.pid, detail: "swap type \(type) (the model has one device, type 0)",
                             example: "0x\(rhex(address)) \(w)")
                return nil
            }
            return SoftLeafEntry(.swap(SwapEntry(type: 0, offset: offset)), bits: bits)
        case 24:
            return SoftLeafEntry(.hwpoison(pfn: offset), bits: bits)
        case 25...27:
            if w.isUffdWP { bits.insert(.uffdWP) }
            guard folioIndex(offset) != nil else {
                warnings.add(.missingPageFlags, pid: p.pid, detail: "migration entry for a PFN without a record (not placed)",
                             example: "0x\(rhex(address)) pfn 0x\(rhex(offset))")
                unplaced.insert(offset)
                return nil
            }
            let kind: MigrationKind = type == 25 ? .read : type == 26 ? .readExclusive : .write
            return SoftLeafEntry(.migration(kind, pfn: offset, young: false, dirty: false), bits: bits)
        case 31:
            let marker = PTEMarker(rawValue: offset)
            guard !marker.isEmpty, PTEMarker.all.isSuperset(of: marker) else {
                warnings.add(.unexpressibleEntry, pid: p.pid, detail: "unknown PTE marker bits", example: "0x\(rhex(address)) \(w)")
                return nil
            }
            return SoftLeafEntry(.marker(marker))
        default:
            warnings.add(.unexpressibleEntry, pid: p.pid, detail: "device swap-format entry (type \(type))",
                         example: "0x\(rhex(address)) \(w)")
            return nil
        }
    }

    // MARK: executing a plan

    func adopt(_ fi: Int, node: Int) throws -> Folio {
        if let f = adopted[fi] { return f }
        let c = folios[fi]
        var flags = SnapshotRebuilder.pageFlags(c.head)
        flags.remove(.swapCache)
        let folio = try memory.adoptFolio(pfn: c.pfn, order: c.order, node: node, flags: flags, refcount: 0)
        let recs = snap.kpageflags
        for k in 0..<c.pageCount {
            let r = recs[c.first + k]
            if r.flags.contains(.hwpoison) { folio.setCapturedPageFlags(k, .hwpoison) }
            if c.isAnon && c.head.contains(.mappedToDisk) { folio.setCapturedPageFlags(k, .anonExclusive) }
        }
        if c.head.contains(.swapCache) {
            // The swap slot a swap-cache folio belongs to is not captured.
            folio.setCapturedFlags(.swapCache)
            folio.addCapturedReferences(c.pageCount)
            warnings.add(.swapCacheSlotUnknown, pid: nil, detail: "swap-cache folio without a known slot",
                         example: "pfn 0x\(rhex(c.pfn))", count: 1)
        }
        adopted[fi] = folio
        stats.folios += 1
        stats.frames += c.pageCount
        return folio
    }

    /// Page-cache and kernel references for a non-anonymous folio the first
    /// time it is mapped through `vma` at `address` (page `page` of it).
    func placeFileFolio(_ fi: Int, _ folio: Folio, _ vma: VMA, _ address: UInt64, page: Int, pid: Int32) {
        let c = folios[fi]
        guard !c.isAnon, !cachedFolios.contains(fi) else { return }
        cachedFolios.insert(fi)
        guard let file = vma.file else {
            // A kernel page in a special mapping ([vdso]): the kernel keeps its own reference.
            folio.addCapturedReferences(1)
            return
        }
        let headIndex = vma.pageIndex(address) &- UInt64(page)
        let pages = c.isHugetlb ? 1 : c.pageCount
        for k in 0..<pages {
            if let other = file.placeCaptured(index: headIndex + UInt64(k), pfn: c.pfn + UInt64(k)) {
                warnings.add(.pageCacheConflict, pid: pid, detail: "two frames for one page of \(file.path)",
                             example: "index \(headIndex + UInt64(k)): pfn 0x\(rhex(other)) and 0x\(rhex(c.pfn + UInt64(k)))")
            } else {
                stats.pageCachePages += 1
            }
        }
        folio.addCapturedReferences(1)
    }

    func execute(_ plan: [PlannedEntry], _ p: ProcessSnapshot, _ i: Int, _ vma: VMA, _ space: AddressSpace) throws {
        let node = self.node(p, p.maps[i])
        let pagemapPath = p.directory + "/pagemap"
        func fail(_ word: Int, _ address: UInt64, _ error: Error) -> SnapshotError {
            .malformedBinary(path: pagemapPath, offset: word * 8,
                             reason: "entry for 0x\(rhex(address)) cannot be rebuilt: \(error)")
        }
        for e in plan {
            switch e {
            case .pte(let t):
                do {
                    if let fi = t.folio {
                        let folio = try adopt(fi, node: node)
                        let page = Int(t.pfn - folio.pfn)
                        placeFileFolio(fi, folio, vma, t.address, page: page, pid: p.pid)
                        try space.mapCapturedPage(at: t.address, pfn: t.pfn, attributes: t.attrs)
                        stats.pteMappings += 1
                    } else {
                        try space.mapCapturedPage(at: t.address, pfn: t.pfn, attributes: t.attrs)
                        if t.pfn == memory.zeroPage.pfn { stats.zeroPageMappings += 1 } else { stats.pfnMappings += 1 }
                    }
                } catch { throw fail(t.word, t.address, error) }
            case .pmd(let address, let fi, let attrs, let word):
                do {
                    if folios[fi].pfn == hugeZeroPFN {
                        try space.mapCapturedPMD(at: address, folio: memory.hugeZeroFolio, attributes: attrs)
                    } else {
                        let folio = try adopt(fi, node: node)
                        placeFileFolio(fi, folio, vma, address, page: 0, pid: p.pid)
                        try space.mapCapturedPMD(at: address, folio: folio, attributes: attrs)
                    }
                    stats.pmdMappings += 1
                } catch { throw fail(word, address, error) }
            case .hugetlb(let address, let fi, let attrs, let word):
                do {
                    let folio = try adopt(fi, node: node)
                    placeFileFolio(fi, folio, vma, address, page: 0, pid: p.pid)
                    try space.mapCapturedHugetlb(at: address, folio: folio, attributes: attrs)
                    stats.hugetlbMappings += 1
                } catch { throw fail(word, address, error) }
            case .softLeaf(let address, let leaf, let word):
                do {
                    if case .migration(_, let pfn, _, _) = leaf.leaf, let fi = folioIndex(pfn) {
                        _ = try adopt(fi, node: node)
                    }
                    try space.installCapturedSoftLeaf(at: address, leaf)
                    switch leaf.leaf {
                    case .swap: stats.swapEntries += 1
                    case .migration: stats.migrationEntries += 1
                    default: stats.markers += 1
                    }
                } catch { throw fail(word, address, error) }
            }
        }
    }

    // MARK: mapcounts

    /// Compares every adopted page's mapcount with kpagecount; represents
    /// the surplus as external mappings (options) and warns either way.
    func checkMapcounts() {
        let recs = snap.kpageflags
        for fi in adopted.keys.sorted() {
            let c = folios[fi]
            let folio = adopted[fi]!
            for k in 0..<c.pageCount {
                var captured = Int(recs[c.first + k].count)
                let rebuilt = folio.pageMapcount(k)
                switch exclusiveFromPagemap[c.first + k] {
                case true?: captured = min(captured, max(rebuilt, 1))     // mapped once, as pagemap said
                case false?: captured = max(captured, rebuilt, 2)         // mapped more than once
                case nil: break
                }
                if captured > rebuilt {
                    let extra = captured - rebuilt
                    warnings.add(.externalMappings, pid: nil,
                                 detail: options.representExternalMappings
                                    ? "pages mapped by processes outside the snapshot (extra mapcount added)"
                                    : "pages mapped by processes outside the snapshot (not represented)",
                                 example: "pfn 0x\(rhex(c.pfn + UInt64(k))) kpagecount \(captured), rebuilt \(rebuilt)")
                    if options.representExternalMappings {
                        folio.addExternalMappings(page: k, count: extra)
                        stats.externallyMappedPages += 1
                        stats.externalMappings += extra
                    }
                } else if captured < rebuilt {
                    warnings.add(.mapcountBelowRebuilt, pid: nil, detail: "kpagecount below the rebuilt mapcount",
                                 example: "pfn 0x\(rhex(c.pfn + UInt64(k))) kpagecount \(captured), rebuilt \(rebuilt)")
                }
            }
        }
    }
}

func rhex(_ v: UInt64) -> String { String(v, radix: 16) }
