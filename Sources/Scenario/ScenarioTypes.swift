// The value types a scenario document decodes into. They are plain data:
// a validated `ScenarioDocument` is what the builder turns into MemoryModel
// address spaces. Supporting types are nested (`VMASpec.Kind`,
// `ScenarioDocument.Architecture`, ...) so that they never clash with
// MemoryModel's own names in a file that imports both modules.
//
// The format itself is described in docs/SCENARIO.md.

import Foundation
import MemoryModel

/// A whole scenario: the machine it runs on and the processes to build.
public struct ScenarioDocument: Sendable, Equatable {
    /// Page size of every supported configuration (x86-64, arm64 4K granule).
    public static let pageSize: UInt64 = 4096
    /// The only format version this reader understands.
    public static let currentVersion = 1
    /// `memoryBudget` when the document gives none: 4 GiB.
    public static let defaultMemoryBudget: UInt64 = 4 << 30
    /// `swapSlots` when the document gives none: 2^24 slots (64 GiB of pages).
    public static let defaultSwapSlots: UInt64 = 1 << 24

    public enum Architecture: String, Sendable, Equatable, Hashable, CaseIterable {
        case x86_64
        case arm64

        /// Page-table depths this architecture can be configured with.
        public var supportedLevels: [Int] {
            switch self {
            case .x86_64: return [4, 5]
            case .arm64: return [2, 3, 4]
            }
        }

        /// The first address user space cannot use (TASK_SIZE) for `levels`.
        /// x86-64 keeps the last page below the canonical boundary unmapped
        /// (TASK_SIZE_MAX = 2^47 - 4K, or 2^56 - 4K with 5 levels); arm64
        /// with a 4K granule has 30, 39 or 48 VA bits for 2, 3 or 4 levels.
        public func userAddressLimit(levels: Int) -> UInt64 {
            switch self {
            case .x86_64:
                let bits: UInt64 = levels >= 5 ? 56 : 47
                return (1 << bits) - ScenarioDocument.pageSize
            case .arm64:
                let bits: UInt64 = 12 + 9 * UInt64(max(2, min(levels, 4)))
                return 1 << bits
            }
        }

        /// Largest protection key (x86-64 PKU: 16 keys; arm64 POE: 8).
        public var maxProtectionKey: Int {
            switch self {
            case .x86_64: return 15
            case .arm64: return 7
            }
        }

        /// Number of physical page frames addressable (x86-64: 52-bit
        /// physical addresses, arm64 4K granule: 48-bit).
        public var physicalFrameLimit: UInt64 {
            switch self {
            case .x86_64: return 1 << (52 - 12)
            case .arm64: return 1 << (48 - 12)
            }
        }

        /// The `vsyscall=` mode a document gets without the key: the
        /// kernel's default, xonly, on x86_64; arm64 has no gate VMA.
        public var defaultVsyscall: VsyscallMode {
            switch self {
            case .x86_64: return .xonly
            case .arm64: return .none
            }
        }

        /// The model's architecture.
        public var model: MemoryModel.Architecture {
            switch self {
            case .x86_64: return .x86_64
            case .arm64: return .arm64
            }
        }
    }

    public var version: Int
    public var architecture: Architecture
    /// Page-table levels: 4 or 5 on x86_64, 2, 3 or 4 on arm64.
    public var levels: Int
    public var numaNodes: Int
    /// Upper bound, in bytes, of the memory the scenario's operations may
    /// populate (summed over every populating op of every process).
    public var memoryBudget: UInt64
    /// Swap slots available to swap-out operations (one slot per page).
    public var swapSlots: UInt64
    /// The kernel's `vsyscall=` mode every process runs under: whether
    /// (and how) x86_64 processes have the gate VMA `[vsyscall]`.
    public var vsyscall: VsyscallMode
    /// In document order: a parent always precedes the children it forks.
    public var processes: [ProcessSpec]

    public init(
        version: Int = ScenarioDocument.currentVersion,
        architecture: Architecture,
        levels: Int = 4,
        numaNodes: Int = 1,
        memoryBudget: UInt64 = ScenarioDocument.defaultMemoryBudget,
        swapSlots: UInt64 = ScenarioDocument.defaultSwapSlots,
        vsyscall: VsyscallMode? = nil,
        processes: [ProcessSpec]
    ) {
        self.version = version
        self.architecture = architecture
        self.levels = levels
        self.numaNodes = numaNodes
        self.memoryBudget = memoryBudget
        self.swapSlots = swapSlots
        self.vsyscall = vsyscall ?? architecture.defaultVsyscall
        self.processes = processes
    }

    /// TASK_SIZE of this document's architecture and depth.
    public var userAddressLimit: UInt64 {
        architecture.userAddressLimit(levels: levels)
    }

    /// The process with this pid, if declared.
    public func process(pid: Int) -> ProcessSpec? {
        processes.first { $0.pid == pid }
    }
}

/// One simulated process. A process with a `parent` is created by the
/// parent's `fork` op and inherits the parent's VMAs at that point: it
/// declares no VMAs of its own, only the ops applied to it after the fork.
public struct ProcessSpec: Sendable, Equatable {
    public var pid: Int
    public var name: String
    public var parent: Int?
    public var vmas: [VMASpec]
    public var ops: [OperationSpec]

    public init(pid: Int, name: String, parent: Int? = nil, vmas: [VMASpec] = [], ops: [OperationSpec] = []) {
        self.pid = pid
        self.name = name
        self.parent = parent
        self.vmas = vmas
        self.ops = ops
    }

    /// True for a process created by a parent's `fork` op.
    public var isForked: Bool { parent != nil }
}

/// A half-open address range `start ..< end`, page aligned, non-empty.
public struct AddressRange: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var start: UInt64
    public var end: UInt64

    public init(start: UInt64, end: UInt64) {
        self.start = start
        self.end = end
    }

    public init(start: UInt64, size: UInt64) {
        self.start = start
        self.end = start + size
    }

    public var size: UInt64 { end - start }
    public var pageCount: UInt64 { size / ScenarioDocument.pageSize }
    public var range: Range<UInt64> { start ..< end }

    public func contains(_ address: UInt64) -> Bool { address >= start && address < end }

    /// `0x1000-0x3000`, as /proc/PID/maps writes ranges (but with 0x).
    public var description: String { "\(hex(start))-\(hex(end))" }
}

/// One VMA of a (non-forked) process, as declared.
public struct VMASpec: Sendable, Equatable {
    /// What backs the mapping.
    public enum Kind: String, Sendable, Equatable, Hashable, CaseIterable {
        /// Private anonymous memory (heap, stack, arenas, COW data).
        case anon
        /// A regular file (page cache), private or shared.
        case file
        /// tmpfs / shared anonymous / SysV shm memory.
        case shmem
        /// hugetlbfs or MAP_HUGETLB memory in `hugePageSize` pages.
        case hugetlb
        /// VM_PFNMAP: raw PFNs without struct page (remap_pfn_range).
        case pfnmap
        /// VM_MIXEDMAP: raw PFNs and normal pages mixed.
        case mixedmap
    }

    /// `rwxp` / `rw-s` permissions as /proc/PID/maps prints them.
    public struct Permissions: Sendable, Equatable, Hashable, CustomStringConvertible {
        public var read: Bool
        public var write: Bool
        public var execute: Bool
        /// `s` (VM_SHARED / VM_MAYSHARE) rather than `p`.
        public var shared: Bool

        public init(read: Bool, write: Bool, execute: Bool, shared: Bool) {
            self.read = read
            self.write = write
            self.execute = execute
            self.shared = shared
        }

        /// Parses exactly four characters: `r|-`, `w|-`, `x|-`, `p|s`.
        public init?(_ string: String) {
            let c = Array(string.unicodeScalars)
            guard c.count == 4,
                  c[0] == "r" || c[0] == "-",
                  c[1] == "w" || c[1] == "-",
                  c[2] == "x" || c[2] == "-",
                  c[3] == "p" || c[3] == "s"
            else { return nil }
            self.init(read: c[0] == "r", write: c[1] == "w", execute: c[2] == "x", shared: c[3] == "s")
        }

        public var description: String {
            (read ? "r" : "-") + (write ? "w" : "-") + (execute ? "x" : "-") + (shared ? "s" : "p")
        }

        /// PROT_NONE: no access at all.
        public var isNone: Bool { !read && !write && !execute }
    }

    /// Size of the pages of a hugetlb VMA.
    public enum HugePageSize: String, Sendable, Equatable, Hashable, CaseIterable {
        /// arm64 contiguous PTEs (16 x 4K).
        case size64K = "64K"
        /// PMD leaf.
        case size2M = "2M"
        /// arm64 contiguous PMDs (16 x 2M).
        case size32M = "32M"
        /// PUD leaf.
        case size1G = "1G"

        public var bytes: UInt64 {
            switch self {
            case .size64K: return 64 << 10
            case .size2M: return 2 << 20
            case .size32M: return 32 << 20
            case .size1G: return 1 << 30
            }
        }

        /// Folio order in base pages (4, 9, 13, 18).
        public var order: Int { bytes.trailingZeroBitCount - 12 }

        public func isSupported(on architecture: ScenarioDocument.Architecture) -> Bool {
            switch self {
            case .size2M, .size1G: return true
            case .size64K, .size32M: return architecture == .arm64
            }
        }
    }

    /// Extra VM flags beyond what perms and kind imply.
    public enum Flag: String, Sendable, Equatable, Hashable, CaseIterable, Comparable {
        case hugepage            // VM_HUGEPAGE (MADV_HUGEPAGE), smaps "hg"
        case nohugepage          // VM_NOHUGEPAGE, "nh"
        case locked              // VM_LOCKED, "lo"
        case lockonfault         // VM_LOCKONFAULT (with locked)
        case softdirty           // VM_SOFTDIRTY, "sd"
        case uffdWP = "uffd_wp"  // VM_UFFD_WP, "uw"
        case uffdMissing = "uffd_missing" // VM_UFFD_MISSING, "um"
        case uffdMinor = "uffd_minor"     // VM_UFFD_MINOR, "ui"
        case mergeable           // VM_MERGEABLE (KSM), "mg"
        case io                  // VM_IO, "io"
        case dontexpand          // VM_DONTEXPAND, "de"
        case dontcopy            // VM_DONTCOPY (not inherited by fork), "dc"
        case dontdump            // VM_DONTDUMP, "dd"
        case wipeonfork          // VM_WIPEONFORK, "wf"
        case seqread             // VM_SEQ_READ, "sr"
        case randread            // VM_RAND_READ, "rr"
        case growsdown           // VM_GROWSDOWN, "gd"
        case account             // VM_ACCOUNT, "ac"
        case noreserve           // VM_NORESERVE, "nr"

        public static func < (lhs: Flag, rhs: Flag) -> Bool {
            allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
        }
    }

    /// NUMA memory policy (numa_maps spelling).
    public enum Policy: Sendable, Equatable, Hashable, CustomStringConvertible {
        case `default`
        case local
        /// Sorted, distinct node ids.
        case bind([Int])
        /// Sorted, distinct node ids.
        case interleave([Int])
        case preferred(Int)

        /// `default`, `local`, `bind:0-1`, `interleave:0,2`, `prefer:1`.
        public var description: String {
            switch self {
            case .default: return "default"
            case .local: return "local"
            case .bind(let nodes): return "bind:" + formatNodeList(nodes)
            case .interleave(let nodes): return "interleave:" + formatNodeList(nodes)
            case .preferred(let node): return "prefer:\(node)"
            }
        }
    }

    /// Device number as /proc/PID/maps prints it: `fd:01`.
    public struct DeviceNumber: Sendable, Equatable, Hashable, CustomStringConvertible {
        public var major: UInt32
        public var minor: UInt32

        public init(major: UInt32, minor: UInt32) {
            self.major = major
            self.minor = minor
        }

        public static let none = DeviceNumber(major: 0, minor: 0)

        public var description: String {
            let maj = String(major, radix: 16)
            let min = String(minor, radix: 16)
            return (maj.count < 2 ? "0" + maj : maj) + ":" + (min.count < 2 ? "0" + min : min)
        }
    }

    /// The file behind a file, shmem, hugetlb or PFN mapping.
    public struct FileMapping: Sendable, Equatable, Hashable {
        public var path: String
        public var device: DeviceNumber
        public var inode: UInt64
        /// Byte offset in the file of `start` (page aligned; pgoff * 4K).
        public var offset: UInt64

        public init(path: String, device: DeviceNumber = .none, inode: UInt64 = 0, offset: UInt64 = 0) {
            self.path = path
            self.device = device
            self.inode = inode
            self.offset = offset
        }
    }

    public var start: UInt64
    public var end: UInt64
    public var perms: Permissions
    public var kind: Kind
    public var file: FileMapping?
    /// `[heap]`, `[stack]`, `[vdso]`, `[anon:name]` ...
    public var name: String?
    /// Set (2M by default) exactly when `kind == .hugetlb`.
    public var hugePageSize: HugePageSize?
    public var flags: Set<Flag>
    public var policy: Policy
    public var pkey: Int

    public init(
        start: UInt64, end: UInt64, perms: Permissions, kind: Kind,
        file: FileMapping? = nil, name: String? = nil, hugePageSize: HugePageSize? = nil,
        flags: Set<Flag> = [], policy: Policy = .default, pkey: Int = 0
    ) {
        self.start = start
        self.end = end
        self.perms = perms
        self.kind = kind
        self.file = file
        self.name = name
        self.hugePageSize = hugePageSize
        self.flags = flags
        self.policy = policy
        self.pkey = pkey
    }

    public var range: AddressRange { AddressRange(start: start, end: end) }
    public var size: UInt64 { end - start }
}

/// One operation applied, in order, to the process whose `ops` list holds it.
public enum OperationSpec: Sendable, Equatable {
    /// The op names of the format, one per case.
    public enum Kind: String, Sendable, Equatable, Hashable, CaseIterable {
        case fault, thp, mthp, hugetlb, zap, split, collapse, swapout, swapin, migrate
        case migrationEntries = "migration_entries"
        case devicePrivate = "device_private"
        case deviceExclusive = "device_exclusive"
        case hwpoison
        case uffdWP = "uffd_wp"
        case guardInstall = "guard_install"
        case guardRemove = "guard_remove"
        case remapPFN = "remap_pfn"
        case fork, mprotect, mlock, munlock
        case mlock2OnFault = "mlock2_onfault"
        case madvFree = "madv_free"
        case madvCold = "madv_cold"
        case madvPageout = "madv_pageout"
        case madvWillNeed = "madv_willneed"
        case ksm
        case clearRefs = "clear_refs"
        case munmap, touch
    }

    /// What `clear_refs` clears (echo 4 / echo 1 > /proc/PID/clear_refs).
    public enum ClearRefsKind: String, Sendable, Equatable, Hashable, CaseIterable {
        /// Soft-dirty bits (echo 4).
        case softDirty = "soft_dirty"
        /// Young/referenced bits of every page (echo 1).
        case young
        /// Both.
        case all
        /// Young bits of anonymous VMAs only (echo 2).
        case anonymous = "anon"
        /// Young bits of file-backed VMAs only (echo 3).
        case file
        /// The peak RSS reset (echo 5).
        case hiwaterRSS = "hiwater_rss"
    }

    /// Fault the range in, page by page (anon read: zero page; write: new
    /// anon page or COW; file/shmem: page cache).
    case fault(AddressRange, write: Bool)
    /// Populate with PMD-mapped THPs (range 2M aligned).
    case thp(AddressRange)
    /// Populate with PTE-mapped multi-size THPs of `order` (2...8).
    case mthp(AddressRange, order: Int)
    /// Populate a hugetlb VMA with huge pages of its size.
    case hugetlb(AddressRange)
    /// MADV_DONTNEED.
    case zap(AddressRange)
    /// Split the PMD THP mapping `address` into PTEs.
    case split(address: UInt64)
    /// MADV_COLLAPSE into PMD THPs (range 2M aligned).
    case collapse(AddressRange)
    case swapout(AddressRange)
    case swapin(AddressRange)
    /// Migrate present pages to `node`.
    case migrate(AddressRange, node: Int)
    /// Leave migration entries in place of the present pages.
    case migrationEntries(AddressRange)
    /// Replace with device-private entries.
    case devicePrivate(AddressRange, writable: Bool)
    /// Replace with device-exclusive entries.
    case deviceExclusive(AddressRange)
    /// Poison the page at `address`.
    case hwpoison(address: UInt64)
    /// Userfaultfd write-protect (markers where nothing is present).
    case uffdWP(AddressRange)
    /// MADV_GUARD_INSTALL.
    case guardInstall(AddressRange)
    /// MADV_GUARD_REMOVE.
    case guardRemove(AddressRange)
    /// remap_pfn_range of consecutive PFNs from `pfn`.
    case remapPFN(AddressRange, pfn: UInt64)
    /// Fork the process declared with this pid (COW sharing).
    case fork(child: Int)
    case mprotect(AddressRange, perms: VMASpec.Permissions)
    case mlock(AddressRange)
    case munlock(AddressRange)
    /// `mlock2(MLOCK_ONFAULT)`: locked as pages fault in, nothing populated.
    case mlock2OnFault(AddressRange)
    /// MADV_FREE (lazyfree).
    case madvFree(AddressRange)
    /// MADV_COLD: exclusive folios made old and inactive.
    case madvCold(AddressRange)
    /// MADV_PAGEOUT: exclusive folios reclaimed (anonymous to swap, clean
    /// file pages out of the page cache).
    case madvPageout(AddressRange)
    /// MADV_WILLNEED: swap entries read into the swap cache, file ranges
    /// read ahead into the page cache.
    case madvWillNeed(AddressRange)
    /// Merge the range's anon pages into `distinct` KSM pages.
    case ksm(AddressRange, distinct: Int)
    case clearRefs(ClearRefsKind)
    case munmap(AddressRange)
    /// Set young (and dirty when `write`) on present pages.
    case touch(AddressRange, write: Bool)

    public var kind: Kind {
        switch self {
        case .fault: return .fault
        case .thp: return .thp
        case .mthp: return .mthp
        case .hugetlb: return .hugetlb
        case .zap: return .zap
        case .split: return .split
        case .collapse: return .collapse
        case .swapout: return .swapout
        case .swapin: return .swapin
        case .migrate: return .migrate
        case .migrationEntries: return .migrationEntries
        case .devicePrivate: return .devicePrivate
        case .deviceExclusive: return .deviceExclusive
        case .hwpoison: return .hwpoison
        case .uffdWP: return .uffdWP
        case .guardInstall: return .guardInstall
        case .guardRemove: return .guardRemove
        case .remapPFN: return .remapPFN
        case .fork: return .fork
        case .mprotect: return .mprotect
        case .mlock: return .mlock
        case .munlock: return .munlock
        case .mlock2OnFault: return .mlock2OnFault
        case .madvFree: return .madvFree
        case .madvCold: return .madvCold
        case .madvPageout: return .madvPageout
        case .madvWillNeed: return .madvWillNeed
        case .ksm: return .ksm
        case .clearRefs: return .clearRefs
        case .munmap: return .munmap
        case .touch: return .touch
        }
    }

    /// The range the op applies to: its range, or the page at its address;
    /// nil for `fork` and `clear_refs`.
    public var range: AddressRange? {
        switch self {
        case .fault(let r, _), .thp(let r), .mthp(let r, _), .hugetlb(let r), .zap(let r),
             .collapse(let r), .swapout(let r), .swapin(let r), .migrate(let r, _),
             .migrationEntries(let r), .devicePrivate(let r, _), .deviceExclusive(let r),
             .uffdWP(let r), .guardInstall(let r), .guardRemove(let r), .remapPFN(let r, _),
             .mprotect(let r, _), .mlock(let r), .munlock(let r), .mlock2OnFault(let r), .madvFree(let r),
             .madvCold(let r), .madvPageout(let r), .madvWillNeed(let r),
             .ksm(let r, _), .munmap(let r), .touch(let r, _):
            return r
        case .split(let a), .hwpoison(let a):
            return AddressRange(start: a, size: ScenarioDocument.pageSize)
        case .fork, .clearRefs:
            return nil
        }
    }
}

/// `0-1,3` style node list from sorted distinct ids.
func formatNodeList(_ nodes: [Int]) -> String {
    var parts: [String] = []
    var i = 0
    while i < nodes.count {
        var j = i
        while j + 1 < nodes.count && nodes[j + 1] == nodes[j] + 1 { j += 1 }
        parts.append(i == j ? "\(nodes[i])" : "\(nodes[i])-\(nodes[j])")
        i = j + 1
    }
    return parts.joined(separator: ",")
}
