import MemoryModel

extension EntryAttributes {
    /// The attributes of present entry word `w` in layout `l`: `pte_write()`,
    /// `pte_dirty()`, `pte_young()`, `pte_soft_dirty()`, `pte_uffd_wp()`,
    /// `pte_special()` and PROT_NONE. (Anon-exclusive is a page flag.)
    ///
    /// Plain arithmetic, no `&&` or `||`: with `l` a constant layout each
    /// attribute is a shift and a mask, with no branch (short-circuits
    /// compiled to a decision tree). A caller testing one attribute uses
    /// `WalkEntry.entryAttributesContain(_:)`, which reads one bit.
    @inlinable @inline(always)
    public init(presentWord w: UInt64, _ l: EntryLayout) {
        @inline(always) func bit(_ m: UInt64) -> UInt16 { w & m != 0 ? 1 : 0 }
        let writable = bit(l.write)
        // arm64 keeps "dirty" as writable-and-not-read-only too (pte_hw_dirty()).
        let hwDirty = l.readOnly != 0 ? writable & (bit(l.readOnly) ^ 1) : 0
        var r = writable
        r |= (bit(l.dirty) | hwDirty) << 1
        r |= bit(l.young) << 2
        r |= bit(l.softDirty) << 3
        r |= bit(l.uffdWP) << 4
        r |= bit(l.special) << 6
        r |= (bit(l.valid) ^ 1) << 7
        self.init(rawValue: r)
    }
}

/// A walked entry's attributes as the word they are read from. A present
/// entry's word is decoded when, and as far as, a caller asks: a producer
/// that tests one bit pays for one bit, not for decoding all of them per
/// entry.
@usableFromInline
struct AttributeWord {
    /// How `word` reads: attributes already decoded (non-present and empty
    /// entries), or a present entry word of one architecture.
    @usableFromInline
    enum Source: UInt8 {
        case decoded, x86_64, arm64
        @inlinable init(_ a: Architecture) { self = a == .x86_64 ? .x86_64 : .arm64 }
    }
    @usableFromInline var word: UInt64
    @usableFromInline var source: Source

    @inlinable init(decoded a: EntryAttributes) { word = UInt64(a.rawValue); source = .decoded }
    @inlinable init(presentWord w: UInt64, _ source: Source) { word = w; self.source = source }

    @inlinable @inline(always)
    var attributes: EntryAttributes {
        switch source {
        case .decoded: return EntryAttributes(rawValue: UInt16(truncatingIfNeeded: word))
        case .x86_64: return EntryAttributes(presentWord: word, .x86_64)
        case .arm64: return EntryAttributes(presentWord: word, .arm64)
        }
    }

    /// `attributes.contains(a)`, reading only the entry bits `a` names.
    @inlinable @inline(always)
    func contains(_ a: EntryAttributes) -> Bool {
        switch source {
        case .decoded: return EntryAttributes(rawValue: UInt16(truncatingIfNeeded: word)).contains(a)
        case .x86_64: return Self.test(word, a, .x86_64)
        case .arm64: return Self.test(word, a, .arm64)
        }
    }

    @inlinable @inline(always)
    static func test(_ w: UInt64, _ a: EntryAttributes, _ l: EntryLayout) -> Bool {
        if let bits = entryBits(a, l) { return w & bits != 0 }
        return EntryAttributes(presentWord: w, l).contains(a)
    }

    /// The entry bits that carry attribute `a` alone (any of them set),
    /// nil when it is not a plain bit test (arm64 dirty, PROT_NONE, sets).
    @inlinable @inline(always)
    static func entryBits(_ a: EntryAttributes, _ l: EntryLayout) -> UInt64? {
        switch a.rawValue {
        case EntryAttributes.writable.rawValue: return l.write
        case EntryAttributes.dirty.rawValue: return l.readOnly == 0 ? l.dirty : nil
        case EntryAttributes.young.rawValue: return l.young
        case EntryAttributes.softDirty.rawValue: return l.softDirty
        case EntryAttributes.uffdWP.rawValue: return l.uffdWP
        case EntryAttributes.special.rawValue: return l.special
        default: return nil
        }
    }
}
