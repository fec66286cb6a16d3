import MemoryModel

// The captured maps and smaps of one VMA made into a model VMA: flags,
// backing, policy.
extension RebuildSession {
    func buildVMA(_ p: ProcessSnapshot, _ i: Int, in space: AddressSpace) throws -> VMA? {
        let m = p.maps[i]
        let block = p.smaps[i]
        let smapsPath = p.directory + "/smaps"
        // The gate VMA comes with the address space (`vsyscallMode(_:)`).
        if isGate(m) { return space.gateVMA }
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
                                               hasAnonVMA: hasAnon)
        } catch {
            throw SnapshotError.malformedText(path: p.directory + "/maps", line: i + 1, reason: "cannot build VMA: \(error)")
        }
    }

    /// The `vsyscall=` mode the captured gate VMA shows: its range, name,
    /// permissions and VmFlags must be those of one of the kernel's modes.
    /// `.none` without a gate line, or when the options drop it (warned).
    func vsyscallMode(_ p: ProcessSnapshot) throws -> VsyscallMode {
        guard let i = p.maps.firstIndex(where: isGate) else { return .none }
        let m = p.maps[i]
        guard options.includeGateVMA else {
            warnings.add(.gateVMASkipped, pid: p.pid, detail: "\(m.name) (the kernel's gate VMA, left out as asked)",
                         example: m.raw)
            return .none
        }
        let mapsPath = p.directory + "/maps"
        guard m.start == VsyscallMode.gateStart, m.end == VsyscallMode.gateEnd else {
            throw SnapshotError.malformedText(path: mapsPath, line: i + 1,
                reason: "gate VMA \(rhex(m.start))-\(rhex(m.end)): the kernel's is \(rhex(VsyscallMode.gateStart))-\(rhex(VsyscallMode.gateEnd))")
        }
        guard let mode = VsyscallMode(gatePermissions: m.perms) else {
            throw SnapshotError.malformedText(path: mapsPath, line: i + 1,
                reason: "gate VMA permissions '\(m.perms)': the kernel prints --xp (vsyscall=xonly) or r-xp (vsyscall=emulate)")
        }
        let block = p.smaps[i]
        let flags = block.vmFlags.map { SnapshotRebuilder.vmFlagMnemonics[$0] }
        guard !flags.contains(nil), VMFlags(flags.compactMap { $0 }) == mode.gateFlags else {
            throw SnapshotError.malformedText(path: p.directory + "/smaps", line: block.headerLine,
                reason: "gate VMA VmFlags '\(block.vmFlags.joined(separator: " "))' are not those of vsyscall=\(mode)")
        }
        return mode
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
}
