import Synchronization

extension AddressSpace {
    /// Whether a VMA is a private writable (copy-on-write) mapping
    /// (`is_cow_mapping()`).
    func isCOW(_ vma: VMA) -> Bool { !vma.flags.contains(.shared) && vma.flags.contains(.mayWrite) }

    /// `fork()`: a child address space with copies of the VMAs (minus
    /// VM_DONTCOPY; VM_WIPEONFORK ones empty; userfaultfd and mlock state not
    /// inherited) whose page tables are copied where the kernel copies them
    /// (`vma_needs_copy()`: VMAs with anonymous pages, and PFN maps). Private
    /// anonymous pages become shared copy-on-write: both PTEs write-protected,
    /// mapcount and refcount raised, `PageAnonExclusive` cleared; swap
    /// entries raise their swap counts and lose their exclusive bit.
    public func fork(childPID: Int) throws(ModelError) -> AddressSpace {
        try checkAlive()
        return try withMmapWriteLock { (_) throws(ModelError) -> AddressSpace in
            // dup_mmap() write-locks every VMA of the parent: a fault there
            // would race the copy of its page tables.
            for vma in vmaList { vmaStartWrite(vma) }
            let child = try AddressSpace(forkOf: self, pid: childPID)
            do {
                for vma in vmaList where !vma.flags.contains(.dontCopy) {
                    let c = vma.copy(start: vma.start, end: vma.end)
                    c.flags.subtract([.uffdWP, .uffdMissing, .uffdMinor, .locked, .lockOnFault])
                    if c.hasAnonVMA { c.anonVMAIdentity = VMA.newAnonVMA() }
                    child.replaceVMAs(child.vmaList.count..<child.vmaList.count, with: [c])
                    if vma.flags.contains(.wipeOnFork) { c.hasAnonVMA = false; continue }
                    // vma_needs_copy(): anonymous pages, PFN maps, and VMAs that
                    // may hold guard markers (VM_MAYBE_GUARD copies on fork).
                    guard vma.hasAnonVMA || vma.flags.contains(.pfnMap) || vma.flags.contains(.mixedMap)
                            || vma.flags.contains(.maybeGuard) else { continue }
                    if vma.isHugetlb { try copyHugetlb(vma, into: child) } else { try copyPageTables(vma, into: child) }
                }
            } catch let error as ModelError {
                child.releaseEverything()
                throw error
            } catch {
                child.releaseEverything()
                throw .unsupported("fork: \(error)")
            }
            return child
        }
    }

    private func copyPageTables(_ vma: VMA, into child: AddressSpace) throws(ModelError) {
        let cow = isCOW(vma)
        var a = vma.start
        while a < vma.end {
            let next = geometry.entryEnd(a, at: .pmd, limit: vma.end)
            defer { a = next }
            guard case .slot(let pmd) = try slot(a, at: .pmd, allocate: false) else { continue }
            let w = load(pmd)
            if w == 0 { continue }
            if !layout.isTable(w, .pmd) {
                try copyHugePMD(pmd, a, cow: cow, into: child)
                continue
            }
            let src = arena.uncheckedTable(atPFN: layout.pfn(w))
            guard case .table(let dst, _) = try child.lockPTETable(a, allocate: true) else {
                throw .allocationFailed("child page table at \(hex(a))")
            }
            let ptl = arena.lock(src)
            ptl.lock()
            defer { ptl.unlock(); child.arena.lock(dst).unlock() }
            let first = geometry.tableIndex(a, .pte)
            for i in first..<(first + Int((next - a) >> Geometry.pageShift)) {
                let copied = try copyPTE(src, i, cow: cow, vma: vma, child: child)
                if copied != 0 { child.storePTE(dst, i, copied) }
            }
        }
    }

    /// Copies one PTE for the child, adjusting the parent's entry and the
    /// counts (`copy_present_pte()`, `copy_nonpresent_pte()`); returns the
    /// child's entry.
    private func copyPTE(_ t: TableID, _ i: Int, cow: Bool, vma: VMA, child: AddressSpace) throws(ModelError) -> UInt64 {
        let e = arena.entries(t)
        let w = e[i].load(ordering: .relaxed)
        guard w != 0 else { return 0 }
        if layout.isPresent(w, .pte) {
            var parent = w
            if cow && w & layout.write != 0 { parent = layout.writeProtect(w) }
            if parent != w { e[i].store(parent, ordering: .releasing) }
            var c = parent & ~layout.young & ~layout.uffdWP
            if vma.flags.contains(.shared) { c = layout.markClean(c) }
            if !layout.isSpecialPTE(w), let page = memory.page(layout.pfn(w)), !page.folio.isZero {
                let f = page.folio
                if f.isAnon { f.setPageFlags(page.index, .anonExclusive, false) }
                f.addPTEMappings(first: page.index, count: 1, delta: 1)
                f.addRef(1)
                if let counter = rssCounter(for: f) { child.addRSS(counter, 1) }
            }
            return c
        }
        var leaf = SoftLeafEntry(decoding: w, layout: layout)
        switch leaf.leaf {
        case .swap(let s):
            memory.swap.adjust(Int(s.offset), 1)
            if leaf.bits.contains(.exclusive) {
                leaf.bits.remove(.exclusive)
                e[i].store(try leaf.encode(layout), ordering: .releasing)
            }
            child.addRSS(.swapEntries, 1)
        case .migration(let kind, let pfn, let young, let dirty):
            if cow && kind != .read {
                leaf.leaf = .migration(.read, pfn: pfn, young: young, dirty: dirty)
                e[i].store(try leaf.encode(layout), ordering: .releasing)
            }
            if let f = memory.folio(containing: pfn) {
                f.addRef(1)
                if let c = rssCounter(for: f) { child.addRSS(c, 1) }
            }
        case .devicePrivate(let writable, let pfn):
            if cow && writable {
                leaf.leaf = .devicePrivate(writable: false, pfn: pfn)
            }
            leaf.bits.remove(.exclusive)
            e[i].store(try leaf.encode(layout), ordering: .releasing)
            if let p = memory.page(pfn) {
                p.folio.setPageFlags(p.index, .anonExclusive, false)
                p.folio.addPTEMappings(first: p.index, count: 1, delta: 1)
                p.folio.addRef(1)
                child.addRSS(.anon, 1)
            }
        case .deviceExclusive(let pfn):
            if let p = memory.page(pfn) {
                p.folio.setPageFlags(p.index, .anonExclusive, false)
                p.folio.addPTEMappings(first: p.index, count: 1, delta: 1)
                p.folio.addRef(1)
                child.addRSS(.anon, 1)
            }
            leaf.bits.remove(.exclusive)
            e[i].store(try leaf.encode(layout), ordering: .releasing)
        case .hwpoison:
            break
        case .marker(let m):
            // The child is not registered with userfaultfd: only guard and
            // poisoned markers survive (`copy_pte_marker()`).
            let kept = m.subtracting(.uffdWP)
            return kept.isEmpty ? 0 : try SoftLeafEntry(.marker(kept)).encode(layout)
        }
        leaf.bits.remove(.uffdWP)
        return try leaf.encode(layout)
    }

    /// `copy_huge_pmd()`.
    private func copyHugePMD(_ s: EntrySlot, _ address: UInt64, cow: Bool, into child: AddressSpace) throws(ModelError) {
        guard case .slot(let cs) = try child.slot(address, at: .pmd, allocate: true) else { return }
        let l = lock(forEntriesOf: s.table, level: .pmd)
        l.lock()
        defer { l.unlock() }
        let w = load(s)
        if layout.isPresent(w, .pmd) {
            guard let f = memory.folio(containing: layout.pfn(w)) else { return }
            var parent = w
            if cow && w & layout.write != 0 { parent = layout.writeProtect(w) }
            store(s, parent)
            if !f.test(.hugeZeroPage) {
                if f.isAnon { f.setPageFlags(0, .anonExclusive, false) }
                f.addEntireMapping(1)
                f.addRef(1)
                if let c = rssCounter(for: f) { child.addRSS(c, f.pageCount) }
            }
            if depositsTable(f) { child.addTables(.pte, 1) }
            child.store(cs, parent & ~layout.young & ~layout.uffdWP)
        } else {
            var leaf = SoftLeafEntry(decoding: w, layout: layout)
            guard case .migration(let kind, let pfn, let young, let dirty) = leaf.leaf,
                  let f = memory.folio(containing: pfn) else { return }
            if cow && kind != .read {
                leaf.leaf = .migration(.read, pfn: pfn, young: young, dirty: dirty)
                store(s, try leaf.encode(layout))
            }
            f.addRef(1)
            if let c = rssCounter(for: f) { child.addRSS(c, f.pageCount) }
            if depositsTable(f) { child.addTables(.pte, 1) }
            leaf.bits.remove(.uffdWP)
            child.store(cs, try leaf.encode(layout))
        }
    }

    /// `copy_hugetlb_page_range()` for a private hugetlb VMA: the huge pages
    /// become shared copy-on-write.
    private func copyHugetlb(_ vma: VMA, into child: AddressSpace) throws(ModelError) {
        let (level, count) = hugetlbEntryShape(forSize: vma.hugePageSize)
        let cow = isCOW(vma)
        var a = vma.start
        while a < vma.end {
            defer { a += vma.hugePageSize }
            guard let s = hugetlbSlot(a, level: level) else { continue }
            let w = load(s)
            guard w != 0 else { continue }
            let cs: EntrySlot
            if level == .pte {
                guard case .table(let t, _) = try child.lockPTETable(a, allocate: true) else { continue }
                child.arena.lock(t).unlock()
                cs = EntrySlot(t, geometry.tableIndex(a, .pte), .pte)
            } else {
                guard case .slot(let x) = try child.slot(a, at: level, allocate: true) else { continue }
                cs = x
            }
            if layout.isPresent(w, level), let f = memory.folio(containing: layout.pfn(w)) {
                if f.isAnon { f.setPageFlags(0, .anonExclusive, false) }
                f.addEntireMapping(1)
                f.addRef(1)
                child.addHugetlb(Int(vma.hugePageSize))
            }
            for k in 0..<count {
                let ps = EntrySlot(s.table, s.index + k, level)
                var pw = load(ps)
                if cow && layout.isPresent(pw, level) && pw & layout.write != 0 {
                    pw = layout.writeProtect(pw)
                    store(ps, pw)
                }
                child.store(EntrySlot(cs.table, cs.index + k, level), pw & ~layout.young)
            }
        }
    }
}
