import MemoryModel

/// Builds MemoryModel address spaces from a read `Snapshot`: one
/// `AddressSpace` per captured pid, all on one `PhysicalMemory`, folios
/// placed at the captured PFNs (shared between pids that map the same
/// frame), entries as pagemap shows them.
///
/// What pagemap and kpageflags do not show is inferred by fixed, documented
/// rules (docs/SNAPSHOT-REBUILD.md has the full table):
///
/// | state                        | rule                                                                      |
/// |------------------------------|---------------------------------------------------------------------------|
/// | VMA flags                    | exactly the smaps VmFlags mnemonics; perms must agree                     |
/// | VMA backing                  | `pf` → PFN range; `ht` → hugetlb (KernelPageSize); `/dev/zero (deleted)`, `/SYSV…`, `/memfd:…`, `/dev/shm/…` or a page that is swap-backed and not anon → shmem; other inode ≠ 0 → file; else anonymous |
/// | folio extent, order          | COMPOUND_HEAD … last COMPOUND_TAIL; HUGE → hugetlb                         |
/// | folio flags                  | kpageflags bits one to one; MAPPEDTODISK on ANON = PageAnonExclusive      |
/// | NUMA node                    | the VMA's single `N<node>` in numa_maps, else node 0 (warned)             |
/// | PMD leaf                     | aligned, fully present run of one order-9 THP in one VMA, as many as the VMA's AnonHugePages/ShmemPmdMapped/FilePmdMapped allow |
/// | PTE writable                 | anon: VM_WRITE and PageAnonExclusive and not KSM; shared file/shmem: VM_WRITE and (shmem or folio dirty); else read-only; never with uffd-wp |
/// | PTE dirty                    | anon: unless lazyfree, KSM, or clean in the swap cache; file: folio dirty and writable; then matched to smaps Shared_/Private_Dirty |
/// | PTE young                    | set, then cleared (IDLE pages first) to match smaps Referenced            |
/// | swap-PTE exclusive           | the entry is held by exactly one captured PTE of a private VMA            |
/// | swap count                   | number of captured PTEs holding the entry                                 |
/// | page cache                   | non-anon folio mapped through a file/shmem VMA, at the VMA's page index   |
/// | external mappings            | kpagecount − rebuilt mapcount, added to the page (options)                |
public enum SnapshotRebuilder {
    /// Reads the snapshot at `directory` and rebuilds it.
    public static func rebuild(directory: String, options: SnapshotRebuildOptions = .init()) throws(SnapshotError) -> RebuiltSnapshot {
        try rebuild(SnapshotReader.read(directory: directory), options: options)
    }

    /// Rebuilds `snapshot`. Throws `SnapshotError` (naming file and offset
    /// or line) for corrupt or inconsistent input; nothing is returned then,
    /// and everything built so far is released.
    public static func rebuild(_ snapshot: Snapshot, options: SnapshotRebuildOptions = .init()) throws(SnapshotError) -> RebuiltSnapshot {
        do {
            let b = try RebuildSession(snapshot: snapshot, options: options)
            return try b.run()
        } catch {
            throw SnapshotError.typed(error, in: snapshot.directory)
        }
    }

    /// VmFlags mnemonic → model flag (Linux 6.18 `show_smap_vma_flags()`):
    /// MemoryModel's `VMFlags.mnemonicFlags`, the inverse of the table
    /// ProcFS prints smaps from (`VMFlags.mnemonics`).
    public static let vmFlagMnemonics: [String: VMFlags] = VMFlags.mnemonicFlags

    /// kpageflags → model page flags (folio-wide part; per-page flags and
    /// the zero pages are handled separately).
    public static func pageFlags(_ k: KPageFlags) -> PageFlags {
        var f: PageFlags = []
        let pairs: [(KPageFlags, PageFlags)] = [
            (.locked, .locked), (.referenced, .referenced), (.uptodate, .uptodate), (.dirty, .dirty),
            (.lru, .lru), (.active, .active), (.writeback, .writeback), (.reclaim, .reclaim),
            (.anon, .anon), (.swapBacked, .swapBacked), (.swapCache, .swapCache),
            (.unevictable, .unevictable), (.mlocked, .mlocked), (.ksm, .ksm), (.reserved, .reserved),
            (.idle, .idle), (.private, .private), (.huge, .hugetlb),
        ]
        for (a, b) in pairs where k.contains(a) { f.insert(b) }
        // PG_mappedtodisk doubles as PG_anon_exclusive on anonymous folios.
        if k.contains(.mappedToDisk) && !k.contains(.anon) { f.insert(.mappedToDisk) }
        return f
    }
}

func rhex(_ v: UInt64) -> String { String(v, radix: 16) }
