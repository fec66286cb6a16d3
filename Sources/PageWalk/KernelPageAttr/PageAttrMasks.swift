import MemoryModel

/// The bits a kernel `set_memory_*()` call changes: riscv's and LoongArch's
/// `struct pageattr_masks` (`set_mask`, `clear_mask`), each entry becoming
/// `(entry & ~clear) | set`. The masks are raw bits of the model's entry
/// layouts (x86-64, arm64), since the model has no riscv or LoongArch
/// layout; the constructors give the model's bits for the usual calls.
public struct PageAttrMasks: Hashable, Sendable {
    public var set: UInt64
    public var clear: UInt64

    public init(set: UInt64, clear: UInt64) { self.set = set; self.clear = clear }

    /// `set_mask` and `clear_mask` applied to one word.
    @inlinable public func apply(_ word: UInt64) -> UInt64 { (word & ~clear) | set }

    /// `set_memory_ro()`: write permission removed (arm64: DBM cleared and
    /// RDONLY set).
    public static func readOnly(_ layout: EntryLayout) -> PageAttrMasks {
        PageAttrMasks(set: layout.readOnly, clear: layout.write)
    }

    /// `set_memory_rw()`: write permission given (arm64: DBM set, RDONLY
    /// cleared).
    public static func readWrite(_ layout: EntryLayout) -> PageAttrMasks {
        PageAttrMasks(set: layout.write, clear: layout.readOnly)
    }

    /// `set_memory_nx()`: the model's no-execute bit set.
    public static func noExecute(_ layout: EntryLayout) -> PageAttrMasks {
        PageAttrMasks(set: layout.noExecute, clear: 0)
    }

    /// `set_memory_x()`: the model's no-execute bit cleared.
    public static func executable(_ layout: EntryLayout) -> PageAttrMasks {
        PageAttrMasks(set: 0, clear: layout.noExecute)
    }
}
