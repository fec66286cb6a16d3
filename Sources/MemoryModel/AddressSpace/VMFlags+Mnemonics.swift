/// The smaps `VmFlags:` mnemonics (fs/proc/task_mmu.c, `show_smap_vma_flags()`,
/// Linux 6.18; docs/FORMATS.md, "VmFlags mnemonics").
///
/// The single definition of the two-letter names: ProcFS prints smaps from
/// it and KernelSnapshot's rebuild parses smaps with it, so the writer and
/// the parser cannot disagree.
///
/// The kernel prints one mnemonic per set bit of `vm_flags`, lowest bit
/// first, each followed by a space. A bit its table names with an empty
/// string is skipped; a bit it does not name prints `??`.
extension VMFlags {
    /// Every flag the model has, with its mnemonic, in the order smaps
    /// prints them (bit order).
    ///
    /// `arch1` (VM_ARCH_1) is listed under its x86-64 name `ar` (VM_PAT);
    /// arm64 prints `bt` (VM_ARM64_BTI) for it, see `mnemonic(ofBit:architecture:)`.
    /// This is also the parse table: exactly these names map back to a flag
    /// (`init(mnemonic:)`).
    public static let mnemonics: [(flag: VMFlags, mnemonic: String)] = [
        (.read, "rd"),          // bit 0, VM_READ
        (.write, "wr"),         // bit 1, VM_WRITE
        (.exec, "ex"),          // bit 2, VM_EXEC
        (.shared, "sh"),        // bit 3, VM_SHARED
        (.mayRead, "mr"),       // bit 4, VM_MAYREAD
        (.mayWrite, "mw"),      // bit 5, VM_MAYWRITE
        (.mayExec, "me"),       // bit 6, VM_MAYEXEC
        (.mayShare, "ms"),      // bit 7, VM_MAYSHARE
        (.growsDown, "gd"),     // bit 8, VM_GROWSDOWN
        (.uffdMissing, "um"),   // bit 9, VM_UFFD_MISSING
        (.pfnMap, "pf"),        // bit 10, VM_PFNMAP
        (.maybeGuard, "gu"),    // bit 11, VM_MAYBE_GUARD (6.18)
        (.uffdWP, "uw"),        // bit 12, VM_UFFD_WP
        (.locked, "lo"),        // bit 13, VM_LOCKED
        (.io, "io"),            // bit 14, VM_IO
        (.seqRead, "sr"),       // bit 15, VM_SEQ_READ
        (.randRead, "rr"),      // bit 16, VM_RAND_READ
        (.dontCopy, "dc"),      // bit 17, VM_DONTCOPY
        (.dontExpand, "de"),    // bit 18, VM_DONTEXPAND
        (.lockOnFault, "lf"),   // bit 19, VM_LOCKONFAULT
        (.account, "ac"),       // bit 20, VM_ACCOUNT
        (.noReserve, "nr"),     // bit 21, VM_NORESERVE
        (.hugetlb, "ht"),       // bit 22, VM_HUGETLB
        (.sync, "sf"),          // bit 23, VM_SYNC
        (.arch1, "ar"),         // bit 24, VM_ARCH_1 (x86-64 VM_PAT; arm64 prints "bt")
        (.wipeOnFork, "wf"),    // bit 25, VM_WIPEONFORK
        (.dontDump, "dd"),      // bit 26, VM_DONTDUMP
        (.softDirty, "sd"),     // bit 27, VM_SOFTDIRTY (CONFIG_MEM_SOFT_DIRTY)
        (.mixedMap, "mm"),      // bit 28, VM_MIXEDMAP
        (.hugePage, "hg"),      // bit 29, VM_HUGEPAGE
        (.noHugePage, "nh"),    // bit 30, VM_NOHUGEPAGE
        (.mergeable, "mg"),     // bit 31, VM_MERGEABLE
        (.uffdMinor, "ui"),     // bit 41, VM_UFFD_MINOR
        (.sealed, "sl"),        // bit 42, VM_SEALED
    ]

    /// Bits the kernel names that the model has no flag for: printed when
    /// such a bit is set in a raw value, never parsed (a snapshot's `dp` is
    /// an unknown flag to the rebuild).
    public static let unmodelledMnemonics: [(bit: Int, mnemonic: String)] = [
        (40, "dp"),             // VM_DROPPABLE
    ]

    /// The protection-key bits (VM_PKEY_BIT0 … VM_PKEY_BIT3, bits 32–35):
    /// named with an empty string on x86-64, where smaps shows them as
    /// `ProtectionKey:` instead; `??` on arm64.
    public static let protectionKeyBits: ClosedRange<Int> = 32...35

    /// Mnemonic → flag: the inverse of `mnemonics`.
    public static let mnemonicFlags: [String: VMFlags] = {
        var d: [String: VMFlags] = [:]
        for (flag, name) in mnemonics { d[name] = flag }
        return d
    }()

    /// The flag smaps names `mnemonic` (one of `mnemonics`); nil for any
    /// other string, including the arm64 `bt` and the unmodelled names.
    @inlinable
    public init?(mnemonic: String) {
        guard let f = Self.mnemonicFlags[mnemonic] else { return nil }
        self = f
    }

    /// What smaps prints for bit `bit` (0 ..< 64) of `vm_flags` on
    /// `architecture`: the mnemonic, `""` for a bit the kernel skips, `??`
    /// for one it does not name.
    public static func mnemonic(ofBit bit: Int, architecture: Architecture) -> String {
        guard bit >= 0 && bit < 64 else { return "??" }
        return architecture == .arm64 ? printNamesARM64[bit] : printNamesX86[bit]
    }

    /// The names of bits 0 ..< 64 as one architecture prints them.
    private static func printNames(_ architecture: Architecture) -> [String] {
        var names = [String](repeating: "??", count: 64)
        for (flag, name) in mnemonics { names[flag.rawValue.trailingZeroBitCount] = name }
        for (bit, name) in unmodelledMnemonics { names[bit] = name }
        if architecture == .arm64 { names[VMFlags.arch1.rawValue.trailingZeroBitCount] = "bt" }   // VM_ARM64_BTI
        if architecture == .x86_64 { for bit in protectionKeyBits { names[bit] = "" } }
        return names
    }
    private static let printNamesX86 = printNames(.x86_64)
    private static let printNamesARM64 = printNames(.arm64)
}
