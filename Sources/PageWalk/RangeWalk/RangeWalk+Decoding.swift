import MemoryModel
import Synchronization

// Entry words to attributes and contents.
extension RangeWalk.Iterator {
    @inlinable
    static func swapAttributes(_ bits: SwapPTEBits) -> EntryAttributes {
        var a: EntryAttributes = []
        if bits.contains(.exclusive) { a.insert(.anonExclusive) }
        if bits.contains(.softDirty) { a.insert(.softDirty) }
        if bits.contains(.uffdWP) { a.insert(.uffdWP) }
        return a
    }

    @usableFromInline
    mutating func content(of leaf: SoftLeaf, offset: UInt64) -> WalkContent {
        switch leaf {
        case .swap(let s): return .swap(SwapEntry(type: s.type, offset: s.offset + offset))
        case .migration(let kind, let pfn, _, _):
            return .migration(kind, pfn: pfn + offset, folio: folios.folio(containing: pfn))
        case .devicePrivate(let w, let pfn):
            return .device(exclusive: false, writable: w, pfn: pfn, folio: folios.folio(containing: pfn))
        case .deviceExclusive(let pfn):
            return .device(exclusive: true, writable: false, pfn: pfn, folio: folios.folio(containing: pfn))
        case .hwpoison(let pfn): return .hwpoison(pfn: pfn)
        case .marker(let m): return .marker(m)
        }
    }
}

extension WalkEntry {
    /// Which VMA the entry lies in, compared without reference counting:
    /// loops that keep per-VMA values test this per entry and read `vma`
    /// only when it changes.
    @inlinable
    public var vmaIdentity: VMAIdentity { VMAIdentity(pointer: vmaPointer) }

    /// An entry whose VMA is given unretained (the walker keeps it alive).
    @inlinable
    init(start: UInt64, end: UInt64, level: EntryLevel, count: Int, vmaPointer: UnsafeRawPointer?, raw: UInt64,
         attributes: EntryAttributes, content: WalkContent) {
        self.init(start: start, end: end, level: level, count: count, vmaPointer: vmaPointer, raw: raw,
                  attributeWord: AttributeWord(decoded: attributes), content: content)
    }
}
