import Synchronization

// arm64 contiguous PTEs (CONFIG_ARM64_CONTPTE): the reading side.
extension EntryLayout {
    /// Entries in an arm64 contiguous-PTE block (`CONT_PTES`: 64K of 4K pages).
    public static let contPTEs = 16

    /// Index bits of an entry inside its contiguous block.
    @usableFromInline static let contPTEIndexMask = contPTEs - 1

    /// The index of the first entry of the contiguous block holding entry `i`.
    @inlinable @inline(__always)
    public static func contBlockStart(_ i: Int) -> Int { i & ~contPTEIndexMask }

    /// Whether entry `i` is the last of its contiguous block.
    @inlinable @inline(__always)
    public static func isLastInContBlock(_ i: Int) -> Bool { i & contPTEIndexMask == contPTEIndexMask }

    /// Models arm64 `pte_valid_cont()`: a valid entry with PTE_CONT. Always
    /// false on x86, where `contiguous` is zero. A PROT_NONE entry is never
    /// part of a folded block (it is not valid).
    @inlinable @inline(__always)
    public func isValidCont(_ w: UInt64) -> Bool { w & contiguous != 0 && w & valid != 0 }

    /// Models the kernel's `ptep_get()` for PTE `i` of a table: on a folded
    /// arm64 block the hardware may have set the access flag or the dirty
    /// state on any one of the 16 entries, so the value read is the entry
    /// with young and dirty gathered over the block. Every walker reads PTE
    /// words through here.
    ///
    /// The gather is out of line and given only the bits it needs: a
    /// method of the layout called here made every caller copy the whole
    /// layout (232 bytes) per PTE read, folded block or not.
    @inlinable @inline(always)
    public func ptepGet(_ entries: UnsafeMutablePointer<Atomic<UInt64>>, _ i: Int) -> UInt64 {
        let w = entries[i].load(ordering: .relaxed)
        guard w & contiguous != 0 && w & valid != 0 else { return w }
        return Self.gathered(w, block: entries + EntryLayout.contBlockStart(i), young: young, dirty: dirty,
                             write: write, readOnly: readOnly)
    }

    /// Models `contpte_ptep_get()`: `w` made young when some entry of the
    /// block at `block` is young, and dirty when some is dirty.
    @inlinable
    public func contPTEGathered(_ w: UInt64, block: UnsafeMutablePointer<Atomic<UInt64>>) -> UInt64 {
        Self.gathered(w, block: block, young: young, dirty: dirty, write: write, readOnly: readOnly)
    }

    /// Whether some entry of the 16 at `block` is young, and whether some
    /// is dirty, hardware (DBM without PTE_RDONLY) or software. Only arm64
    /// words get here.
    @inlinable
    public func contPTEAccessState(block: UnsafeMutablePointer<Atomic<UInt64>>) -> (young: Bool, dirty: Bool) {
        Self.accessState(block: block, young: young, dirty: dirty, write: write, readOnly: readOnly)
    }

    /// `contPTEGathered` from the layout's bits alone.
    @usableFromInline @inline(never)
    static func gathered(_ w: UInt64, block: UnsafeMutablePointer<Atomic<UInt64>>, young: UInt64, dirty: UInt64,
                         write: UInt64, readOnly: UInt64) -> UInt64 {
        let state = accessState(block: block, young: young, dirty: dirty, write: write, readOnly: readOnly)
        return withGatheredAccess(w, young: state.young, dirty: state.dirty, youngBit: young, dirtyBit: dirty,
                                  write: write, readOnly: readOnly)
    }

    /// `contPTEAccessState` from the layout's bits alone.
    @usableFromInline @inline(never)
    static func accessState(block: UnsafeMutablePointer<Atomic<UInt64>>, young: UInt64, dirty: UInt64,
                            write: UInt64, readOnly: UInt64) -> (young: Bool, dirty: Bool) {
        var anyYoung = false, anyDirty = false
        for k in 0..<EntryLayout.contPTEs {
            let s = block[k].load(ordering: .relaxed)
            anyYoung = anyYoung || s & young != 0
            anyDirty = anyDirty || s & dirty != 0 || (s & write != 0 && s & readOnly == 0)
            if anyYoung && anyDirty { break }
        }
        return (anyYoung, anyDirty)
    }

    /// `w` with `pte_mkyoung()` when `young` and `pte_mkdirty()` (PTE_DIRTY,
    /// and a writable entry loses PTE_RDONLY) when `dirty`.
    @inlinable @inline(__always)
    public func withGatheredAccess(_ w: UInt64, young isYoung: Bool, dirty isDirty: Bool) -> UInt64 {
        Self.withGatheredAccess(w, young: isYoung, dirty: isDirty, youngBit: young, dirtyBit: dirty,
                                write: write, readOnly: readOnly)
    }

    @inlinable @inline(always)
    static func withGatheredAccess(_ w: UInt64, young isYoung: Bool, dirty isDirty: Bool, youngBit: UInt64,
                                   dirtyBit: UInt64, write: UInt64, readOnly: UInt64) -> UInt64 {
        var r = w
        if isYoung { r |= youngBit }
        if isDirty { r = (r | dirtyBit) & (r & write != 0 ? ~readOnly : ~0) }
        return r
    }
}
