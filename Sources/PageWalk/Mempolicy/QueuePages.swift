import MemoryModel

/// `struct queue_pages`: the walk's private data, and the rules both walkers
/// apply to the VMAs and folios they meet (mm/mempolicy.c, Linux 6.18).
struct QueuePagesState {
    let mm: AddressSpace
    let flags: MempolicyFlags
    let nodes: NodeMask
    let start: UInt64
    let end: UInt64
    /// `qp->first`: the first VMA met.
    var first: VMA?
    /// `qp->large`: the head frame of the last large folio met through its PTEs, counted once.
    var large: UInt64?
    var list = QueuedPages()
    /// The hugetlb folios this walk isolated (`folio_isolate_hugetlb()`
    /// clears their migratable state; a second meeting fails).
    var hugetlbIsolated: Set<UInt64> = []
    /// The hole `test_walk` found (-EFAULT).
    var fault: UInt64?

    init(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64, nodes: NodeMask, flags: MempolicyFlags) {
        self.mm = mm; self.start = start; self.end = end; self.nodes = nodes; self.flags = flags
    }

    /// The range walked: the kernel walks to `end` whatever it is, and
    /// meets no VMA above the user address limit, which the model's walkers
    /// refuse to pass; the hole checks still use `end`. Nil when the range
    /// lies wholly above the limit (no VMA: -EFAULT).
    var walkRange: Range<UInt64>? {
        let limit = Swift.min(end, mm.geometry.userAddressLimit)
        return start < limit ? start..<limit : nil
    }

    /// What `queue_pages_test_walk()` says of a VMA.
    enum Verdict { case walk, skip, fault }

    /// `vma_migratable()`: not VM_IO or VM_PFNMAP (hugetlb migration is
    /// supported for every x86-64 and arm64 huge page size; no file's
    /// mapping is restricted below the policy zone in the model).
    static func migratable(_ vma: VMA) -> Bool { vma.flags.isDisjoint(with: [.io, .pfnMap]) }

    /// `queue_pages_test_walk()`: the hole checks (at the head of the range
    /// for the first VMA, after each VMA that ends before the range does
    /// with no VMA following on), then whether the VMA is scanned.
    mutating func testWalk(_ vma: VMA) -> Verdict {
        let discontig = flags.contains(.discontigOK)
        if first == nil {
            first = vma
            if !discontig && start < vma.start { fault = start; return .fault }
        }
        if !discontig && vma.end < end {
            // find_vma(mm, vma->vm_end): the next VMA, if it follows on.
            guard let next = mm.vmas(intersecting: vma.end, vma.end + 1).first, next.start == vma.end else {
                fault = vma.end
                return .fault
            }
        }
        if !Self.migratable(vma) && !flags.contains(.strict) { return .skip }
        return flags.isDisjoint(with: [.strict, .move, .moveAll]) ? .skip : .walk
    }

    /// `queue_folio_required()`: the folio is misplaced.
    func required(_ folio: Folio) -> Bool { nodes.contains(folio.node) == !flags.contains(.invert) }

    /// vm_normal_folio() and the filters before the node check: the zero
    /// pages, device memory and reserved folios are never queued.
    static func considered(_ folio: Folio) -> Bool {
        folio.flags.isDisjoint(with: [.zeroPage, .hugeZeroPage, .zoneDevice, .reserved])
    }

    /// A folio met through PTEs (`queue_folios_pte_range()`'s loop body),
    /// its first page mapped at `head`. Returns true when the PTE loop must
    /// stop (the first failure of a strict check without moves).
    mutating func queuePTEFolio(_ folio: Folio, head: UInt64, in vma: VMA) -> Bool {
        guard Self.considered(folio), required(folio) else { return false }
        if folio.isLarge {
            // One large folio counts once however many PTEs map it.
            if folio.pfn == large { return false }
            large = folio.pfn
        }
        return queueFolio(folio, head: head, in: vma)
    }

    /// A PMD-mapped THP (`queue_folios_pmd()`). False for the huge zero
    /// folio, which the walk steps over (`ACTION_CONTINUE`).
    mutating func queuePMDFolio(_ folio: Folio, head: UInt64, in vma: VMA) {
        guard Self.considered(folio), required(folio) else { return }
        _ = queueFolio(folio, head: head, in: vma)
    }

    /// The move condition shared by the PTE and PMD paths: a misplaced
    /// folio fails unless a move was asked for, the VMA is migratable and
    /// `migrate_folio_add()` takes it.
    private mutating func queueFolio(_ folio: Folio, head: UInt64, in vma: VMA) -> Bool {
        if flags.moves && Self.migratable(vma) && migrateFolioAdd(folio, head: head) { return false }
        list.failed += 1
        return flags.strictlyUnmovable
    }

    /// `migrate_folio_add()`: unless MOVE_ALL, a folio that may be mapped
    /// by another process is left (and that is no failure); otherwise it
    /// is isolated from the LRU onto the list, failing when it is off the
    /// LRU.
    private mutating func migrateFolioAdd(_ folio: Folio, head: UInt64) -> Bool {
        guard flags.contains(.moveAll) || !folio.maybeMappedShared else { return true }
        guard mm.isolateFromLRU(folio) else { return false }
        list.folios.append((folio, head))
        return true
    }

    /// A migration entry met where a folio would be (PTE, PMD or hugetlb):
    /// counted as not queued.
    mutating func migrationEntries(_ n: Int) { list.failed += n }

    /// A present hugetlb entry (`queue_folios_hugetlb()`).
    mutating func queueHugetlbFolio(_ folio: Folio, head: UInt64, in vma: VMA) {
        guard required(folio) else { return }
        guard flags.moves && Self.migratable(vma) else { list.failed += 1; return }
        // hugetlb_pmd_shared(): the model shares no hugetlb page tables.
        guard flags.contains(.moveAll) || !folio.maybeMappedShared else { return }
        guard !hugetlbIsolated.contains(folio.pfn), mm.isolateHugetlb(folio) else { list.failed += 1; return }
        hugetlbIsolated.insert(folio.pfn)
        list.folios.append((folio, head))
    }

    /// The end of each `pmd_entry` and `hugetlb_entry` call: -EIO once a
    /// strict check without moves has a failure.
    var failsWithEIO: Bool { list.failed > 0 && flags.strictlyUnmovable }
}
