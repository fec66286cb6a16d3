import MemoryModel

/// Which folios `folioWalkStart` may return besides normal ones
/// (`folio_walk_flags_t`).
public struct FolioWalkFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// `FW_ZEROPAGE`: the shared zero page and the huge zero folio.
    public static let zeroPage = FolioWalkFlags(rawValue: 1 << 0)
    /// `FW_MIGRATION`: the folio behind a PTE or PMD migration entry.
    public static let migration = FolioWalkFlags(rawValue: 1 << 1)
}

/// The level the entry found by `folioWalkStart` lives at (`enum
/// folio_walk_level`).
public enum FolioWalkLevel: Sendable, Hashable {
    case pte, pmd, pud
}

/// One address resolved to its folio, with the entry's lock held until
/// `folioWalkEnd`.
///
/// Models the kernel's `struct folio_walk`. `page` is the page `address`
/// falls in; it is nil for zero pages and migration entries, which the
/// kernel does not expose as pages.
public struct FolioWalk: @unchecked Sendable {
    public let folio: Folio
    public let page: Page?
    public let level: FolioWalkLevel
    /// Where the entry lives, and its value read under the lock.
    public let slot: EntrySlot
    public let entry: UInt64
    /// The PTE table lock, PMD lock or `page_table_lock` held.
    public let lock: SpinLockRef
    /// The hugetlb VMA whose lock `vma_pgtable_walk_begin()` took.
    let hugetlbVMA: VMA?
}

/// Models `folio_walk_start()`: walks `vma`'s tables to the entry mapping
/// `address` and returns its folio with that entry's lock held — the PUD
/// lock, the PMD lock or the PTE table lock — or nil when nothing suitable is
/// mapped. Only present entries of normal folios count unless `flags` adds
/// zero pages or migration entries. Requires the mmap lock (read).
public func folioWalkStart(_ mm: AddressSpace, _ vma: VMA, _ address: UInt64,
                           flags: FolioWalkFlags = []) throws(PageWalkError) -> FolioWalk? {
    guard !mm.isTornDown else { throw .model(.tornDown) }
    try assertWalkLock(mm, .read)
    try checkOwner(mm, vma)
    let hugetlbVMA = vma.isHugetlb ? vma : nil
    hugetlbVMA?.hugetlbLock.lockRead()
    guard vma.contains(address),
          let found = withLocklessRead(mm, { FolioLookup(mm, address, flags, hugetlbVMA).run() }) else {
        hugetlbVMA?.hugetlbLock.unlockRead()
        return nil
    }
    return found
}

/// Models `folio_walk_end()`: drops the entry lock and the hugetlb VMA lock.
public func folioWalkEnd(_ walk: FolioWalk) {
    walk.lock.unlock()
    walk.hugetlbVMA?.hugetlbLock.unlockRead()
}

/// The descent of `folio_walk_start()`, one method per level.
struct FolioLookup {
    let access: LevelAccess
    let memory: PhysicalMemory
    let address: UInt64
    let flags: FolioWalkFlags
    let hugetlbVMA: VMA?

    init(_ mm: AddressSpace, _ address: UInt64, _ flags: FolioWalkFlags, _ hugetlbVMA: VMA?) {
        access = LevelAccess(mm)
        memory = mm.memory
        self.address = address
        self.flags = flags
        self.hugetlbVMA = hugetlbVMA
    }

    /// What one level decided.
    enum Step { case found(FolioWalk), notFound, descend }

    func run() -> FolioWalk? {
        let pgd = access.pgdSlot(address, root: nil)
        if access.noneOrClearBad(pgd, trivial: access.trivialPGD) { return nil }
        let p4d = access.lower(pgd, .p4d, address)
        if access.noneOrClearBad(p4d, trivial: access.trivialP4D) { return nil }
        let pud = access.lower(p4d, .pud, address)
        switch atPUD(pud) {
        case .found(let f): return f
        case .notFound: return nil
        case .descend: break
        }
        let pmd = access.lower(pud, .pmd, address)
        switch atPMD(pmd) {
        case .found(let f): return f
        case .notFound: return nil
        case .descend: return atPTE(pmd)
        }
    }

    /// A PUD leaf is read under `page_table_lock`; only present, normal
    /// leaves count (no PUD migration support, as in the kernel).
    func atPUD(_ slot: EntrySlot) -> Step {
        if access.trivialPUD { return .descend }
        var pud = PUD(rawValue: access.load(slot), architecture: access.architecture)
        if pud.isNone { return .notFound }
        if pud.isPresent && !pud.isLeaf { return .descend }
        let lock = access.mm.lock(forEntriesOf: slot.table, level: slot.level)
        lock.lock()
        pud = PUD(rawValue: access.load(slot), architecture: access.architecture)
        if !pud.isPresent || pud.isDevmap || pud.isSpecial { lock.unlock(); return .notFound }
        if !pud.isLeaf { lock.unlock(); return .descend }
        guard let page = memory.page(pud.pfn) else { lock.unlock(); return .notFound }
        return .found(make(page, expose: true, .pud, slot, pud.rawValue, lock))
    }

    /// A PMD leaf or migration entry is read under the PMD lock;
    /// `vm_normal_page_pmd()` refuses special and huge-zero leaves.
    func atPMD(_ slot: EntrySlot) -> Step {
        var pmd = PMD(rawValue: access.load(slot), architecture: access.architecture)
        if pmd.isNone { return .notFound }
        if pmd.isTable { return .descend }
        let lock = access.mm.lock(forEntriesOf: slot.table, level: slot.level)
        lock.lock()
        pmd = PMD(rawValue: access.load(slot), architecture: access.architecture)
        if pmd.isNone { lock.unlock(); return .notFound }
        if pmd.isTable { lock.unlock(); return .descend }
        if pmd.isPresent {
            let folio = memory.folio(containing: pmd.pfn)
            if !pmd.isSpecial, let page = memory.page(pmd.pfn), folio?.test(.hugeZeroPage) == false {
                return .found(make(page, expose: true, .pmd, slot, pmd.rawValue, lock))
            }
            if flags.contains(.zeroPage), folio?.test(.hugeZeroPage) == true, let page = memory.page(pmd.pfn) {
                return .found(make(page, expose: false, .pmd, slot, pmd.rawValue, lock))
            }
        } else if flags.contains(.migration), case .migration(_, let pfn, _, _)? = pmd.softLeaf?.leaf,
                  let page = memory.page(pfn) {
            return .found(make(page, expose: false, .pmd, slot, pmd.rawValue, lock))
        }
        lock.unlock()
        return .notFound
    }

    /// The PTE under its table lock; `vm_normal_page()` refuses special
    /// PTEs (PFN maps, the zero page).
    func atPTE(_ pmd: EntrySlot) -> FolioWalk? {
        guard let table = access.lockPTETable(pmd) else { return nil }
        let lock = access.tables.lock(table)
        let slot = EntrySlot(table, access.geometry.index(address, at: .pte), .pte)
        let pte = PTE(rawValue: access.load(slot), architecture: access.architecture)
        if pte.isPresent {
            let page = memory.page(pte.pfn)
            if !pte.isSpecial, let page, !page.folio.test(.zeroPage) {
                return make(page, expose: true, .pte, slot, pte.rawValue, lock)
            }
            if flags.contains(.zeroPage), pte.pfn == memory.zeroPage.pfn, let page {
                return make(page, expose: false, .pte, slot, pte.rawValue, lock)
            }
        } else if !pte.isNone, flags.contains(.migration),
                  case .migration(_, let pfn, _, _)? = pte.softLeaf?.leaf, let page = memory.page(pfn) {
            return make(page, expose: false, .pte, slot, pte.rawValue, lock)
        }
        lock.unlock()
        return nil
    }

    /// The page `address` falls in inside the entry (`nth_page()` from the
    /// entry's first page), unless the kernel hides it.
    func make(_ page: Page, expose: Bool, _ level: FolioWalkLevel, _ slot: EntrySlot, _ raw: UInt64,
              _ lock: SpinLockRef) -> FolioWalk {
        let size: UInt64
        switch level {
        case .pte: size = Geometry.pageSize
        case .pmd: size = access.geometry.entrySize(.pmd)
        case .pud: size = access.geometry.entrySize(.pud)
        }
        let exposed = expose ? memory.page(page.pfn + ((address & (size - 1)) >> Geometry.pageShift)) : nil
        return FolioWalk(folio: page.folio, page: exposed, level: level, slot: slot, entry: raw, lock: lock,
                         hugetlbVMA: hugetlbVMA)
    }
}
