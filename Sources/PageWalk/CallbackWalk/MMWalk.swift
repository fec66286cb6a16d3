import MemoryModel

/// The state of one walk, handed to every handler.
///
/// Models the kernel's `struct mm_walk`: the address space, the VMA being
/// walked (nil for holes between VMAs and for walks that ignore VMAs), the
/// action a PUD/PMD handler leaves for the walker, and the caller's data
/// (`walk->private`). Handlers receive it `inout`, so `privateData` may be a
/// value the handlers accumulate into or a class reference; nothing is
/// allocated per entry.
public struct MMWalk<Private> {
    /// `walk->mm` (changes between VMAs only in `walkPageMapping`).
    public internal(set) var mm: AddressSpace
    /// `walk->vma`.
    public internal(set) var vma: VMA?
    /// `walk->action`, reset to `.subtree` before each PUD and PMD handler.
    public var action: WalkAction = .subtree
    /// `walk->private`.
    public var privateData: Private
    /// `walk->no_vma`: a kernel or debug walk; PTE handlers then run without
    /// the PTE table lock, and leaves above the PTE level are not descended.
    public let noVMA: Bool
    /// `walk->pgd`: the root table walked when not the address space's own.
    public let root: TableID?
    /// A failure of the walker itself (allocation, split), kept beside the
    /// errno the level functions return, so the entry point can throw it.
    @usableFromInline var failure: PageWalkError?

    @usableFromInline
    init(mm: AddressSpace, vma: VMA? = nil, privateData: Private, noVMA: Bool = false, root: TableID? = nil) {
        self.mm = mm
        self.vma = vma
        self.privateData = privateData
        self.noVMA = noVMA
        self.root = root
    }

    /// Sets `walk->vma` (the VMA loops of the walkers).
    @usableFromInline
    mutating func setVMA(_ vma: VMA?) { self.vma = vma }

    /// Writes a PTE from a `pte_entry` handler (`set_pte_at()`; 0 clears it,
    /// as `pte_clear()`). The walker holds the PTE table lock while
    /// `pte_entry` runs on walks with a VMA.
    public func setPTE(_ pointer: EntryPointer<PTE>, _ value: PTE) {
        mm.storePTE(pointer.slot.table, pointer.slot.index, value.rawValue)
    }
}
