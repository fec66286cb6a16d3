import MemoryModel
// Cross-value validation of a decoded scenario: unique pids and a coherent
// fork graph, non-overlapping VMAs, and a dry run of every op list against a
// light model of each process's VMA layout (kind, perms, a few flags), so that
// an op is checked against the VMAs as they are when it runs: after an earlier
// munmap, mprotect or mlock, and, in a forked child, as inherited at the fork.
// The dry run also sums the memory the ops may populate and the swap slots
// they may use. No page tables are involved.

/// A stretch of one VMA as the dry run sees it. `origin` is the JSON path of
/// the VMA it came from (in the parent, for inherited ones).
struct Segment: AddressRanged {
    var start: UInt64
    var end: UInt64
    var perms: VMASpec.Permissions
    let kind: VMASpec.Kind
    /// Huge page size of a hugetlb VMA, else 0.
    let hugePageSize: UInt64
    var flags: Set<VMASpec.Flag>
    let origin: String

    /// VM_SPECIAL: VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP.
    var isSpecial: Bool {
        kind == .pfnmap || kind == .mixedmap || flags.contains(.io) || flags.contains(.dontexpand)
    }
}

/// A process's VMAs during the dry run, sorted and disjoint.
struct Layout {
    var segments: [Segment]

    /// Index of the segment containing `address`.
    func index(containing address: UInt64) -> Int? { segments.index(containing: address) }

    /// The segments that cover `range` without gaps, or the first address
    /// no segment covers.
    func cover(_ range: AddressRange) -> Result<ClosedRange<Int>, UncoveredAddress> {
        guard let first = index(containing: range.start) else { return .failure(UncoveredAddress(address: range.start)) }
        var last = first
        while segments[last].end < range.end {
            let next = last + 1
            guard next < segments.count, segments[next].start == segments[last].end else {
                return .failure(UncoveredAddress(address: segments[last].end))
            }
            last = next
        }
        return .success(first ... last)
    }

    /// Splits the segment containing `address` so that a segment starts there.
    mutating func split(at address: UInt64) {
        guard let i = index(containing: address), segments[i].start < address else { return }
        var tail = segments[i]
        tail.start = address
        segments[i].end = address
        segments.insert(tail, at: i + 1)
    }

    /// Splits at the range's ends and returns the indices of the segments
    /// inside it (the range must be covered).
    mutating func isolate(_ range: AddressRange) -> Range<Int> {
        split(at: range.start)
        split(at: range.end)
        guard let first = index(containing: range.start) else { return 0 ..< 0 }
        var last = first
        while last < segments.count && segments[last].start < range.end { last += 1 }
        return first ..< last
    }
}

struct UncoveredAddress: Error {
    var address: UInt64
}

enum ScenarioValidator {
    static let pmdSize: UInt64 = 2 << 20

    static func validate(_ decoded: DecodedScenario) throws(ScenarioError) {
        let document = decoded.document
        try checkProcessGraph(decoded)
        for (index, process) in document.processes.enumerated() where !process.isForked {
            try checkOverlaps(process.vmas, processPath: JSONPath.index("processes", index))
        }
        try dryRun(decoded)
    }

    // MARK: - Pids, parents and forks

    static func checkProcessGraph(_ decoded: DecodedScenario) throws(ScenarioError) {
        let processes = decoded.document.processes
        var indexOfPID: [Int: Int] = [:]
        for (index, process) in processes.enumerated() {
            if let first = indexOfPID[process.pid] {
                throw .duplicatePID(
                    path: JSONPath.index("processes", index) + ".pid", pid: process.pid,
                    first: JSONPath.index("processes", first) + ".pid")
            }
            indexOfPID[process.pid] = index
        }

        // Every parent exists, comes first, and the child declares no VMAs.
        for (index, process) in processes.enumerated() {
            guard let parent = process.parent else { continue }
            let path = JSONPath.index("processes", index)
            guard let parentIndex = indexOfPID[parent] else {
                throw .undeclaredPID(path: path + ".parent", pid: parent)
            }
            if parent == process.pid {
                throw .inconsistentParent(path: path + ".parent", reason: "process \(parent) cannot be its own parent")
            }
            if parentIndex > index {
                throw .inconsistentParent(
                    path: path + ".parent",
                    reason: "parent \(parent) is declared after its child (at processes[\(parentIndex)]); a parent must come first")
            }
            if decoded.declaresVMAs[index] {
                throw .inconsistentParent(
                    path: path + ".vmas",
                    reason: "process \(process.pid) is forked from \(parent) and inherits its VMAs; a forked child lists no vmas")
            }
        }

        // Every fork names a declared child of this process, once.
        var forkedAt: [Int: String] = [:]
        for (index, process) in processes.enumerated() {
            for (opIndex, op) in process.ops.enumerated() {
                guard case .fork(let child) = op else { continue }
                let path = JSONPath.index("processes", index) + ".ops[\(opIndex)].child"
                guard let childIndex = indexOfPID[child] else {
                    throw .undeclaredPID(path: path, pid: child)
                }
                if child == process.pid {
                    throw .inconsistentParent(path: path, reason: "process \(child) cannot fork itself")
                }
                if let first = forkedAt[child] {
                    throw .duplicateFork(path: path, pid: child, first: first)
                }
                forkedAt[child] = path
                let childProcess = processes[childIndex]
                guard childProcess.parent == process.pid else {
                    let declared = childProcess.parent.map { "names \($0) as its parent" } ?? "has no parent"
                    throw .inconsistentParent(
                        path: path,
                        reason: "process \(child) (processes[\(childIndex)]) \(declared), but process \(process.pid) forks it")
                }
            }
        }
        for (index, process) in processes.enumerated() {
            guard let parent = process.parent, forkedAt[process.pid] == nil else { continue }
            throw .inconsistentParent(
                path: JSONPath.index("processes", index) + ".parent",
                reason: "process \(parent) never forks \(process.pid) (no {\"op\":\"fork\",\"child\":\(process.pid)} in its ops)")
        }
    }

    // MARK: - VMAs

    static func checkOverlaps(_ vmas: [VMASpec], processPath: String) throws(ScenarioError) {
        let order = vmas.indices.sorted { (vmas[$0].start, $0) < (vmas[$1].start, $1) }
        // Report the overlap whose later-declared VMA comes first in the document.
        var best: (later: Int, earlier: Int)?
        for k in order.indices.dropFirst() {
            let a = order[k - 1]
            let b = order[k]
            guard vmas[b].start < vmas[a].end else { continue }
            let pair = (later: max(a, b), earlier: min(a, b))
            if best == nil || pair.later < best!.later { best = pair }
        }
        if let best {
            let other = vmas[best.earlier]
            throw .overlappingVMAs(
                path: processPath + ".vmas[\(best.later)]", other: processPath + ".vmas[\(best.earlier)]",
                otherStart: other.start, otherEnd: other.end)
        }
    }

    // MARK: - Dry run

    /// What an op needs of every VMA piece it touches.
    struct Rule {
        var kinds: Set<VMASpec.Kind>
        var privateOnly = false
        var privateFileOnly = false
        var needsWrite = false
        var needsAccess = false
        var rejectLocked = false
        var rejectNoHugepage = false
        var rejectSpecial = false
        var requiredFlag: VMASpec.Flag?
        /// Every piece boundary must be a multiple of this (0: none).
        var granule: UInt64 = 0
        /// Hint appended when the kind does not fit.
        var kindHint = ""
    }

    static let allKinds = Set(VMASpec.Kind.allCases)
    static let pageBacked: Set<VMASpec.Kind> = [.anon, .file, .shmem]

    static func rule(for op: OperationSpec) -> Rule? {
        switch op {
        case .fault(_, let write):
            return Rule(
                kinds: pageBacked, needsWrite: write, needsAccess: true,
                kindHint: "hugetlb VMAs are populated with the hugetlb op, pfnmap/mixedmap with remap_pfn")
        case .touch(_, let write):
            return Rule(kinds: allKinds, needsWrite: write)
        case .thp, .collapse:
            return Rule(
                kinds: pageBacked, rejectNoHugepage: true, granule: pmdSize,
                kindHint: "hugetlb VMAs are populated with the hugetlb op")
        case .mthp(_, let order):
            return Rule(kinds: pageBacked, rejectNoHugepage: true, granule: ScenarioDocument.pageSize << order)
        case .split:
            return Rule(kinds: pageBacked, kindHint: "only THP-capable VMAs hold splittable PMD THPs")
        case .hugetlb:
            return Rule(kinds: [.hugetlb], kindHint: "use fault, thp or mthp for other VMAs")
        case .zap:
            return Rule(kinds: allKinds.subtracting([.pfnmap]), rejectLocked: true)
        case .swapout:
            return Rule(kinds: pageBacked, privateFileOnly: true, rejectLocked: true)
        case .swapin:
            return Rule(kinds: pageBacked, privateFileOnly: true)
        case .migrate, .migrationEntries:
            return Rule(kinds: pageBacked.union([.hugetlb]))
        case .devicePrivate(_, let writable):
            return Rule(kinds: [.anon], privateOnly: true, needsWrite: writable)
        case .deviceExclusive:
            return Rule(kinds: [.anon], privateOnly: true, needsWrite: true)
        case .hwpoison:
            return Rule(kinds: pageBacked.union([.hugetlb]))
        case .uffdWP:
            return Rule(kinds: pageBacked.union([.hugetlb]), requiredFlag: .uffdWP)
        case .guardInstall:
            return Rule(kinds: pageBacked, rejectLocked: true, rejectSpecial: true)
        case .guardRemove:
            return Rule(kinds: pageBacked, rejectSpecial: true)
        case .remapPFN:
            return Rule(kinds: [.pfnmap, .mixedmap], kindHint: "remap_pfn populates pfnmap and mixedmap VMAs only")
        case .madvFree:
            return Rule(kinds: [.anon], privateOnly: true, rejectLocked: true)
        case .madvCold, .madvPageout:
            // can_madv_lru_vma(): not VM_LOCKED, VM_PFNMAP or hugetlb.
            return Rule(kinds: allKinds.subtracting([.pfnmap, .hugetlb]), rejectLocked: true,
                        kindHint: "MADV_COLD and MADV_PAGEOUT refuse PFN-map and hugetlb VMAs")
        case .madvWillNeed:
            return Rule(kinds: allKinds)
        case .ksm:
            return Rule(kinds: [.anon], privateOnly: true, requiredFlag: .mergeable)
        case .mprotect, .mlock, .munlock, .mlock2OnFault, .munmap:
            return Rule(kinds: allKinds)
        case .fork, .clearRefs:
            return nil
        }
    }

    /// Bytes of memory an op may populate on one piece (an upper bound).
    static func populatedBytes(_ op: OperationSpec, piece: Segment, size: UInt64) -> UInt64 {
        switch op {
        case .fault, .thp, .mthp, .hugetlb, .collapse, .swapin, .migrate, .migrationEntries,
             .devicePrivate, .deviceExclusive:
            return size
        case .madvWillNeed:
            // Reads swap entries and file pages in, mapping nothing.
            return piece.kind == .hugetlb || piece.isSpecial ? 0 : size
        case .mlock:
            // mlock populates, except on VM_SPECIAL and hugetlb VMAs, which it leaves alone.
            return piece.isSpecial || piece.kind == .hugetlb ? 0 : size
        default:
            return 0
        }
    }

    static func dryRun(_ decoded: DecodedScenario) throws(ScenarioError) {
        let document = decoded.document
        var inherited: [Int: Layout] = [:]
        var populated: UInt64 = 0
        var swapped: UInt64 = 0

        for (processIndex, process) in document.processes.enumerated() {
            let processPath = JSONPath.index("processes", processIndex)
            var layout: Layout
            if process.isForked {
                layout = inherited[process.pid] ?? Layout(segments: [])
            } else {
                layout = Layout(segments: process.vmas.enumerated().map { index, vma in
                    Segment(
                        start: vma.start, end: vma.end, perms: vma.perms, kind: vma.kind,
                        hugePageSize: vma.hugePageSize?.bytes ?? 0, flags: vma.flags,
                        origin: processPath + ".vmas[\(index)]")
                }.sorted { $0.start < $1.start })
            }

            for (opIndex, op) in process.ops.enumerated() {
                let opPath = processPath + ".ops[\(opIndex)]"
                let source = decoded.opSources[processIndex][opIndex]

                if case .fork(let child) = op {
                    // VM_DONTCOPY VMAs stay with the parent.
                    inherited[child] = Layout(segments: layout.segments.filter { !$0.flags.contains(.dontcopy) })
                    continue
                }
                guard let rule = rule(for: op), let range = op.range else { continue }

                let covered: ClosedRange<Int>
                switch layout.cover(range) {
                case .success(let indices): covered = indices
                case .failure(let uncovered): throw .outsideVMAs(path: opPath, address: uncovered.address)
                }

                let isAddressOp: Bool
                switch op {
                case .split, .hwpoison: isAddressOp = true
                default: isAddressOp = false
                }

                for index in covered {
                    let segment = layout.segments[index]
                    let piece = AddressRange(start: max(segment.start, range.start), end: min(segment.end, range.end))
                    try check(op, rule: rule, segment: segment, piece: piece, range: range,
                              source: source, isAddressOp: isAddressOp, opPath: opPath)

                    let bytes = populatedBytes(op, piece: segment, size: piece.size)
                    if bytes > 0 {
                        let (sum, overflow) = populated.addingReportingOverflow(bytes)
                        populated = overflow ? UInt64.max : sum
                        if populated > document.memoryBudget {
                            throw .budgetExceeded(path: opPath, needed: populated, budget: document.memoryBudget)
                        }
                    }
                    if case .swapout = op {
                        swapped += piece.pageCount
                        if swapped > document.swapSlots {
                            throw .swapExceeded(path: opPath, needed: swapped, available: document.swapSlots)
                        }
                    }
                }

                // Ops that change the layout.
                switch op {
                case .munmap(let r):
                    let indices = layout.isolate(r)
                    layout.segments.removeSubrange(indices)
                case .mprotect(let r, let perms):
                    for i in layout.isolate(r) { layout.segments[i].perms = perms }
                case .mlock(let r):
                    for i in layout.isolate(r) where !layout.segments[i].isSpecial && layout.segments[i].kind != .hugetlb {
                        layout.segments[i].flags.insert(.locked)
                    }
                case .mlock2OnFault(let r):
                    for i in layout.isolate(r) where !layout.segments[i].isSpecial && layout.segments[i].kind != .hugetlb {
                        layout.segments[i].flags.insert(.locked)
                        layout.segments[i].flags.insert(.lockonfault)
                    }
                case .munlock(let r):
                    for i in layout.isolate(r) {
                        layout.segments[i].flags.remove(.locked)
                        layout.segments[i].flags.remove(.lockonfault)
                    }
                default:
                    break
                }
            }
        }
    }

    static func check(
        _ op: OperationSpec, rule: Rule, segment: Segment, piece: AddressRange, range: AddressRange,
        source: RangeSource?, isAddressOp: Bool, opPath: String
    ) throws(ScenarioError) {
        let name = op.kind.rawValue
        func incompatible(_ reason: String) -> ScenarioError {
            .incompatibleOperation(path: opPath, op: name, vma: segment.origin, reason: reason)
        }

        guard rule.kinds.contains(segment.kind) else {
            let allowed = VMASpec.Kind.allCases.filter { rule.kinds.contains($0) }.map(\.rawValue).joined(separator: ", ")
            var reason = "the VMA is \(segment.kind.rawValue); \(name) applies to \(allowed) VMAs"
            if !rule.kindHint.isEmpty { reason += " (\(rule.kindHint))" }
            throw incompatible(reason)
        }
        if rule.privateOnly && segment.perms.shared {
            throw incompatible("\(name) needs a private mapping, the VMA is \(segment.perms)")
        }
        if rule.privateFileOnly && segment.kind == .file && segment.perms.shared {
            throw incompatible("pages of a shared file mapping are written back, not swapped (VMA is \(segment.perms))")
        }
        if rule.needsAccess && segment.perms.isNone {
            throw incompatible("the VMA has no access permissions (\(segment.perms))")
        }
        if rule.needsWrite && !segment.perms.write {
            throw incompatible("\(name) writes, but the VMA is not writable (\(segment.perms))")
        }
        if rule.rejectLocked && segment.flags.contains(.locked) {
            throw incompatible("the VMA is mlocked (VM_LOCKED)")
        }
        if rule.rejectNoHugepage && segment.flags.contains(.nohugepage) {
            throw incompatible("the VMA has nohugepage (VM_NOHUGEPAGE)")
        }
        if rule.rejectSpecial && segment.isSpecial {
            throw incompatible("the VMA is VM_SPECIAL (io, dontexpand, pfnmap or mixedmap)")
        }
        if let flag = rule.requiredFlag, !segment.flags.contains(flag) {
            throw incompatible("the VMA lacks the \(flag.rawValue) flag")
        }
        if case .mprotect(_, let perms) = op, perms.shared != segment.perms.shared {
            throw incompatible("mprotect cannot change a mapping between private and shared (\(segment.perms) to \(perms))")
        }

        // Granularity: the op's own (THP sizes) and hugetlb's, for every
        // boundary of the piece (range ends and VMA boundaries inside it).
        guard !isAddressOp else { return }
        for granule in [rule.granule, segment.hugePageSize] where granule > ScenarioDocument.pageSize {
            for boundary in [piece.start, piece.end] where boundary % granule != 0 {
                let path: String
                if boundary == range.start, let source {
                    path = source.startPath
                } else if boundary == range.end, let source {
                    path = source.endPath
                } else {
                    path = opPath
                }
                throw .unalignedAddress(path: path, address: boundary, alignment: granule)
            }
        }
    }
}
