import Synchronization

/// `vm_flags_t` bits, with the kernel's values.
public struct VMFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public static let read = VMFlags(rawValue: 0x1)
    public static let write = VMFlags(rawValue: 0x2)
    public static let exec = VMFlags(rawValue: 0x4)
    public static let shared = VMFlags(rawValue: 0x8)
    public static let mayRead = VMFlags(rawValue: 0x10)
    public static let mayWrite = VMFlags(rawValue: 0x20)
    public static let mayExec = VMFlags(rawValue: 0x40)
    public static let mayShare = VMFlags(rawValue: 0x80)
    public static let growsDown = VMFlags(rawValue: 0x100)
    public static let uffdMissing = VMFlags(rawValue: 0x200)
    public static let pfnMap = VMFlags(rawValue: 0x400)
    public static let maybeGuard = VMFlags(rawValue: 0x800)
    public static let uffdWP = VMFlags(rawValue: 0x1000)
    public static let locked = VMFlags(rawValue: 0x2000)
    public static let io = VMFlags(rawValue: 0x4000)
    public static let seqRead = VMFlags(rawValue: 0x8000)
    public static let randRead = VMFlags(rawValue: 0x10000)
    public static let dontCopy = VMFlags(rawValue: 0x20000)
    public static let dontExpand = VMFlags(rawValue: 0x40000)
    public static let lockOnFault = VMFlags(rawValue: 0x80000)
    public static let account = VMFlags(rawValue: 0x100000)
    public static let noReserve = VMFlags(rawValue: 0x200000)
    public static let hugetlb = VMFlags(rawValue: 0x400000)
    public static let sync = VMFlags(rawValue: 0x800000)
    public static let arch1 = VMFlags(rawValue: 0x1000000)
    public static let wipeOnFork = VMFlags(rawValue: 0x2000000)
    public static let dontDump = VMFlags(rawValue: 0x4000000)
    public static let softDirty = VMFlags(rawValue: 0x8000000)
    /// `VM_STICKY`: flags that never stop two VMAs from merging
    /// (`VM_IGNORE_MERGE`) and that the merged VMA keeps from either side.
    public static let sticky: VMFlags = [.softDirty, .maybeGuard]
    public static let mixedMap = VMFlags(rawValue: 0x10000000)
    public static let hugePage = VMFlags(rawValue: 0x20000000)
    public static let noHugePage = VMFlags(rawValue: 0x40000000)
    public static let mergeable = VMFlags(rawValue: 0x80000000)
    public static let uffdMinor = VMFlags(rawValue: 1 << 41)
    public static let sealed = VMFlags(rawValue: 1 << 42)

    /// The access bits (`VM_ACCESS_FLAGS`).
    public static let access: VMFlags = [.read, .write, .exec]
}

/// What backs a VMA.
public enum VMABacking: Sendable {
    /// Private anonymous memory (or the kernel's special mappings).
    case anonymous
    /// A file mapping: `vm_file` and `vm_pgoff` (in pages).
    case file(FileObject, pageOffset: UInt64)
    /// Shared anonymous memory (`/dev/zero (deleted)`) and SysV/memfd shmem.
    case shmem(FileObject, pageOffset: UInt64)
    /// A raw PFN range (`remap_pfn_range()`), no struct pages.
    case pfnRange(firstPFN: UInt64)

    public var file: FileObject? {
        switch self {
        case .file(let f, _), .shmem(let f, _): return f
        case .anonymous, .pfnRange: return nil
        }
    }
    public var pageOffset: UInt64 {
        switch self {
        case .file(_, let o), .shmem(_, let o): return o
        case .anonymous, .pfnRange: return 0
        }
    }
}

/// A NUMA memory policy (`struct mempolicy`), as numa_maps prints it.
public enum MemoryPolicy: Hashable, Sendable {
    case `default`
    case bind([Int])
    case interleave([Int])
    case weightedInterleave([Int])
    case preferred(Int)
    case local
}

/// A virtual memory area (`struct vm_area_struct`).
///
/// A reference type: walkers hand out the VMA of each entry without copying
/// it, and the model replaces (never edits the range of) a VMA when mprotect
/// or mlock split it. Fields change only under the mmap write lock, after
/// `vma_start_write()`; `flags` is atomic because a page fault reads it
/// under the VMA lock alone, and the lockless lookup in front of that lock
/// may read it while a writer waits for the fault to leave.
public final class VMA: @unchecked Sendable, CustomStringConvertible {
    public internal(set) var start: UInt64
    public internal(set) var end: UInt64
    public internal(set) var flags: VMFlags {
        get { VMFlags(rawValue: flagWord.load(ordering: .relaxed)) }
        set { flagWord.store(newValue.rawValue, ordering: .relaxed) }
    }
    private let flagWord = Atomic<UInt64>(0)

    /// Sets `f` with one atomic operation (`vma_flag_set_atomic()`), for
    /// the flags the kernel sets under the mmap read lock.
    func insertFlagsAtomically(_ f: VMFlags) {
        flagWord.bitwiseOr(f.rawValue, ordering: .relaxed)
    }
    public let backing: VMABacking
    /// `[heap]`, `[stack]`, `[vdso]`, `[anon:NAME]` …, or nil.
    public internal(set) var name: String?
    public internal(set) var policy: MemoryPolicy
    public internal(set) var protectionKey: Int
    /// For hugetlb VMAs, the huge page size (`huge_page_size(hstate_vma())`).
    public let hugePageSize: UInt64
    /// Whether an anon_vma is attached: some anonymous page was faulted here
    /// (fork copies page tables only for such VMAs). Set by faults running
    /// under a VMA lock or the mmap read lock, hence atomic
    /// (`anon_vma_prepare()`).
    public internal(set) var hasAnonVMA: Bool {
        get { anonVMA.load(ordering: .relaxed) != 0 }
        set {
            if !newValue { anonVMA.store(0, ordering: .relaxed); return }
            if anonVMA.load(ordering: .relaxed) != 0 { return }
            _ = anonVMA.compareExchange(expected: 0, desired: VMA.newAnonVMA(), ordering: .relaxed)
        }
    }
    /// Which anon_vma is attached (0: none). Split parts keep it; a fork
    /// child gets its own (`anon_vma_fork()`); two VMAs with different ones
    /// never merge (`is_mergeable_anon_vma()`).
    package internal(set) var anonVMAIdentity: Int {
        get { anonVMA.load(ordering: .relaxed) }
        set { anonVMA.store(newValue, ordering: .relaxed) }
    }
    private let anonVMA = Atomic<Int>(0)
    private static let anonVMASource = Atomic<Int>(0)
    static func newAnonVMA() -> Int { anonVMASource.add(1, ordering: .relaxed).newValue }
    /// For an anonymous VMA, its `vm_pgoff` minus its start's page number.
    /// The kernel gives a new anonymous VMA the page number of its address
    /// as offset (0 here) and an mremap-moved one keeps the offset it had,
    /// so two neighbours merge only with equal displacements: a moved part
    /// does not merge where it lands, but does where it came from.
    let anonDisplacement: Int64
    /// The hugetlb VMA lock (`hugetlb_vma_lock`).
    public let hugetlbLock = ReadWriteLock()
    /// The per-VMA lock (`vm_refcnt`, `vm_lock_seq`).
    public let vmaLock = VMALock()

    init(start: UInt64, end: UInt64, flags: VMFlags, backing: VMABacking, name: String?,
         policy: MemoryPolicy, protectionKey: Int, hugePageSize: UInt64, hasAnonVMA: Bool = false,
         anonVMAIdentity: Int = 0, anonDisplacement: Int64 = 0) {
        self.start = start; self.end = end; self.backing = backing
        self.anonDisplacement = anonDisplacement
        flagWord.store(flags.rawValue, ordering: .relaxed)
        self.name = name; self.policy = policy; self.protectionKey = protectionKey
        self.hugePageSize = hugePageSize
        anonVMA.store(anonVMAIdentity != 0 ? anonVMAIdentity : (hasAnonVMA ? VMA.newAnonVMA() : 0), ordering: .relaxed)
    }

    /// A copy of this VMA for `[start, end)` (a split part, or a fork copy).
    func copy(start: UInt64, end: UInt64) -> VMA {
        let b: VMABacking
        switch backing {
        case .file(let f, let off): b = .file(f, pageOffset: off + (start - self.start) / Geometry.pageSize)
        case .shmem(let f, let off): b = .shmem(f, pageOffset: off + (start - self.start) / Geometry.pageSize)
        case .pfnRange(let p): b = .pfnRange(firstPFN: p + (start - self.start) / Geometry.pageSize)
        case .anonymous: b = .anonymous
        }
        return VMA(start: start, end: end, flags: flags, backing: b, name: name, policy: policy,
                   protectionKey: protectionKey, hugePageSize: hugePageSize, anonVMAIdentity: anonVMAIdentity,
                   anonDisplacement: anonDisplacement)
    }

    @inlinable public var range: Range<UInt64> { start..<end }
    @inlinable public var size: UInt64 { end - start }
    @inlinable public func contains(_ address: UInt64) -> Bool { address >= start && address < end }

    public var isAnonymous: Bool { if case .anonymous = backing { return true } else { return false } }
    public var isShmem: Bool { if case .shmem = backing { return true } else { return false } }
    public var isFile: Bool { if case .file = backing { return true } else { return false } }
    /// `is_vm_hugetlb_page()`.
    public var isHugetlb: Bool { flags.contains(.hugetlb) }
    public var isPFNMap: Bool { flags.contains(.pfnMap) }
    public var isShared: Bool { flags.contains(.shared) || flags.contains(.mayShare) }
    /// `vma_is_anonymous()` private mapping that may hold anon pages.
    public var isPrivate: Bool { !flags.contains(.mayShare) }
    public var file: FileObject? { backing.file }

    /// The file page index of `address` (`linear_page_index()`).
    @inlinable
    public func pageIndex(_ address: UInt64) -> UInt64 { backing.pageOffset + (address - start) / Geometry.pageSize }

    /// Permissions as /proc/PID/maps prints them (`rw-p`).
    public var permissions: String {
        (flags.contains(.read) ? "r" : "-") + (flags.contains(.write) ? "w" : "-")
            + (flags.contains(.exec) ? "x" : "-") + (flags.contains(.mayShare) ? "s" : "p")
    }

    public var description: String {
        "VMA(\(hex(start))-\(hex(end)) \(permissions)\(name.map { " " + $0 } ?? ""))"
    }
}

extension VMA {
    /// The names of the kernel's special mappings (`vm_special_mapping.name`,
    /// `arch_vma_name()`): VMAs with `vm_ops` and no file.
    package static let specialMappingNames: Set<String> = [
        "[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]", "[uprobes]", "[sigpage]", "[vectors]",
    ]

    /// Whether this is one of the kernel's special mappings (by its name).
    package var isSpecialMapping: Bool { name.map { VMA.specialMappingNames.contains($0) } ?? false }

    /// `vma_is_anonymous()`: anonymous memory without `vm_ops` (the special
    /// mappings have them).
    package var isAnonymousWithoutOps: Bool { isAnonymous && !isSpecialMapping }
}
