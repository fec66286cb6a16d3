import MemoryModel

extension MappingDirty {
    /// `walk->private` of the helpers: `struct wp_walk` (the count and the
    /// flush range of the VMA being walked), with `struct clean_walk`'s
    /// bitmap when cleaning.
    public struct WPWalk {
        /// `tlbflush_start`, `tlbflush_end`: the PTEs changed in this VMA.
        var flushStart: UInt64 = 0
        var flushEnd: UInt64 = 0
        /// `clean_walk.bitmap` with its `start`, `end` (cleaning only).
        var bitmap: MappingDirtyBitmap?
        public internal(set) var result = MappingDirtyResult()
        init(bitmap: MappingDirtyBitmap?) { self.bitmap = bitmap }
    }

    /// Models `clean_walk_ops` (`.cleanRecord`) and `wp_walk_ops`
    /// (`.writeProtect`): `pte_entry` is `clean_record_pte()` or `wp_pte()`;
    /// `pmd_entry` and `pud_entry` (`wp_clean_pmd_entry()`,
    /// `wp_clean_pud_entry()`) set `ACTION_CONTINUE` on huge entries;
    /// `test_walk`, `pre_vma` and `post_vma` are `wp_clean_test_walk()`,
    /// `wp_clean_pre_vma()`, `wp_clean_post_vma()`.
    static func walkOps(_ operation: Operation) -> MMWalkOps<WPWalk> {
        MMWalkOps<WPWalk>(
            pudEntry: { p, addr, _, walk in
                hugeEntry(p.hasTrivialEntries, p.entry, addr, &walk)
                return 0
            },
            pmdEntry: { p, addr, _, walk in
                hugeEntry(p.hasTrivialEntries, p.entry, addr, &walk)
                return 0
            },
            pteEntry: { p, addr, _, walk in
                pteEntry(operation, p, addr, &walk)
                return 0
            },
            testWalk: { _, _, walk in
                guard let vma = walk.vma else { return 1 }
                return isTracked(vma) ? 0 : 1
            },
            preVMA: { start, end, walk in
                walk.privateData.flushStart = end
                walk.privateData.flushEnd = start
                return 0
            },
            postVMA: { walk in
                let w = walk.privateData
                if w.flushEnd > w.flushStart {
                    walk.privateData.result.flushes.append(.init(pid: walk.mm.options.pid, range: w.flushStart..<w.flushEnd))
                }
            },
            walkLock: .read)
    }

    /// The PMD and PUD handlers: a table is descended; a none entry (gone
    /// since the walker read it) is read again (`ACTION_AGAIN`); a leaf or
    /// migration entry is passed over (`ACTION_CONTINUE`), with the
    /// warning for a writable or dirty leaf.
    static func hugeEntry<E: PageTableEntry>(_ trivial: Bool, _ entry: E, _ addr: UInt64, _ walk: inout MMWalk<WPWalk>) {
        guard !trivial, !entry.isTable else { return }
        if entry.isNone {
            walk.action = .again
            return
        }
        walk.action = .continue
        if warns(present: entry.isLeaf, writable: entry.isWritable, dirty: entry.isDirty) {
            walk.privateData.result.warnings.append(.init(pid: walk.mm.options.pid, address: addr))
        }
    }

    /// `wp_pte()` or `clean_record_pte()` on one PTE, under the PTE lock:
    /// a writable (dirty) present PTE write-protected (cleaned), counted,
    /// its page added to the flush range, and when cleaning its file page
    /// recorded in the bitmap.
    static func pteEntry(_ operation: Operation, _ p: EntryPointer<PTE>, _ addr: UInt64, _ walk: inout MMWalk<WPWalk>) {
        let pte = p.entry
        let layout = pte.layout
        let new: UInt64
        switch operation {
        case .writeProtect:
            guard pte.isWritable else { return }
            new = layout.writeProtect(pte.rawValue)
        case .cleanRecord:
            guard pte.isDirty, let vma = walk.vma else { return }
            new = layout.markClean(pte.rawValue)
            walk.privateData.bitmap?.record(page: filePage(vma, addr))
        }
        walk.setPTE(p, PTE(rawValue: new, architecture: pte.architecture))
        walk.privateData.result.total += 1
        walk.privateData.flushStart = Swift.min(walk.privateData.flushStart, addr)
        walk.privateData.flushEnd = Swift.max(walk.privateData.flushEnd, addr + Geometry.pageSize)
    }

    /// The helpers on the callback walker: `walk_page_mapping(mapping,
    /// first_index, nr, ops, &walk)`.
    static func callbackWalk(_ operation: Operation, _ memory: PhysicalMemory, _ file: FileObject, _ firstIndex: UInt64,
                             _ count: UInt64, _ bitmap: inout MappingDirtyBitmap?) throws(PageWalkError) -> MappingDirtyResult {
        var data = WPWalk(bitmap: bitmap)
        _ = try walkPageMapping(memory, file, firstIndex: firstIndex, count: count, ops: walkOps(operation), private: &data)
        bitmap = data.bitmap
        return data.result
    }
}
