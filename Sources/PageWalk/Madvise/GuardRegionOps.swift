import MemoryModel

/// Guard regions (`MADV_GUARD_INSTALL` / `MADV_GUARD_REMOVE`) built on the
/// walker, as the kernel's mm/madvise.c builds them: install through
/// `install_pte`, remove through `pte_entry`.
enum GuardRegionOps {
    /// `MAX_MADVISE_GUARD_RETRIES`.
    static let maxRetries = 3

    /// `is_guard_pte_marker()`.
    static func isGuardMarker(_ pte: PTE) -> Bool {
        guard case .marker(let m)? = pte.softLeaf?.leaf else { return false }
        return m.contains(.guardRegion)
    }

    /// `pud_trans_huge()` / `pmd_trans_huge()` as a handler sees them.
    static func isHugeLeaf<E: PageTableEntry>(_ p: EntryPointer<E>) -> Bool {
        !p.hasTrivialEntries && p.entry.isLeaf
    }

    /// `guard_install_walk_ops`: a huge leaf or a populated PTE stops the
    /// walk with 1 (the caller zaps and retries); none PTEs get `marker`;
    /// existing guard markers are counted and kept. Counts guarded pages in
    /// the walk's data.
    static func install(marker: UInt64) -> MMWalkOps<UInt64> {
        MMWalkOps<UInt64>(
            pudEntry: { p, _, _, _ in isHugeLeaf(p) ? 1 : 0 },
            pmdEntry: { p, _, _, _ in isHugeLeaf(p) ? 1 : 0 },
            pteEntry: { p, _, _, walk in
                guard isGuardMarker(p.entry) else { return 1 }
                walk.privateData += 1
                return 0
            },
            installPTE: { _, _, pte, walk in
                pte = PTE(rawValue: marker, architecture: pte.architecture)
                walk.privateData += 1
                return 0
            },
            walkLock: .read)
    }

    /// `guard_remove_walk_ops`: huge leaves cannot hold markers and are
    /// skipped; guard markers are cleared, every other entry is left alone.
    static var remove: MMWalkOps<Void> {
        MMWalkOps<Void>(
            pudEntry: { p, _, _, walk in
                if isHugeLeaf(p) { walk.action = .continue }
                return 0
            },
            pmdEntry: { p, _, _, walk in
                if isHugeLeaf(p) { walk.action = .continue }
                return 0
            },
            pteEntry: { p, _, _, walk in
                if isGuardMarker(p.entry) { walk.setPTE(p, PTE(rawValue: 0, architecture: p.entry.architecture)) }
                return 0
            },
            walkLock: .read)
    }

    /// The checks `madvise()` makes before taking the lock: a page-aligned
    /// start, no wrap; the end rounded up to a page. Nil for an empty range
    /// (the call returns 0).
    static func pageRange(_ start: UInt64, _ end: UInt64) throws(MadviseError) -> UInt64? {
        let page = Geometry.pageSize
        guard start & Geometry.pageOffsetMask == 0, end >= start, end <= UInt64.max - page else {
            throw .invalidRange(start: start, end: end)
        }
        let rounded = (end + page - 1) & ~Geometry.pageOffsetMask
        return rounded == start ? nil : rounded
    }

    /// The part of `madvise()` around one behaviour: validates the range,
    /// takes the mmap read lock, applies `behavior` to each VMA piece in
    /// order (`madvise_walk_vmas()`), stops at the first error, and reports
    /// an unmapped gap (-ENOMEM) only after the mapped parts were done.
    static func madvise(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64,
                        _ behavior: (VMA, UInt64, UInt64) throws(MadviseError) -> Void) throws(MadviseError) {
        guard let end = try pageRange(start, end) else { return }
        try mm.withMmapReadLock { (_) throws(MadviseError) in
            var unmapped: UInt64?
            var addr = start
            for vma in mm.vmas(intersecting: start, end) {
                if addr < vma.start && unmapped == nil { unmapped = addr }
                let s = max(addr, vma.start), e = min(end, vma.end)
                try behavior(vma, s, e)
                addr = e
            }
            if addr < end && unmapped == nil { unmapped = addr }
            if let gap = unmapped { throw .unmapped(address: gap) }
        }
    }
}

/// Models `madvise(MADV_GUARD_INSTALL)`: every page of `[start, end)`
/// becomes a guard marker (a fault on it raises SIGSEGV). Markers go onto
/// none PTEs through `install_pte` (allocating tables as needed, never
/// splitting a THP); if populated entries are met, the range is zapped and
/// the install retried, up to three times before asking for a restart.
/// Refused (-EINVAL) for hugetlb, VM_LOCKED and VM_SPECIAL (PFN, IO) VMAs.
/// Takes the mmap read lock itself. `walker` picks the range walker's
/// installing update walk or the callback walker's `install_pte` ops.
public func madviseGuardInstall(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64,
                                walker: WalkerKind = .range) throws(MadviseError) {
    let marker: UInt64
    do {
        marker = try SoftLeafEntry(.marker(.guardRegion)).encode(mm.geometry.layout)
    } catch {
        throw .walk(.model(error))
    }
    let ops = GuardRegionOps.install(marker: marker)
    // VM_MAYBE_GUARD first, on the VMAs the install below reaches (it also
    // makes fork copy the markers).
    guard let end = try GuardRegionOps.pageRange(start, end) else { return }
    do throws(ModelError) {
        try mm.markMaybeGuard(start, end)
    } catch {
        throw .walk(.model(error))
    }
    try GuardRegionOps.madvise(mm, start, end) { (vma, s, e) throws(MadviseError) in
        guard AddressSpace.isValidGuardVMA(vma, allowLocked: false) else {
            throw .invalidVMA(address: vma.start, reason: "guard regions need a VMA that is not hugetlb, locked or special")
        }
        for _ in 0..<GuardRegionOps.maxRetries {
            let done: Bool
            do throws(PageWalkError) {
                switch walker {
                case .range: done = try GuardRegionOps.installRange(mm, s, e)
                case .callback:
                    var guarded: UInt64 = 0
                    done = try walkPageRangeMM(mm, s, e, ops: ops, private: &guarded) == 0
                }
            } catch {
                throw .walk(error)
            }
            if done { return }
            // Something is mapped: zap it (markers survive) and try again.
            do throws(ModelError) {
                try mm.zapPageRangeSingle(vma, s, e)
            } catch {
                throw .walk(.model(error))
            }
        }
        throw .restartSyscall
    }
}

extension GuardRegionOps {
    /// The install on the update walk: none entries (with or without a
    /// table) take the marker, guard markers stay; anything else (a page, a
    /// THP, a swap entry, another marker) ends the walk with false, for the
    /// caller to zap and retry.
    static func installRange(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64) throws(PageWalkError) -> Bool {
        try mm.withInstallingWalk(start..<end) { (walk) throws(PageWalkError) -> Bool in
            try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in
                switch e.content {
                case .none:
                    try e.installMarker(.guardRegion)
                    return .next
                case .marker(let m) where m.contains(.guardRegion):
                    return .next
                default:
                    return .stop
                }
            }
        }
    }

    /// The remove on the update walk: guard markers cleared, huge leaves
    /// stepped over whole (they cannot hold markers), the rest untouched.
    static func removeRange(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64) throws(PageWalkError) {
        try mm.withUpdateWalk(start..<end, options: UpdateWalkOptions(respect: [])) { (walk) throws(PageWalkError) in
            try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in
                if case .marker(let m) = e.content, m.contains(.guardRegion) { try e.clearMarker(.guardRegion) }
                return .next
            }
        }
    }
}

/// Models `madvise(MADV_GUARD_REMOVE)`: clears the guard markers of
/// `[start, end)` and nothing else. Allowed on VM_LOCKED VMAs (removing is
/// not destructive); refused for hugetlb and VM_SPECIAL VMAs. Takes the mmap
/// read lock itself.
public func madviseGuardRemove(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64,
                               walker: WalkerKind = .range) throws(MadviseError) {
    let ops = GuardRegionOps.remove
    try GuardRegionOps.madvise(mm, start, end) { (vma, s, e) throws(MadviseError) in
        guard AddressSpace.isValidGuardVMA(vma, allowLocked: true) else {
            throw .invalidVMA(address: vma.start, reason: "guard regions need a VMA that is not hugetlb or special")
        }
        do throws(PageWalkError) {
            switch walker {
            case .range: try GuardRegionOps.removeRange(mm, s, e)
            case .callback:
                var none: Void = ()
                _ = try walkPageRangeVMA(mm, vma, s, e, ops: ops, private: &none)
            }
        } catch {
            throw .walk(error)
        }
    }
}
