import Synchronization

extension AddressSpace {
    /// `mremap(start, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, newStart)`
    /// with `len = end - start`: the pages of `[start, end)` and their VMAs
    /// move to `[newStart, newStart + len)`, unchanged in size. Linux 6.18
    /// rules the model follows:
    ///
    /// - `start`, `end` and `newStart` must be page aligned and the two ranges
    ///   may not overlap (-EINVAL); whatever was mapped at the destination is
    ///   unmapped first, as MAP_FIXED would.
    /// - The source may span several VMAs (a move that keeps the length may
    ///   cross VMA boundaries since 6.17). Each is split at the range's ends
    ///   and moved on its own, to the same offset from `newStart`, keeping
    ///   its flags, file offset (an anonymous VMA's too, so it merges with
    ///   no fresh neighbour where it lands), anon_vma, policy and protection
    ///   key; at the destination it merges with compatible neighbours, as a
    ///   new mapping would, so a part moved away and back merges with what
    ///   it left.
    /// - The entries move as they are (`move_ptes()`): present pages keep
    ///   their young, dirty and write bits, swap entries and guard markers
    ///   move with them, folios keep their mapcounts, and the resident set
    ///   does not change. With soft-dirty tracking every moved entry is
    ///   marked soft-dirty. A VMA registered with userfaultfd leaves its
    ///   registration behind (the model's contexts do not ask for
    ///   UFFD_FEATURE_EVENT_REMAP): the moved VMA loses VM_UFFD_*, its
    ///   entries lose their uffd-wp bits and uffd-wp markers are dropped.
    /// - PMD leaves are split into PTEs before their entries move; the kernel
    ///   moves a whole, aligned PMD as one entry, which the model leaves out.
    ///
    /// Refused: hugetlb and VM_PFNMAP / VM_IO / VM_DONTEXPAND / VM_MIXEDMAP
    /// VMAs (`wrongVMAKind`, before anything changes). A hole in the source is
    /// `noVMA` (the kernel's -EFAULT), also before anything changes. The
    /// model's reverse map finds an anonymous folio at one address in every
    /// member of its fork family, so moving pages a live fork child still
    /// shares is outside what it reproduces. The ReferenceModel has no
    /// mremap.
    public func mremapMove(_ start: UInt64, _ end: UInt64, to newStart: UInt64) throws(ModelError) {
        try checkAlive()
        try withMmapWriteLock { (_) throws(ModelError) in try mremapMoveLocked(start, end, to: newStart) }
    }

    func mremapMoveLocked(_ start: UInt64, _ end: UInt64, to newStart: UInt64) throws(ModelError) {
        for (name, v) in [("mremap old address", start), ("mremap old end", end), ("mremap new address", newStart)]
        where v & Geometry.pageOffsetMask != 0 {
            throw .unaligned(name: name, value: v, alignment: Geometry.pageSize)
        }
        guard start < end else { throw .invalidRange(start: start, end: end, reason: "mremap needs a non-empty range") }
        let (newEnd, overflow) = newStart.addingReportingOverflow(end - start)
        guard !overflow, newEnd <= geometry.userAddressLimit, end <= geometry.userAddressLimit else {
            throw .invalidRange(start: newStart, end: newEnd, reason: "beyond the user address space (\(hex(geometry.userAddressLimit)))")
        }
        guard newEnd <= start || newStart >= end else {
            throw .invalidRange(start: newStart, end: newEnd, reason: "mremap destination overlaps the source")
        }
        for v in try coveredVMAs(start, end, operation: "mremap")
        where v.isHugetlb || !v.flags.isDisjoint(with: AddressSpace.specialFlags) {
            throw .wrongVMAKind(address: v.start, reason: "mremap of a hugetlb or special VMA is not modelled")
        }
        try munmapLocked(newStart, newEnd)
        for vma in Array(try isolateVMAs(start, end)) {
            try moveVMA(vma, to: newStart + (vma.start - start))
        }
        freeEmptyTables(start, end)
    }

    /// Moves one whole VMA and its entries to `destination` (`copy_vma()`,
    /// `move_page_tables()`, then the old VMA unlinked).
    private func moveVMA(_ vma: VMA, to destination: UInt64) throws(ModelError) {
        vmaStartWrite(vma)
        let dropsUffd = !vma.flags.isDisjoint(with: AddressSpace.uffdFlags)
        var entries: [(offset: UInt64, word: UInt64)] = []
        try forEachPTE(vma.start, vma.end) { (t, i, a) throws(ModelError) in
            let w = arena.entries(t)[i].load(ordering: .relaxed)
            guard w != 0 else { return }
            storePTE(t, i, 0)
            if let moved = movedEntry(w, dropsUffd: dropsUffd) { entries.append((a - vma.start, moved)) }
        }
        var flags = vma.flags
        if dropsUffd { flags.subtract(AddressSpace.uffdFlags) }
        let moved = VMA(start: destination, end: destination + vma.size, flags: flags, backing: vma.backing,
                        name: vma.name, policy: vma.policy, protectionKey: vma.protectionKey,
                        hugePageSize: vma.hugePageSize, anonVMAIdentity: vma.anonVMAIdentity,
                        anonDisplacement: vma.anonDisplacement
                            + (Int64(bitPattern: vma.start) - Int64(bitPattern: destination)) / Int64(Geometry.pageSize))
        changeVMAs { list in
            list.removeAll { $0 === vma }
            list.insert(moved, at: list.firstIndex(endingAfter: destination))
        }
        if !entries.isEmpty {
            // In address order, as they were collected.
            var k = 0
            try forEachPTE(destination, moved.end, allocate: true) { (t, i, a) throws(ModelError) in
                guard k < entries.count, entries[k].offset == a - destination else { return }
                storePTE(t, i, entries[k].word)
                k += 1
            }
        }
        mergeVMAs(around: destination, moved.end)
    }

    static let uffdFlags: VMFlags = [.uffdMissing, .uffdWP, .uffdMinor]

    /// An entry as `move_ptes()` stores it at its new address; nil when it
    /// is dropped (a uffd-wp marker whose registration stays behind).
    private func movedEntry(_ w: UInt64, dropsUffd: Bool) -> UInt64? {
        var w = w
        if layout.isPresent(w, .pte) {
            if dropsUffd { w &= ~layout.uffdWP }
            if tracksSoftDirty { w |= layout.softDirty }
            return w
        }
        if dropsUffd {
            if case .marker(let m) = SoftLeafEntry(decoding: w, layout: layout).leaf {
                if m.contains(.uffdWP) { return nil }
            } else {
                w &= ~layout.swapUffdWP
            }
        }
        if tracksSoftDirty { w |= layout.swapSoftDirty }
        return w
    }
}
