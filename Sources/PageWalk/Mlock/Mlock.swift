import MemoryModel

extension AddressSpace {
    /// Models `mlock(2)`: the VMAs of `[start, end)` become VM_LOCKED and
    /// are populated, then `mlock_walk_ops` mlocks the folios they map, on
    /// `walker`. A large folio is mlocked only when the VMA maps all of it;
    /// so a THP locked in part stays evictable. Errors as the model's
    /// operations give them (ENOMEM: `noVMA`, `faultFailed`).
    public func mlock(_ start: UInt64, _ end: UInt64, walker: WalkerKind = .range) throws(ModelError) {
        try mlock(start, end, onFault: false) { (vma) throws(ModelError) in try MlockWalk.run(self, vma, lock: true, walker) }
    }

    /// Models `mlock2(2)`: with `onFault` (MLOCK_ONFAULT) the VMAs become
    /// VM_LOCKED | VM_LOCKONFAULT and nothing is populated: what is mapped
    /// now is mlocked by the walk, what faults in later by the fault path.
    public func mlock2(_ start: UInt64, _ end: UInt64, onFault: Bool, walker: WalkerKind = .range) throws(ModelError) {
        try mlock(start, end, onFault: onFault) { (vma) throws(ModelError) in try MlockWalk.run(self, vma, lock: true, walker) }
    }

    /// Models `munlock(2)`: VM_LOCKED and VM_LOCKONFAULT cleared, every
    /// folio the VMAs map munlocked, on `walker`.
    public func munlock(_ start: UInt64, _ end: UInt64, walker: WalkerKind = .range) throws(ModelError) {
        try munlock(start, end) { (vma) throws(ModelError) in try MlockWalk.run(self, vma, lock: false, walker) }
    }
}

/// `mlock_vma_pages_range()`: the mlock user on both walkers, over one VMA
/// whose flags are already set, under the mmap write lock.
enum MlockWalk {
    static func run(_ mm: AddressSpace, _ vma: VMA, lock: Bool, _ walker: WalkerKind) throws(ModelError) {
        do throws(PageWalkError) {
            switch walker {
            case .range: try range(mm, vma, lock: lock)
            case .callback: try callback(mm, vma, lock: lock)
            }
        } catch {
            throw error.asModelError
        }
    }

    /// The range version: present PTEs in runs across folios, not looked up
    /// by the walk (nothing respected, so a run is every present PTE of the
    /// table in this VMA); the handle's `mlockFolio()` resolves each page's
    /// folio and applies the rule for large folios.
    static let walkOptions = UpdateWalkOptions(respect: [], lookUpFolios: false)

    static func range(_ mm: AddressSpace, _ vma: VMA, lock: Bool) throws(PageWalkError) {
        try mm.withUpdateWalk(vma.start..<vma.end, lock: .mmapWrite, options: walkOptions) { (walk) throws(PageWalkError) in
            try walk.forEach { (e) throws(PageWalkError) -> UpdateStep in
                if lock { try e.mlockFolio() } else { try e.munlockFolio() }
                return .next
            }
        }
    }
}
