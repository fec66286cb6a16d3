import MemoryModel

/// Per-VMA facts the /proc views print: the maps header, the VmFlags
/// mnemonics, page sizes and THP eligibility.
enum VMAInfo {
    /// `vma_is_anonymous()`: private anonymous memory without vm_ops (the
    /// kernel's special mappings, `VMA.specialMappingNames`, have them).
    static func isAnonymous(_ vma: VMA) -> Bool { vma.isAnonymousWithoutOps }

    /// `show_map_vma()`: the maps line, newline included.
    static func header(_ vma: VMA) -> HeaderLine {
        let file = vma.file
        var h = HeaderLine.prefix(start: vma.start, end: vma.end, perms: vma.permissions,
                                  offset: file != nil ? vma.backing.pageOffset << Geometry.pageShift : 0,
                                  device: file?.device ?? .none, inode: file?.inode ?? 0)
        if let file {
            h.pad()
            // seq_file_path(m, file, "\n")
            for b in file.path.utf8 {
                if b == 10 { h.bytes.append(contentsOf: Array("\\012".utf8)) } else { h.bytes.append(b) }
            }
        } else if let name = vma.name {
            h.pad()
            h.text(name)
        }
        h.bytes.append(10)
        return h
    }

    /// `vma_kernel_pagesize()` (and `vma_mmu_pagesize()`, equal on the
    /// modelled architectures).
    static func kernelPageSize(_ vma: VMA) -> UInt64 { vma.isHugetlb ? vma.hugePageSize : Geometry.pageSize }

    /// `show_smap_vma_flags()`: one mnemonic per set bit, in bit order; bits
    /// the kernel names with an empty string are skipped, unknown ones print
    /// `??`. The names are MemoryModel's table (`VMFlags.mnemonics`), the
    /// one the snapshot rebuild parses.
    static func vmFlags(_ flags: VMFlags, architecture: Architecture) -> String {
        var out = "VmFlags: "
        let raw = flags.rawValue
        for bit in 0..<64 where raw & (1 << UInt64(bit)) != 0 {
            let name = mnemonic(bit, architecture)
            if name.isEmpty { continue }
            out += name + " "
        }
        return out + "\n"
    }

    /// The mnemonic of `bit` (`VMFlags.mnemonic(ofBit:architecture:)`).
    static func mnemonic(_ bit: Int, _ arch: Architecture) -> String {
        VMFlags.mnemonic(ofBit: bit, architecture: arch)
    }

    // MARK: THPeligible

    static let pmdOrder = 9
    static let pudOrder = 18

    /// `thp_vma_allowable_orders(vma, vma->vm_flags, TVA_SMAPS, THP_ORDERS_ALL) != 0`
    /// as Linux 6.18 decides it.
    static func thpEligible(_ vma: VMA, _ s: THPSettings, _ geometry: Geometry) -> Bool {
        let flags = vma.flags
        let globalAlways = s.enabled == .always
        let globalEnabled = s.enabled != .never
        let hugepage = flags.contains(.hugePage)
        let anon = isAnonymous(vma)
        var orders: UInt64
        if anon {
            orders = 0
            for order in 2...pmdOrder { orders |= 1 << UInt64(order) }   // THP_ORDERS_ALL_ANON
            var mask: UInt64 = 0
            for (order, mode) in s.anonOrders {
                switch mode {
                case .always: mask |= 1 << UInt64(order)
                case .madvise: if hugepage { mask |= 1 << UInt64(order) }
                case .inherit: if globalAlways || (hugepage && globalEnabled) { mask |= 1 << UInt64(order) }
                case .never: break
                }
            }
            orders &= mask
        } else {
            // THP_ORDERS_ALL_FILE_DEFAULT (or _SPECIAL): PMD and, where the
            // architecture has PUD THP (x86-64), PUD.
            orders = 1 << UInt64(pmdOrder)
            if geometry.architecture == .x86_64 && !geometry.isFolded(.pud) { orders |= 1 << UInt64(pudOrder) }
        }
        if orders == 0 { return false }
        // vma_thp_disabled(): MADV_NOHUGEPAGE (prctl(PR_SET_THP_DISABLE) is not modelled).
        if flags.contains(.noHugePage) { return false }
        // Size and alignment, highest order first.
        var suitable = false
        for order in stride(from: 63, through: 0, by: -1) where orders & (1 << UInt64(order)) != 0 {
            if suitableOrder(vma, order: order, anonymous: anon) { suitable = true; break }
            orders &= ~(1 << UInt64(order))
        }
        if !suitable { return false }
        if anon { return true }
        if vma.isShmem {
            let pmd = orders & (1 << UInt64(pmdOrder)) != 0
            guard pmd else { return false }
            switch s.shmemEnabled {
            case .never, .deny: return false
            case .always, .withinSize, .force: return true
            case .advise: return hugepage
            }
        }
        guard globalEnabled, hugepage || globalAlways else { return false }
        // No modelled file has a ->huge_fault (DAX); regular files need
        // CONFIG_READ_ONLY_THP_FOR_FS.
        if s.readOnlyFileTHP, vma.isFile, !vma.isHugetlb { return true }
        return false
    }

    /// `thp_vma_suitable_order(vma, vm_end - (PAGE_SIZE << order), order)`.
    static func suitableOrder(_ vma: VMA, order: Int, anonymous: Bool) -> Bool {
        let size = UInt64(Geometry.pageSize) << UInt64(order)
        let pages = size >> Geometry.pageShift
        if !anonymous {
            let delta = (vma.start >> Geometry.pageShift) &- vma.backing.pageOffset
            if delta & (pages - 1) != 0 { return false }
        }
        guard vma.end >= size else { return false }
        let haddr = (vma.end - size) & ~(size - 1)
        return haddr >= vma.start && haddr + size <= vma.end
    }

    // MARK: numa_maps

    /// `mpol_to_str()`.
    static func policyString(_ p: MemoryPolicy) -> String {
        switch p {
        case .default: return "default"
        case .local: return "local"
        case .preferred(let n): return "prefer:" + nodeList([n])
        case .bind(let ns): return ns.isEmpty ? "bind" : "bind:" + nodeList(ns)
        case .interleave(let ns): return ns.isEmpty ? "interleave" : "interleave:" + nodeList(ns)
        case .weightedInterleave(let ns): return ns.isEmpty ? "weighted interleave" : "weighted interleave:" + nodeList(ns)
        }
    }

    /// `%*pbl`: a node list as ranges (`0-2,5`).
    static func nodeList(_ nodes: [Int]) -> String {
        let sorted = Array(Set(nodes)).sorted()
        var parts: [String] = []
        var i = 0
        while i < sorted.count {
            var j = i
            while j + 1 < sorted.count && sorted[j + 1] == sorted[j] + 1 { j += 1 }
            parts.append(i == j ? "\(sorted[i])" : "\(sorted[i])-\(sorted[j])")
            i = j + 1
        }
        return parts.joined(separator: ",")
    }
}
