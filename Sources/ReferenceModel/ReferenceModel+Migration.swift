import MemoryModel

/// The reference's page migration, the page-granular counterpart of
/// `AddressSpace+Migration.swift`. Each operation follows the documented
/// semantics of the model's operation (named in its comment), checks its
/// arguments in the same order and throws the same `ModelError` cases.
extension ReferenceModel {
    /// `AddressSpace.migrate`.
    public func migrate(pid: Int, _ start: UInt64, _ end: UInt64, toNode target: Int) throws(ModelError) {
        guard (0..<nodeCount).contains(target) else {
            throw .invalidArgument(name: "node", reason: "node \(target) does not exist (\(nodeCount) nodes)")
        }
        let p = try alive(pid)
        defer { collect() }
        for (f, a) in try migratable(p, start, end) {
            try installMigration(p, f, a)
            let old = folios[f]!
            let nf = newFolio(order: old.order, node: target, flags: old.flags)
            folios[nf]!.poisoned = old.poisoned
            try removeMigration(p, f, a, onto: nf)
        }
    }

    /// `AddressSpace.startMigration`.
    public func startMigration(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for (f, a) in try migratable(p, start, end) { try installMigration(p, f, a) }
    }

    /// `AddressSpace.finishMigration`.
    public func finishMigration(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        var done = Set<ReferenceFolioID>()
        for vma in try covered(p, start, end, "migration") {
            var found: [(ReferenceFolioID, UInt64)] = []
            try forEachPTE(p, max(start, vma.start), min(end, vma.end), pmd: { (a) throws(ModelError) -> PMDDecision in
                if case .migration(_, let f, _, _, _, _, .pmd)? = p.pages[self.pmdBase(a)] { found.append((f, a)) }
                return .skip
            }) { (a) throws(ModelError) in
                if case .migration(_, let f, let i, _, _, _, _)? = p.pages[a] { found.append((f, a - UInt64(i) * Geometry.pageSize)) }
            }
            for (f, a) in found where done.insert(f).inserted { try removeMigration(p, f, a, onto: f) }
        }
    }

    func migratable(_ p: ReferenceProcess, _ start: UInt64, _ end: UInt64) throws(ModelError) -> [(ReferenceFolioID, UInt64)] {
        var out: [(ReferenceFolioID, UInt64)] = []
        for vma in try covered(p, start, end, "migrate") {
            guard !vma.isHugetlb, !vma.isPFNMap else {
                throw .wrongVMAKind(address: vma.start, reason: "migration of hugetlb or PFN-mapped memory is not modelled")
            }
            let s = max(start, vma.start), e = min(end, vma.end)
            out += try anonFoliosInside(p, s, e) { !$0.isKSM && !$0.flags.contains(.zoneDevice) && !$0.flags.contains(.swapCache) }
            try forEachPTE(p, s, e, pmd: { _ in .skip }) { (a) throws(ModelError) in
                guard case .present(let pp)? = p.pages[a], !pp.attrs.contains(.special), case .folio(let f, _) = pp.target,
                      let fo = folios[f], !fo.isAnon, !fo.isLarge, fo.mapcount == 1 else { return }
                out.append((f, a))
            }
        }
        return out
    }

    func migrationKind(_ pp: ReferencePresent, exclusive: Bool) -> MigrationKind {
        pp.attrs.contains(.writable) ? .write : (exclusive ? .readExclusive : .read)
    }

    func installMigration(_ p: ReferenceProcess, _ f: ReferenceFolioID, _ address: UInt64) throws(ModelError) {
        let spaces = folios[f]!.isAnon ? familyMembers(p) : [p]
        for mm in spaces {
            if folios[f]!.order == 9, address % ReferenceModel.pmdSize == 0,
               case .present(let pp)? = mm.pages[address], pp.level == .pmd, case .folio(f, 0) = pp.target {
                var bits: SwapPTEBits = []
                if pp.attrs.contains(.softDirty) { bits.insert(.softDirty) }
                if pp.attrs.contains(.uffdWP) { bits.insert(.uffdWP) }
                let kind = migrationKind(pp, exclusive: folios[f]!.exclusive[0])
                for k in 0..<512 {
                    set(mm, address + UInt64(k) << Geometry.pageShift, .migration(kind, folio: f, page: k, young: pp.attrs.contains(.young),
                                                                  dirty: pp.attrs.contains(.dirty), bits: bits, level: .pmd))
                }
                if folios[f]!.isAnon { folios[f]!.exclusive[0] = false }
            }
            for k in 0..<folios[f]!.pageCount {
                let a = address + UInt64(k) * Geometry.pageSize
                try withPTEMapping(mm, a, folio: f, page: k) { (pp) in
                    var bits: SwapPTEBits = []
                    if pp.attrs.contains(.softDirty) { bits.insert(.softDirty) }
                    if pp.attrs.contains(.uffdWP) { bits.insert(.uffdWP) }
                    let kind = self.migrationKind(pp, exclusive: self.folios[f]!.exclusive[k])
                    self.set(mm, a, .migration(kind, folio: f, page: k, young: pp.attrs.contains(.young),
                                               dirty: pp.attrs.contains(.dirty), bits: bits, level: .pte))
                    if self.folios[f]!.isAnon { self.folios[f]!.exclusive[k] = false }
                }
            }
        }
    }

    func removeMigration(_ p: ReferenceProcess, _ f: ReferenceFolioID, _ address: UInt64, onto t: ReferenceFolioID) throws(ModelError) {
        let anon = folios[f]!.isAnon
        let spaces = anon ? familyMembers(p) : [p]
        let n = folios[f]!.pageCount
        let size = UInt64(Geometry.pageSize) << UInt64(folios[f]!.order)
        for mm in spaces {
            guard mm.vma(containing: address) != nil else { continue }
            func attrs(_ kind: MigrationKind, _ y: Bool, _ d: Bool, _ bits: SwapPTEBits) -> LeafAttributes {
                var a: LeafAttributes = []
                if kind == .write { a.insert(.writable) }
                if y { a.insert(.young) }
                if d { a.insert(.dirty) }
                if bits.contains(.softDirty) { a.insert(.softDirty) }
                if bits.contains(.uffdWP) { a.insert(.uffdWP) }
                return a
            }
            if folios[f]!.order == 9, address % ReferenceModel.pmdSize == 0,
               case .migration(let kind, f, 0, let y, let d, let bits, .pmd)? = mm.pages[address] {
                for k in 0..<512 {
                    set(mm, address + UInt64(k) << Geometry.pageShift, .present(ReferencePresent(target: .folio(t, page: k), attrs: attrs(kind, y, d, bits),
                                                                                 level: .pmd, entire: true)))
                }
                if kind != .read && anon { folios[t]!.exclusive[0] = true }
            }
            var a = address
            while a < address + size {
                let next = geometry.entryEnd(a, at: .pmd, limit: address + size)
                if lookupTable(mm, a, allocate: false) == .table {
                    var b = a
                    while b < next {
                        let k = Int((b - address) >> Geometry.pageShift)
                        if case .migration(let kind, f, k, let y, let d, let bits, .pte)? = mm.pages[b] {
                            set(mm, b, .present(ReferencePresent(target: .folio(t, page: k), attrs: attrs(kind, y, d, bits))))
                            if kind != .read && anon { folios[t]!.exclusive[k] = true }
                        }
                        b += Geometry.pageSize
                    }
                }
                a = next
            }
        }
        guard f != t else { return }
        if let vma = p.vma(containing: address), let file = vma.file, !anon {
            let index = vma.pageIndex(address)
            for k in 0..<n where file.cache[index + UInt64(k)] == f && k == 0 {
                file.cache[index + UInt64(k)] = t
                folios[t]!.cacheRefs += 1
                folios[f]!.cacheRefs -= 1
            }
        }
    }
}

extension ReferenceModel {
    /// `AddressSpace.migrateIsolatedFolio` for a hugetlb folio mapped at
    /// `address` (`moveLockedHugetlbFolio`): a new hugetlb folio on
    /// `target` takes every mapping of the old one in this process (and,
    /// for anonymous memory, its fork family) with the same bits, and its
    /// page-cache slot; the old one goes. Returns false, changing nothing,
    /// where the model does not move: no hugetlb folio's head at
    /// `address`, PTE-level entries, or a mapping outside those processes.
    @discardableResult
    public func migrateHugetlb(pid: Int, at address: UInt64, toNode target: Int) throws(ModelError) -> Bool {
        guard (0..<nodeCount).contains(target) else {
            throw .invalidArgument(name: "node", reason: "node \(target) does not exist (\(nodeCount) nodes)")
        }
        let p = try alive(pid)
        defer { collect() }
        guard let vma = p.vma(containing: address), vma.isHugetlb,
              case .present(let head)? = p.pages[address], head.level != .pte,
              case .folio(let f, 0) = head.target, let old = folios[f], old.isHugetlb else { return false }
        let spaces = old.isAnon ? familyMembers(p) : [p]
        let mapping = spaces.filter {
            if case .present(let q)? = $0.pages[address], case .folio(f, 0) = q.target { return true }
            return false
        }
        guard mapping.count == old.entireMaps else { return false }
        let nf = newFolio(order: old.order, node: target, flags: old.flags)
        folios[nf]!.exclusive[0] = old.exclusive[0]
        for mm in mapping {
            for k in 0..<(1 << old.order) {
                let a = address + UInt64(k) << Geometry.pageShift
                guard case .present(var q)? = mm.pages[a], case .folio(f, let i) = q.target else { continue }
                q.target = .folio(nf, page: i)
                set(mm, a, .present(q))
            }
        }
        if let file = vma.file, file.cache[vma.pageIndex(address)] == f {
            file.cache[vma.pageIndex(address)] = nf
            folios[f]!.cacheRefs -= 1
            folios[nf]!.cacheRefs += 1
        }
        return true
    }
}
