import Synchronization

extension AddressSpace {
    /// `mprotect()`: sets the access bits of `[start, end)`, splitting VMAs
    /// at the edges and merging compatible neighbours afterwards, and
    /// updates the entries (`change_protection()`): write removed everywhere
    /// it goes away; where it is granted, only exclusive anonymous pages (and
    /// dirty shared ones) become writable at once; PROT_NONE entries stay
    /// present without the hardware valid bit.
    public func mprotect(_ start: UInt64, _ end: UInt64, access: VMFlags) throws(ModelError) {
        try checkAlive()
        guard access.subtracting(.access).isEmpty else {
            throw .invalidArgument(name: "access", reason: "only read, write and exec")
        }
        try withMmapWriteLock { (_) throws(ModelError) in
            let covered = try coveredVMAs(start, end, operation: "mprotect")
            for v in covered where access.contains(.write) && !v.flags.contains(.mayWrite) {
                throw .wrongVMAKind(address: v.start, reason: "write access to a VMA without VM_MAYWRITE")
            }
            for v in covered where v.isHugetlb {
                if max(start, v.start) % v.hugePageSize != 0 || min(end, v.end) % v.hugePageSize != 0 {
                    throw .unaligned(name: "hugetlb mprotect", value: start, alignment: v.hugePageSize)
                }
            }
            var populate: [Range<UInt64>] = []
            for vma in Array(try isolateVMAs(start, end)) {
                vmaStartWrite(vma)
                if Self.populatesOnMprotect(vma.flags, access) { populate.append(vma.range) }
                var flags = vma.flags.subtracting(.access).union(access)
                if access.contains(.write) && vma.isPrivate && !vma.isHugetlb && !vma.isPFNMap {
                    flags.insert(.account)
                } else if !access.contains(.write) && vma.isAnonymous && !vma.hasAnonVMA {
                    // Never faulted: the commit charge goes back (mprotect_fixup()).
                    flags.remove(.account)
                }
                vma.flags = flags
                if vma.isHugetlb { try changeHugetlbProtection(vma); continue }
                try changeProtection(vma)
            }
            mergeVMAs(around: start, end)
            for r in populate { try populateForWrite(r) }
        }
    }

    /// Whether `mprotect_fixup()` populates a VMA whose flags were `old`
    /// and that is given `access`: a locked private mapping gaining write
    /// has its pages faulted for write at once (`populate_vma_page_range()`,
    /// breaking COW), so that no locked page takes a fault later. Not with
    /// VM_LOCKONFAULT, whose pages are locked as they are faulted.
    package static func populatesOnMprotect(_ old: VMFlags, _ access: VMFlags) -> Bool {
        old.intersection([.write, .shared, .locked]) == [.locked] && access.contains(.write)
            && !old.contains(.lockOnFault)
    }

    /// `populate_vma_page_range()` for write over `range` (mmap lock held
    /// for write): every page of its VMAs faulted for write, stopping
    /// quietly at the first guard or poison marker as GUP does. Its errors
    /// are not mprotect's.
    private func populateForWrite(_ range: Range<UInt64>) throws(ModelError) {
        for vma in vmas(intersecting: range.lowerBound, range.upperBound) {
            let s = max(range.lowerBound, vma.start), e = min(range.upperBound, vma.end)
            guard vma.flags.contains(.write), !vma.flags.contains(.pfnMap), !vma.flags.contains(.mixedMap) else { continue }
            if vma.isHugetlb { try populateHugetlbLocked(vma, s, e, write: true); continue }
            let stop = try firstUnfaultableMarker(s, e) ?? e
            if stop > s { try faultPTEs(vma, s, stop, write: true) }
            if stop < e { return }
        }
    }

    /// The new value of a present leaf under `vma`'s new protection.
    private func protect(_ w: UInt64, level: PageTableLevel, vma: VMA) -> UInt64 {
        var n = w
        let none = vma.flags.intersection(.access).isEmpty
        if none {
            n = (n & ~layout.valid) | layout.presentInvalid
        } else if n & layout.valid == 0 {
            n = (n & ~layout.presentInvalid) | layout.valid
        }
        if vma.flags.contains(.exec) { n &= ~layout.noExecute } else { n |= layout.noExecute }
        if !vma.flags.contains(.write) || none {
            if n & layout.write != 0 { n = layout.writeProtect(n) }
        } else if n & layout.write == 0 && n & layout.uffdWP == 0 && !layout.isSpecialPTE(n) {
            let softDirtyOK = !tracksSoftDirty || vma.flags.contains(.softDirty) || n & layout.softDirty != 0
            let page = memory.page(layout.pfn(n))
            let ok = vma.isShared ? layout.isDirtyPTE(n)
                : (page.map { $0.folio.isAnon && !$0.folio.isKSM && $0.isAnonExclusive } ?? false)
            if ok && softDirtyOK { n = layout.makeWritable(n) }
        }
        return n
    }

    /// A writable migration entry made readable, as every protection
    /// change does (`change_pte_range()`, `change_huge_pmd()`): exclusive
    /// for an anonymous folio, its soft-dirty and other bits kept. Nil for
    /// any other entry.
    func readableMigrationEntry(_ leaf: SoftLeafEntry) -> SoftLeafEntry? {
        guard case .migration(.write, let pfn, let young, let dirty) = leaf.leaf else { return nil }
        var n = leaf
        let anon = memory.folio(containing: pfn)?.isAnon ?? true
        n.leaf = .migration(anon ? .readExclusive : .read, pfn: pfn, young: young, dirty: dirty)
        return n
    }

    private func changeProtection(_ vma: VMA) throws(ModelError) {
        try forEachPTE(vma.start, vma.end, pmd: { (s, a, _) throws(ModelError) -> PMDDecision in
            guard a % AddressSpace.pmdSize == 0, a + AddressSpace.pmdSize <= vma.end else { return .split }
            let l = self.lock(forEntriesOf: s.table, level: .pmd)
            l.lock()
            let w = self.load(s)
            if self.layout.isPresent(w, .pmd) { self.store(s, self.protect(w, level: .pmd, vma: vma)) }
            l.unlock()
            return .skip
        }) { (t, i, _) throws(ModelError) in
            let w = arena.entries(t)[i].load(ordering: .relaxed)
            guard w != 0 else { return }
            if layout.isPresent(w, .pte) {
                let n = protect(w, level: .pte, vma: vma)
                // An unchanged last entry is still rewritten by the kernel's
                // commit, which may fold a block the range made uniform.
                if n != w { storePTE(t, i, n) } else { tryFoldContiguous(t, i) }
            } else if !vma.flags.contains(.write) {
                var leaf = SoftLeafEntry(decoding: w, layout: layout)
                switch leaf.leaf {
                case .migration(.write, let pfn, let y, let d):
                    leaf.leaf = .migration(.readExclusive, pfn: pfn, young: y, dirty: d)
                    storePTE(t, i, try leaf.encode(layout))
                case .devicePrivate(true, let pfn):
                    leaf.leaf = .devicePrivate(writable: false, pfn: pfn)
                    storePTE(t, i, try leaf.encode(layout))
                default: break
                }
            }
        }
    }

    private func changeHugetlbProtection(_ vma: VMA) throws(ModelError) {
        let (level, count) = hugetlbEntryShape(forSize: vma.hugePageSize)
        var a = vma.start
        while a < vma.end {
            defer { a += vma.hugePageSize }
            guard let s = hugetlbSlot(a, level: level) else { continue }
            let l = count > 1 || level == .pud ? pageTableLock.ref : lock(forEntriesOf: s.table, level: level)
            l.lock()
            for k in 0..<count {
                let ps = EntrySlot(s.table, s.index + k, level)
                let w = load(ps)
                if layout.isPresent(w, level) {
                    var n = w
                    if !vma.flags.contains(.write) { n = layout.writeProtect(n) }
                    if vma.flags.contains(.exec) { n &= ~layout.noExecute } else { n |= layout.noExecute }
                    store(ps, n)
                }
            }
            l.unlock()
        }
    }

    /// `mlock()` and `mlock2()` up to the folio walk: marks the VMAs
    /// VM_LOCKED (and VM_LOCKONFAULT for `onFault`), splitting at the edges
    /// and merging (`mlock_fixup()`, which leaves hugetlb and VM_SPECIAL
    /// VMAs whole and unmarked), then faults in every page of the VMAs not
    /// VM_LOCKONFAULT (`__mm_populate()`: a write fault for private
    /// writable mappings; PFN and I/O maps skipped), and has `mlockFolios`
    /// mlock what each VMA maps: the walker user (PageWalk's
    /// `mlock_walk_ops` on either walker).
    /// Populating stops at the first guard or poison marker, or PROT_NONE
    /// VMA: the VMAs stay locked, the pages after it unpopulated, and the
    /// call fails (mlock(2) returns ENOMEM).
    package func mlock(_ start: UInt64, _ end: UInt64, onFault: Bool,
                       mlockFolios: (VMA) throws(ModelError) -> Void) throws(ModelError) {
        try checkAlive()
        try withMmapWriteLock { (_) throws(ModelError) in
            _ = try coveredVMAs(start, end, operation: "mlock")
            let flags: VMFlags = onFault ? [.locked, .lockOnFault] : [.locked]
            for vma in try isolateVMAs(start, end, where: Self.mlockChangesFlags) {
                vmaStartWrite(vma)
                vma.flags.formUnion(flags)
                if !onFault { vma.flags.remove(.lockOnFault) }
            }
            // The flag change merges first (mlock_fixup()); populating
            // follows, so a fault's anon_vma never stands between the parts.
            mergeVMAs(around: start, end)
            var failedAt: UInt64?
            for vma in vmas(intersecting: start, end) {
                let s = max(start, vma.start), e = min(end, vma.end)
                if vma.flags.contains(.pfnMap) || vma.flags.contains(.io) { continue }
                // Populating skips what is locked on fault, by the VMA's own
                // flags: a hugetlb VMA, never VM_LOCKONFAULT, is populated
                // by mlock2(MLOCK_ONFAULT) too (populate_vma_page_range()).
                if vma.flags.contains(.lockOnFault) {
                    try mlockFolios(vma)
                    continue
                }
                let write = vma.flags.contains(.write) && !vma.flags.contains(.shared)
                if vma.isHugetlb { try populateHugetlbLocked(vma, s, e, write: write); continue }
                // A PROT_NONE VMA cannot be populated: the populate stops there too.
                if vma.flags.intersection(.access).isEmpty { failedAt = failedAt ?? s; continue }
                if failedAt != nil { try mlockFolios(vma); continue }
                let stop = try firstUnfaultableMarker(s, e)
                if (stop ?? e) > s { try faultPTEs(vma, s, stop ?? e, write: write) }
                try mlockFolios(vma)
                failedAt = stop
            }
            if let failedAt { throw .faultFailed(address: failedAt, reason: "a guard or poison marker or a PROT_NONE VMA met while populating for mlock") }
        }
    }

    /// The first PTE in `[start, end)` holding a guard or poison marker,
    /// where a populating fault gives up (`VM_FAULT_SIGSEGV`, `VM_FAULT_HWPOISON`).
    private func firstUnfaultableMarker(_ start: UInt64, _ end: UInt64) throws(ModelError) -> UInt64? {
        var first: UInt64?
        try forEachPTE(start, end, pmd: { _, _, _ in .skip }) { (t, i, a) throws(ModelError) in
            guard first == nil else { return }
            let w = arena.entries(t)[i].load(ordering: .relaxed)
            guard w != 0, !layout.isPresent(w, .pte),
                  case .marker(let m) = SoftLeafEntry(decoding: w, layout: layout).leaf,
                  m.failsFaults else { return }
            first = a
        }
        return first
    }

    /// `munlock()` up to the folio walk: clears VM_LOCKED and
    /// VM_LOCKONFAULT, and has `munlockFolios` munlock what each VMA maps.
    package func munlock(_ start: UInt64, _ end: UInt64,
                         munlockFolios: (VMA) throws(ModelError) -> Void) throws(ModelError) {
        try checkAlive()
        try withMmapWriteLock { (_) throws(ModelError) in
            _ = try coveredVMAs(start, end, operation: "munlock")
            for vma in try isolateVMAs(start, end, where: { $0.flags.contains(.locked) }) {
                vmaStartWrite(vma)
                vma.flags.subtract([.locked, .lockOnFault])
                if !vma.isHugetlb { try munlockFolios(vma) }
            }
            mergeVMAs(around: start, end)
        }
    }
}
