import MemoryModel

/// The lock an update walk runs under: the kernel's `walk_lock` choice.
public enum UpdateWalkLock: Sendable, Hashable, CustomStringConvertible {
    /// The mmap lock for read (`PGWALK_RDLOCK`): faults, zaps and other
    /// walks run beside it; only the table locks keep them apart.
    case mmapRead
    /// The mmap lock for write (`PGWALK_WRLOCK`): each VMA is write-locked
    /// as the walk reaches it, so faults under a VMA lock wait there.
    case mmapWrite
    /// The read lock of the one VMA the range lies in, without the mmap lock
    /// (`PGWALK_VMA_RDLOCK_VERIFY`, MADV_DONTNEED and MADV_FREE since 6.16).
    /// When that lock cannot be had (a writer holds the VMA, or the range
    /// leaves it), the walk takes the mmap lock for read instead, as madvise
    /// does; `UpdateWalk.lock` says which lock it ran under.
    case vma

    public var description: String {
        switch self {
        case .mmapRead: return "mmap read lock"
        case .mmapWrite: return "mmap write lock"
        case .vma: return "VMA read lock"
        }
    }
}

/// Options of an update walk: those of a read walk that writers need, and
/// whether PMD-mapped THPs are split on the way down.
public struct UpdateWalkOptions: @unchecked Sendable {
    /// Batch runs of like entries (`folio_pte_batch()` and friends); each
    /// update applies to the whole batch.
    public var batching: Bool
    /// Attribute differences that end a batch.
    public var respect: EntryAttributes
    /// The walk wants PTEs: a PMD leaf mapping a THP is split before the
    /// loop body sees it (`split_huge_pmd()`), and its PTEs are walked. Off,
    /// PMD leaves come whole (the body may still return `.splitPMD`).
    public var splitHugePMDs: Bool
    /// `test_walk`: VMAs for which it returns false are skipped.
    public var vmaFilter: ((VMA) -> Bool)?
    /// What to do with VM_PFNMAP VMAs.
    public var pfnMap: PFNMapPolicy
    /// As `RangeWalkOptions.lookUpFolios`: off, present PTEs come as
    /// `.present` runs across folios; the folio actions then resolve each
    /// page's folio themselves, as the kernel's per-PTE handlers do.
    public var lookUpFolios: Bool

    public init(batching: Bool = true, respect: EntryAttributes = .batchable, splitHugePMDs: Bool = false,
                vmaFilter: ((VMA) -> Bool)? = nil, pfnMap: PFNMapPolicy = .skip, lookUpFolios: Bool = true) {
        self.batching = batching; self.respect = respect; self.splitHugePMDs = splitHugePMDs
        self.vmaFilter = vmaFilter; self.pfnMap = pfnMap; self.lookUpFolios = lookUpFolios
    }

    var rangeOptions: RangeWalkOptions {
        RangeWalkOptions(batching: batching, respect: respect, pfnMap: pfnMap, vmaFilter: vmaFilter,
                         lookUpFolios: lookUpFolios)
    }
}

/// What the loop body of an update walk asks the walker to do next.
public enum UpdateStep {
    /// Go on with the next entry.
    case next
    /// End the walk here (a positive return from a kernel handler).
    case stop
    /// Drop the table lock (flushing the TLB first if a flush is pending),
    /// run `action` with only the walk lock held (it may sleep: split a
    /// folio, start swap I/O, reclaim), and resume at this entry's start
    /// with the table read again: it may have been freed or replaced
    /// meanwhile. The entry met there next is marked `isRetry`.
    case unlockAndRetry(() throws(PageWalkError) -> Void)
    /// A PMD leaf: split it into a PTE table (`split_huge_pmd()`) and walk
    /// its PTEs. `.next` on a PMD leaf never splits (`ACTION_CONTINUE`).
    case splitPMD
    /// A large folio: drop the lock, split the folio (`split_folio()`,
    /// under the folio lock) and resume here. For a PTE-mapped folio the
    /// lock is only tried, as walkers do under the PTE lock; a THP mapped
    /// by a PMD leaf is pinned, locked (sleeping) and split with its PMD
    /// mapping. A folio that cannot be split now (locked, referenced
    /// elsewhere) is left whole; the entry comes again with `isRetry` set.
    case splitFolio
}

/// An update walk: the range walker for users that change what they walk
/// under the page-table lock, as most of the kernel's `walk_page_range()`
/// users do (clear_refs, madvise, mlock, guard regions, PAGEMAP_SCAN).
///
/// A different type from `RangeWalk`, so a read-only loop cannot change
/// anything. It is `~Copyable` and handed to the body of
/// `AddressSpace.withUpdateWalk` `inout`: it cannot leave that body. Its
/// loop, `forEach`, passes each entry as a `borrowing UpdateEntry`, itself
/// `~Copyable`: the body cannot store, return or capture the handle, so an
/// update can only be made while the walker holds the entry's table lock.
public struct UpdateWalk: ~Copyable {
    public let mm: AddressSpace
    /// `mm` for the handles, without reference counting per entry (the
    /// walk holds `mm`).
    unowned(unsafe) let mmUnretained: AddressSpace
    public let range: Range<UInt64>
    /// The lock the walk runs under (`.vma` falls back to `.mmapRead`).
    public let lock: UpdateWalkLock
    var iterator: RangeWalk.Iterator
    let state: UnsafeMutablePointer<UpdateWalkState>
    let splitsHugePMDs: Bool

    /// `state` lives on the opener's stack for the walk's whole life (the
    /// walk cannot leave the body it is lent to).
    init(_ walk: RangeWalk, lock: UpdateWalkLock, state: UnsafeMutablePointer<UpdateWalkState>, splitsHugePMDs: Bool) {
        mm = walk.mm
        mmUnretained = walk.mm
        range = walk.start..<walk.end
        self.lock = lock
        iterator = walk.makeIterator()
        self.state = state
        self.splitsHugePMDs = splitsHugePMDs
    }

    /// The TLB flushes the walk made, and any still pending.
    public var tlb: MMUGather { state.pointee.tlb }

    /// How many times the walk dropped a table lock at the body's request
    /// and resumed.
    public var resumes: Int { state.pointee.resumes }

    /// Runs `body` on each entry of the range in address order, with the
    /// entry's table lock held. A walk is iterated once. Ends when the range
    /// is done, the body returns `.stop`, or it throws; the table lock is
    /// dropped and the pending TLB flush made in every case. Returns false
    /// when the body ended the walk with `.stop`.
    @discardableResult
    public mutating func forEach(_ body: (borrowing UpdateEntry) throws(PageWalkError) -> UpdateStep) throws(PageWalkError) -> Bool {
        // The shared state and the mm are read into locals once: written
        // through `self.state.pointee` in this mutating method of a
        // non-copyable struct, Swift 6.3's ThreadSanitizer instrumentation
        // reports a modifying access at the address space object itself
        // (the struct's first word), which two walks then "race" on.
        let state = self.state
        let mm = mmUnretained
        guard !state.pointee.iterated else { throw .misuse("an update walk is iterated once") }
        state.pointee.iterated = true
        if let failure = iterator.failure { throw failure }
        defer {
            iterator.finish()
            state.pointee.tlb.flush(.finish)
        }
        var retryAt: UInt64? = nil
        while let e = iterator.next() {
            let target = iterator.updateTarget(of: e)
            if splitsHugePMDs, e.level == .pmd, case .leaf(let slot) = target, case .folio = e.content {
                try split(pmd: slot, resumingAt: e.start)
                retryAt = e.start
                continue
            }
            state.pointee.generation &+= 1
            let step = try body(UpdateEntry(entry: e, target: target, mm: mm, state: state,
                                            generation: state.pointee.generation, isRetry: retryAt == e.start))
            state.pointee.generation &+= 1
            retryAt = nil
            switch step {
            case .next:
                continue
            case .stop:
                return false
            case .unlockAndRetry(let action):
                unlock(resumingAt: e.start)
                try action()
            case .splitPMD:
                guard e.level == .pmd, case .leaf(let slot) = target else {
                    throw .misuse("splitPMD on a \(e.level) entry at 0x\(String(e.start, radix: 16)): only PMD leaves split")
                }
                try split(pmd: slot, resumingAt: e.start)
            case .splitFolio:
                guard case .folio(let f, _, _) = e.content, f.isLarge, !f.isHugetlb else {
                    throw .misuse("splitFolio at 0x\(String(e.start, radix: 16)): the entry maps no large folio")
                }
                switch target {
                case .ptes:
                    unlock(resumingAt: e.start)
                    splitFolio(headPFN: f.pfn, at: e.start)
                case .leaf(let slot) where slot.level == .pmd:
                    unlock(resumingAt: e.start)
                    _ = mm.splitPMDMappedFolio(at: slot, folio: f)
                default:
                    throw .misuse("splitFolio at 0x\(String(e.start, radix: 16)): a \(e.level) entry; only PTE-mapped folios and PMD-mapped THPs split")
                }
            }
            retryAt = e.start
        }
        return true
    }

    /// Drops the table lock, flushing first what the walk owes: an entry
    /// it cleared or write-protected must not stay writable in a TLB while
    /// others run.
    mutating func unlock(resumingAt address: UInt64) {
        let state = self.state   // a local, as in forEach
        state.pointee.tlb.flush(.beforeUnlock)
        iterator.rewind(to: address)
        state.pointee.resumes += 1
    }

    mutating func split(pmd slot: EntrySlot, resumingAt address: UInt64) throws(PageWalkError) {
        unlock(resumingAt: address)
        do { try mm.splitHugePMD(at: slot) } catch { throw .model(error) }
    }

    /// `split_folio()` as a walker user calls it with no lock but the walk
    /// lock: the folio found again at `address`, locked with a trylock, and
    /// split under its PTE table's lock only when this table maps all of it
    /// and nothing else holds it (the kernel's refcount freeze), so no fault
    /// or zap changes its counts meanwhile. Otherwise it stays whole.
    func splitFolio(headPFN: UInt64, at address: UInt64) {
        let layout = state.pointee.layout
        _ = try? mm.withPTETable(address, allocate: false) { (t) throws(ModelError) in
            let words = mm.memory.tables.entries(t)
            let w = words[mm.geometry.tableIndex(address, .pte)].load(ordering: .relaxed)
            guard w != 0, layout.isPresent(w, .pte), let f = mm.memory.folio(containing: layout.pfn(w)),
                  f.pfn == headPFN, f.isLarge, f.entireMapcount == 0, !f.isHugetlb,
                  f.mapcount == f.pageCount, f.tryLock() else { return }
            defer { f.unlock() }
            let cacheRefs = f.isAnon ? (f.test(.swapCache) ? f.pageCount : 0) : f.pageCount
            guard f.refcount == f.mapcount + cacheRefs else { return }
            let i = mm.geometry.tableIndex(address, .pte)
            mm.unfoldContiguous(mapping: f, table: t, first: i - Int(layout.pfn(w) - f.pfn))
            try mm.splitFolio(f)
        }
    }
}

/// What an update walk and the handles it gives out share.
struct UpdateWalkState {
    let mayInstall: Bool
    let layout: EntryLayout
    var tlb = MMUGather()
    /// Moves on whenever a handle stops being valid.
    var generation: UInt64 = 0
    var iterated = false
    var resumes = 0

    init(mayInstall: Bool, layout: EntryLayout) { self.mayInstall = mayInstall; self.layout = layout }
}
