import MemoryModel

/// The reference's THP, mTHP and hugetlb operations, the page-granular
/// counterpart of `AddressSpace+Huge.swift`. Each operation follows the
/// documented semantics of the model's operation (named in its comment), checks
/// its arguments in the same order and throws the same `ModelError` cases.
extension ReferenceModel {
    /// Splits the PMD leaf or PMD migration entry of the region at `a`
    /// (`splitPMD`): 512 PTE-level states, folio stays large.
    func splitPMD(_ p: ReferenceProcess, _ a: UInt64) throws(ModelError) {
        let r = pmdBase(a)
        guard let head = p.pages[r] else { return }
        switch head {
        case .present(let pp) where pp.level == .pmd:
            switch pp.target {
            case .hugeZero:
                var attrs = pp.attrs
                attrs.insert(.special)
                attrs.remove(.writable)
                for k in 0..<512 { set(p, r + UInt64(k) << Geometry.pageShift, .present(ReferencePresent(target: .zero, attrs: attrs))) }
            case .folio(let f, _):
                if folios[f]!.isHugetlb { throw .unsupported("hugetlb PMDs cannot be split") }
                if folios[f]!.isAnon && folios[f]!.exclusive[0] {
                    for k in 0..<folios[f]!.pageCount { folios[f]!.exclusive[k] = true }
                }
                for k in 0..<512 {
                    set(p, r + UInt64(k) << Geometry.pageShift, .present(ReferencePresent(target: .folio(f, page: k), attrs: pp.attrs)))
                }
            case .zero, .pfn:
                return
            }
        case .migration(let kind, let f, _, let y, let d, let bits, .pmd):
            for k in 0..<512 {
                set(p, r + UInt64(k) << Geometry.pageShift, .migration(kind, folio: f, page: k, young: y, dirty: d, bits: bits, level: .pte))
            }
        default:
            return
        }
        p.pteTables.insert(r)
    }

    func splitLeafStraddling(_ p: ReferenceProcess, _ a: UInt64) throws(ModelError) {
        guard a % ReferenceModel.pmdSize != 0 else { return }
        guard pmdState(p, a) == .leaf else { return }
        if case .present(let pp)? = p.pages[pmdBase(a)], case .folio(let f, _) = pp.target, folios[f]!.isHugetlb { return }
        try splitPMD(p, a)
    }

    func hugetlbShape(_ size: UInt64) -> (level: PageTableLevel, entries: Int) {
        switch size {
        case 64 << 10: return (.pte, 16)
        case 2 << 20: return (.pmd, 1)
        case 32 << 20: return (.pmd, 16)
        default: return (.pud, 1)
        }
    }

    /// `AddressSpace.populateTHP`.
    public func populateTHP(pid: Int, _ start: UInt64, _ end: UInt64, write: Bool = true) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for vma in try covered(p, start, end, "thp") {
            guard vma.isAnonymous, !vma.isHugetlb else { throw .wrongVMAKind(address: vma.start, reason: "THP needs a private anonymous VMA") }
            if write && !vma.flags.contains(.write) {
                throw .wrongVMAKind(address: vma.start, reason: "write fault on a VMA without write permission")
            }
            let s = max(start, vma.start), e = min(end, vma.end)
            var a = s
            while a < e {
                let next = geometry.entryEnd(a, at: .pmd, limit: e)
                if a % ReferenceModel.pmdSize == 0 && next - a == ReferenceModel.pmdSize && pmdState(p, a) == .none {
                    if !write && options.useHugeZeroPage {
                        for k in 0..<512 {
                            set(p, a + UInt64(k) << Geometry.pageShift, .present(ReferencePresent(target: .hugeZero(page: k), attrs: [.young, .special],
                                                                                  level: .pmd, entire: true)))
                        }
                    } else {
                        let f = newFolio(order: 9, node: node(vma, a), flags: [.anon, .swapBacked])
                        folios[f]!.exclusive[0] = true
                        let attrs = faultAttrs(vma, write: true, writable: true)
                        for k in 0..<512 {
                            set(p, a + UInt64(k) << Geometry.pageShift, .present(ReferencePresent(target: .folio(f, page: k), attrs: attrs,
                                                                                  level: .pmd, entire: true)))
                        }
                        vma.hasAnonVMA = true
                    }
                    a = next
                    continue
                }
                try faultPTEs(p, vma, a, next, write: write)
                a = next
            }
        }
    }

    /// `AddressSpace.populateLargeFolios`.
    public func populateLargeFolios(pid: Int, _ start: UInt64, _ end: UInt64, order: Int) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        guard (2...8).contains(order) else { throw .invalidArgument(name: "order", reason: "mTHP orders are 2…8, not \(order)") }
        for vma in try covered(p, start, end, "mthp") {
            guard vma.isAnonymous, !vma.isHugetlb, vma.flags.contains(.write) else {
                throw .wrongVMAKind(address: vma.start, reason: "mTHP needs a writable private anonymous VMA")
            }
            vma.hasAnonVMA = true
            let s = max(start, vma.start), e = min(end, vma.end)
            let n = 1 << order
            let size = UInt64(Geometry.pageSize) << UInt64(order)
            var a = s
            while a < e {
                let next = geometry.entryEnd(a, at: .pmd, limit: e)
                switch lookupTable(p, a, allocate: true) {
                case .table:
                    var b = a
                    while b < next {
                        if b % size == 0 && b + size <= next && (0..<n).allSatisfy({ p.pages[b + UInt64($0) << Geometry.pageShift] == nil }) {
                            let f = newFolio(order: order, node: node(vma, b), flags: [.anon, .swapBacked])
                            let attrs = faultAttrs(vma, write: true, writable: true)
                            for k in 0..<n {
                                folios[f]!.exclusive[k] = true
                                set(p, b + UInt64(k) << Geometry.pageShift, .present(ReferencePresent(target: .folio(f, page: k), attrs: attrs)))
                            }
                            b += size
                        } else {
                            try faultPage(p, vma, b, write: true)
                            b += Geometry.pageSize
                        }
                    }
                case .pmdEntry:
                    break
                case .blocked, .absent:
                    throw .allocationFailed("no page table")
                }
                a = next
            }
        }
    }

    /// `AddressSpace.populateHugetlb`.
    public func populateHugetlb(pid: Int, _ start: UInt64, _ end: UInt64, write: Bool = true) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for vma in try covered(p, start, end, "hugetlb") {
            guard vma.isHugetlb else { throw .wrongVMAKind(address: vma.start, reason: "not a hugetlb VMA") }
            try populateHugetlbRange(p, vma, max(start, vma.start), min(end, vma.end), write: write)
        }
    }

    func populateHugetlbRange(_ p: ReferenceProcess, _ vma: ReferenceVMA, _ start: UInt64, _ end: UInt64, write: Bool) throws(ModelError) {
        let size = vma.hugePageSize
        guard start % size == 0, end % size == 0 else {
            throw .unaligned(name: "hugetlb range", value: start % size == 0 ? end : start, alignment: size)
        }
        if write && !vma.flags.contains(.write) {
            throw .wrongVMAKind(address: start, reason: "write fault on a VMA without write permission")
        }
        let (level, _) = hugetlbShape(size)
        let order = (size / Geometry.pageSize).trailingZeroBitCount
        var a = start
        while a < end {
            defer { a += size }
            if level == .pte { p.pteTables.insert(pmdBase(a)) }
            guard p.pages[a] == nil else { continue }
            let f: ReferenceFolioID
            if vma.isShared, let file = vma.file {
                let index = vma.pageIndex(a)
                if let c = file.cache[index] { f = c } else {
                    f = newFolio(order: order, node: node(vma, a), flags: [.hugetlb])
                    file.cache[index] = f
                    folios[f]!.cacheRefs += 1
                }
            } else {
                f = newFolio(order: order, node: node(vma, a), flags: [.hugetlb, .anon])
                folios[f]!.exclusive[0] = true
                vma.hasAnonVMA = true
            }
            var attrs: LeafAttributes = [.young]
            if vma.flags.contains(.write) && (vma.isShared || write) { attrs.formUnion([.writable, .dirty]) }
            if write && tracksSoftDirty { attrs.insert(.softDirty) }
            for k in 0..<(1 << order) {
                set(p, a + UInt64(k) << Geometry.pageShift, .present(ReferencePresent(target: .folio(f, page: k), attrs: attrs, level: level, entire: true)))
            }
        }
    }
}
