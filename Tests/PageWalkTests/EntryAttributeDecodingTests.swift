import Testing
import MemoryModel
import TestKit
@testable import PageWalk

/// The range walker keeps a present entry's attributes as the entry word
/// and decodes them when asked (all of them, or one by one). Both ways must
/// agree with the model's `pte_*()` predicates bit for bit, on both layouts,
/// including the corners: x86's second dirty bit (`_PAGE_SAVED_DIRTY`),
/// arm64's hardware dirty (DBM without RDONLY), PROT_NONE.
@Suite struct EntryAttributeDecodingTests {
    static let architectures: [Architecture] = [.x86_64, .arm64]
    static let singles: [EntryAttributes] = [.writable, .dirty, .young, .softDirty, .uffdWP, .special, .protNone]

    /// Present words (valid, or PROT_NONE) with every attribute bit alone,
    /// every pair of them, and random mixes of them over random PFNs.
    func presentWords(_ l: EntryLayout) -> [UInt64] {
        let masks = [l.write, l.dirty, l.readOnly, l.young, l.softDirty, l.uffdWP, l.special]
        // Each bit on its own: x86's dirty mask has two.
        var bits: [UInt64] = []
        for m in masks { var r = m; while r != 0 { bits.append(r & (0 &- r)); r &= r - 1 } }
        let presence = [l.valid, l.presentInvalid]
        var words: [UInt64] = []
        for p in presence {
            words.append(p)
            for b in bits { words.append(p | b); for c in bits { words.append(p | b | c) } }
        }
        var rng = SeededRandom(seed: 0x5EED)
        let all = bits.reduce(0, |)
        for _ in 0..<2_000 {
            let pfnBits = (rng.next() << 12) & l.pfnMask
            words.append(presence[Int(rng.next() & 1)] | (rng.next() & all) | pfnBits)
        }
        return words
    }

    @Test(arguments: architectures)
    func fullDecodeAgreesWithThePTEPredicates(_ arch: Architecture) {
        let l = arch.layout
        for w in presentWords(l) {
            let pte = PTE(rawValue: w, architecture: arch)
            #expect(pte.isPresent)
            let a = EntryAttributes(presentWord: w, l)
            #expect(a.contains(.writable) == pte.isWritable, "writable, word \(String(w, radix: 16))")
            #expect(a.contains(.dirty) == pte.isDirty, "dirty, word \(String(w, radix: 16))")
            #expect(a.contains(.young) == pte.isYoung, "young, word \(String(w, radix: 16))")
            #expect(a.contains(.softDirty) == pte.isSoftDirty, "soft-dirty, word \(String(w, radix: 16))")
            #expect(a.contains(.uffdWP) == pte.isUffdWP, "uffd-wp, word \(String(w, radix: 16))")
            #expect(a.contains(.special) == pte.isSpecial, "special, word \(String(w, radix: 16))")
            #expect(a.contains(.protNone) == !pte.isValid, "PROT_NONE, word \(String(w, radix: 16))")
            #expect(!a.contains(.anonExclusive))
        }
    }

    @Test(arguments: architectures)
    func oneAttributeTestsAgreeWithTheFullDecode(_ arch: Architecture) {
        for w in presentWords(arch.layout) {
            let word = AttributeWord(presentWord: w, AttributeWord.Source(arch))
            for a in Self.singles {
                #expect(word.contains(a) == word.attributes.contains(a), "\(a.rawValue) of word \(String(w, radix: 16))")
            }
            // Sets test as `OptionSet.contains`: all of them.
            #expect(word.contains([.young, .dirty]) == word.attributes.isSuperset(of: [.young, .dirty]))
        }
        // Attributes decoded already (swap entries, none) read back as stored.
        for raw: UInt16 in [0, 1, 0b1_1000, 0b1010_0111] {
            let stored = AttributeWord(decoded: EntryAttributes(rawValue: raw))
            #expect(stored.attributes.rawValue == raw)
            for a in Self.singles { #expect(stored.contains(a) == (raw & a.rawValue != 0)) }
        }
    }

    @Test func dirtyCorners() {
        let x86 = EntryLayout.x86_64, arm = EntryLayout.arm64
        // _PAGE_SAVED_DIRTY (bit 57) alone is dirty on x86 (shadow-stack-safe write protection).
        let saved = x86.valid | (1 << 57)
        #expect(x86.dirty & (1 << 57) != 0)
        #expect(EntryAttributes(presentWord: saved, x86).contains(.dirty))
        #expect(AttributeWord(presentWord: saved, .x86_64).contains(.dirty))
        // arm64: writable (DBM) and not read-only is hardware dirty; read-only is clean.
        let hwDirty = arm.valid | arm.write
        let clean = arm.valid | arm.write | arm.readOnly
        #expect(AttributeWord(presentWord: hwDirty, .arm64).contains(.dirty))
        #expect(!AttributeWord(presentWord: clean, .arm64).contains(.dirty))
        #expect(AttributeWord(presentWord: clean | arm.dirty, .arm64).contains(.dirty))
        // arm64 has no soft-dirty bit: never set, whatever the word.
        #expect(!AttributeWord(presentWord: ~UInt64(0), .arm64).contains(.softDirty))
    }
}
