import MemoryModel

extension KSMScan {
    /// `walk->private` of the KSM walk (`struct ksm_next_page_arg`): empty
    /// until the handler finds a page.
    public struct NextPageArgument {
        public var found: KSMScanPage?
        public init() {}
    }

    /// Models `ksm_next_page_ops`: one `pmd_entry`
    /// (`ksm_next_page_pmd_entry()`), the mmap read lock (`PGWALK_RDLOCK`).
    public static func walkOps(_ mm: AddressSpace) -> MMWalkOps<NextPageArgument> {
        let access = LevelAccess(mm)
        return MMWalkOps<NextPageArgument>(
            pmdEntry: { p, addr, next, walk in nextPagePMDEntry(access, p, addr, next, &walk) },
            walkLock: .read)
    }

    /// Models `ksm_next_page_pmd_entry()`: a non-present PMD (a migration
    /// entry) is passed over; a PMD leaf is judged under the PMD lock, and
    /// its page at `addr` found when `vm_normal_page_pmd()` gives a page of
    /// a mergeable folio; otherwise the PTEs of `[addr, next)` are judged
    /// under the PTE table lock. Returns 1 with the reference taken, else 0.
    static func nextPagePMDEntry(_ access: LevelAccess, _ p: EntryPointer<PMD>, _ addr: UInt64, _ next: UInt64,
                                 _ walk: inout MMWalk<NextPageArgument>) -> Int32 {
        let mm = access.mm
        if !p.hasTrivialEntries {
            let pmd = p.entry
            guard pmd.isPresent else { return 0 }
            if pmd.isLeaf {
                let lock = mm.lock(forEntriesOf: p.slot.table, level: .pmd)
                lock.lock()
                let now = p.entry
                if !now.isPresent { lock.unlock(); return 0 }
                if now.isLeaf {
                    // vm_normal_page_pmd(): no page for a special leaf or
                    // the huge zero page.
                    guard !now.isSpecial, let head = mm.memory.page(now.pfn), isCandidate(head.folio) else {
                        lock.unlock()
                        return 0
                    }
                    let offset = Int((addr & (access.geometry.entrySize(.pmd) - 1)) >> Geometry.pageShift)
                    let page = head.folio.page(head.index + offset)
                    return found(mm, page, addr, lock, &walk)
                }
                lock.unlock()
            }
        }
        guard let table = access.lockPTETable(p.slot) else { return 0 }
        let lock = access.tables.lock(table)
        let layout = mm.geometry.layout
        let words = access.tables.entries(table)
        var a = addr
        while a < next {
            let w = words[access.geometry.index(a, at: .pte)].load(ordering: .acquiring)
            // vm_normal_page(): present, not special (PFN maps, the zero page).
            if w != 0, layout.isPresent(w, .pte), !layout.isSpecialPTE(w),
               let page = mm.memory.page(layout.pfn(w)), isCandidate(page.folio) {
                return found(mm, page, a, lock, &walk)
            }
            a += Geometry.pageSize
        }
        lock.unlock()
        return 0
    }

    /// The `found_unlock` path: the folio referenced before the table lock
    /// is dropped, the page recorded, the walk stopped with 1.
    static func found(_ mm: AddressSpace, _ page: Page, _ addr: UInt64, _ lock: SpinLockRef,
                      _ walk: inout MMWalk<NextPageArgument>) -> Int32 {
        mm.memory.folioGet(page.folio)
        lock.unlock()
        walk.privateData.found = KSMScanPage(address: addr, page: page, folio: page.folio)
        return 1
    }

    /// ksmd's walk on the callback walker: `walk_page_range_vma(vma, start,
    /// vma->vm_end, &ksm_next_page_ops, &arg)`.
    static func callbackNextPage(_ mm: AddressSpace, _ vma: VMA, from start: UInt64) throws(PageWalkError) -> KSMScanPage? {
        var arg = NextPageArgument()
        let stopped = try walkPageRangeVMA(mm, vma, start, vma.end, ops: walkOps(mm), private: &arg)
        return stopped > 0 ? arg.found : nil
    }
}
