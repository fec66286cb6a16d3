/// How a new mapping is backed (the arguments of `mmap()` that matter).
public enum MappingKind: Sendable {
    case anonymous
    /// A regular file, mapped from `offset` bytes.
    case file(FileObject, offset: UInt64)
    /// shmem: a memfd / tmpfs file, or shared anonymous memory when the file
    /// is nil (the kernel's `/dev/zero (deleted)`).
    case shmem(FileObject?, offset: UInt64)
    /// hugetlbfs, with the huge page size; anonymous (MAP_HUGETLB) when the
    /// file is nil (`/anon_hugepage (deleted)`).
    case hugetlb(pageSize: UInt64, file: FileObject?)
    /// `remap_pfn_range()` of `firstPFN` (VM_PFNMAP | VM_IO).
    case pfnMap(firstPFN: UInt64)
    /// VM_MIXEDMAP: PFNs inserted one by one.
    case mixedMap(firstPFN: UInt64)
}

extension AddressSpace {
    static let specialFlags: VMFlags = [.io, .dontExpand, .pfnMap, .mixedMap]

    /// Creates a VMA (`mmap()` without MAP_FIXED replacement): the range
    /// must be free. The new VMA merges with compatible neighbours, as the
    /// kernel's does; the VMA returned is the one holding the range then.
    @discardableResult
    public func mmap(start: UInt64, end: UInt64, access: VMFlags, shared: Bool = false,
                     kind: MappingKind = .anonymous, name: String? = nil, extraFlags: VMFlags = [],
                     policy: MemoryPolicy = .default, protectionKey: Int = 0) throws(ModelError) -> VMA {
        try checkAlive()
        return try withMmapWriteLock { (_) throws(ModelError) -> VMA in
            try mmapLocked(start: start, end: end, access: access, shared: shared, kind: kind, name: name,
                           extraFlags: extraFlags, policy: policy, protectionKey: protectionKey)
        }
    }

    func mmapLocked(start: UInt64, end: UInt64, access: VMFlags, shared: Bool, kind: MappingKind,
                    name: String?, extraFlags: VMFlags, policy: MemoryPolicy, protectionKey: Int) throws(ModelError) -> VMA {
        guard start & Geometry.pageOffsetMask == 0 else { throw .unaligned(name: "start", value: start, alignment: Geometry.pageSize) }
        guard end & Geometry.pageOffsetMask == 0 else { throw .unaligned(name: "end", value: end, alignment: Geometry.pageSize) }
        guard start < end else { throw .invalidRange(start: start, end: end, reason: "start must be below end") }
        guard end <= geometry.userAddressLimit else {
            throw .invalidRange(start: start, end: end, reason: "beyond the user address space (\(hex(geometry.userAddressLimit)))")
        }
        guard access.subtracting(.access).isEmpty else {
            throw .invalidArgument(name: "access", reason: "only read, write and exec")
        }
        for v in vmas(intersecting: start, end) {
            throw .overlappingVMA(start: start, end: end, existingStart: v.start, existingEnd: v.end)
        }
        var flags = access.union([.mayRead, .mayWrite, .mayExec]).union(extraFlags)
        if shared { flags.formUnion([.shared, .mayShare]) }
        if options.softDirty && layout.supportsSoftDirty { flags.insert(.softDirty) }
        var hugeSize: UInt64 = 0
        let backing: VMABacking
        switch kind {
        case .anonymous:
            if shared {
                let f = memory.file(path: "/dev/zero (deleted)", device: DeviceNumber(major: 0, minor: 1),
                                    inode: AddressSpace.nextAnonInode(), isShmem: true)
                backing = .shmem(f, pageOffset: 0)
            } else {
                backing = .anonymous
                if access.contains(.write) { flags.insert(.account) }
            }
        case .file(let f, let offset):
            guard offset & Geometry.pageOffsetMask == 0 else { throw .unaligned(name: "file offset", value: offset, alignment: Geometry.pageSize) }
            backing = .file(f, pageOffset: offset / Geometry.pageSize)
            if !shared && access.contains(.write) { flags.insert(.account) }
        case .shmem(let f, let offset):
            guard offset & Geometry.pageOffsetMask == 0 else { throw .unaligned(name: "file offset", value: offset, alignment: Geometry.pageSize) }
            let file = f ?? memory.file(path: "/dev/zero (deleted)", device: DeviceNumber(major: 0, minor: 1),
                                        inode: AddressSpace.nextAnonInode(), isShmem: true)
            backing = .shmem(file, pageOffset: offset / Geometry.pageSize)
            if !shared && access.contains(.write) { flags.insert(.account) }
        case .hugetlb(let size, let f):
            guard geometry.hugetlbSizes.contains(size) else {
                throw .invalidArgument(name: "huge page size", reason: "\(size) is not a hugetlb size on \(geometry)")
            }
            guard start % size == 0, end % size == 0 else {
                throw .unaligned(name: "hugetlb mapping", value: start % size == 0 ? end : start, alignment: size)
            }
            hugeSize = size
            flags.formUnion([.hugetlb, .dontExpand])
            let file = f ?? memory.file(path: "/anon_hugepage (deleted)", device: DeviceNumber(major: 0, minor: 0x10),
                                        inode: AddressSpace.nextAnonInode(), isShmem: false)
            backing = .file(file, pageOffset: 0)
        case .pfnMap(let pfn), .mixedMap(let pfn):
            guard pfn + (end - start) / Geometry.pageSize <= geometry.maxPFN else {
                throw .invalidArgument(name: "pfn", reason: "\(hex(pfn)) range exceeds the architecture's frames")
            }
            if case .pfnMap = kind { flags.formUnion([.pfnMap, .io, .dontExpand, .dontDump]) }
            else { flags.formUnion([.mixedMap]) }
            backing = .pfnRange(firstPFN: pfn)
        }
        let vma = VMA(start: start, end: end, flags: flags, backing: backing, name: name, policy: policy,
                      protectionKey: protectionKey, hugePageSize: hugeSize)
        let i = firstVMAIndex(endingAfter: start)
        replaceVMAs(i..<i, with: [vma])
        // A new mapping merges with compatible neighbours (vma_merge_new_range()).
        mergeVMAs(around: start, end)
        return self.vma(containing: start) ?? vma
    }

    private static let anonInodes = AnonInodeCounter()

    static func nextAnonInode() -> UInt64 { anonInodes.next() }

    /// Splits the VMA containing `address` so that a VMA starts there
    /// (`split_vma()`). Caller holds the mmap write lock.
    func splitVMA(at address: UInt64) throws(ModelError) {
        guard let i = vmaIndex(containing: address) else { return }
        let v = vmaList[i]
        guard v.start != address else { return }
        if v.isHugetlb && address % v.hugePageSize != 0 {
            throw .unaligned(name: "hugetlb split address", value: address, alignment: v.hugePageSize)
        }
        // A PMD leaf straddling the boundary is split into PTEs first.
        try splitLeafStraddling(address)
        let a = v.copy(start: v.start, end: address)
        let b = v.copy(start: address, end: v.end)
        replaceVMAs(i..<(i + 1), with: [a, b])
    }

    /// Splits VMAs so that `[start, end)` is covered by whole VMAs, and
    /// returns them.
    func isolateVMAs(_ start: UInt64, _ end: UInt64) throws(ModelError) -> ArraySlice<VMA> {
        try splitVMA(at: start)
        try splitVMA(at: end)
        return vmas(intersecting: start, end)
    }

    /// The VMAs of `[start, end)` that `changes` accepts, split at the
    /// range's edges; the others are left whole, as a flag change that
    /// leaves a VMA alone never splits it (`mlock_fixup()` and the like).
    func isolateVMAs(_ start: UInt64, _ end: UInt64, where changes: (VMA) -> Bool) throws(ModelError) -> [VMA] {
        if let v = vma(containing: start), changes(v) { try splitVMA(at: start) }
        if let v = vma(containing: end), v.start < end, changes(v) { try splitVMA(at: end) }
        return vmas(intersecting: start, end).filter(changes)
    }

    /// Whether `mlock_fixup()` changes the lock flags of `vma`: never for
    /// VM_SPECIAL mappings (PFN, mixed, I/O, don't-expand) or hugetlb,
    /// which mlock(2) still populates but never marks VM_LOCKED.
    package static func mlockChangesFlags(_ vma: VMA) -> Bool {
        !vma.isHugetlb && vma.flags.intersection(specialFlags).isEmpty
    }

    /// Whether two adjacent VMAs may merge (`is_mergeable_vma()`, and the
    /// anon_vma and file offset checks: an anon_vma on at most one side, or
    /// the same one on both).
    func canMerge(_ a: VMA, _ b: VMA) -> Bool {
        guard a.end == b.start, a.flags.subtracting(.sticky) == b.flags.subtracting(.sticky), a.name == b.name, a.policy == b.policy,
              a.protectionKey == b.protectionKey, a.hugePageSize == b.hugePageSize,
              a.flags.intersection(AddressSpace.specialFlags).isEmpty,
              a.anonVMAIdentity == 0 || b.anonVMAIdentity == 0 || a.anonVMAIdentity == b.anonVMAIdentity else { return false }
        switch (a.backing, b.backing) {
        case (.anonymous, .anonymous): return a.anonDisplacement == b.anonDisplacement
        case (.file(let f, let o), .file(let g, let p)), (.shmem(let f, let o), .shmem(let g, let p)):
            return f === g && o + a.size / Geometry.pageSize == p
        default: return false
        }
    }

    /// Merges compatible neighbours around `[start, end)` (`vma_merge()`).
    func mergeVMAs(around start: UInt64, _ end: UInt64) {
        var i = max(0, firstVMAIndex(endingAfter: start) - 1)
        while i + 1 < vmaList.count && vmaList[i].start <= end {
            let a = vmaList[i], b = vmaList[i + 1]
            if canMerge(a, b) {
                let m = a.copy(start: a.start, end: b.end)
                m.flags.formUnion(b.flags.intersection(.sticky))
                m.anonVMAIdentity = a.anonVMAIdentity != 0 ? a.anonVMAIdentity : b.anonVMAIdentity
                replaceVMAs(i..<(i + 2), with: [m])
            } else {
                i += 1
            }
        }
    }

    /// Checks that `[start, end)` is page aligned, non-empty, in user space
    /// and fully covered by VMAs; returns those VMAs.
    func coveredVMAs(_ start: UInt64, _ end: UInt64, operation: String) throws(ModelError) -> ArraySlice<VMA> {
        guard start & Geometry.pageOffsetMask == 0 else { throw .unaligned(name: "\(operation) start", value: start, alignment: Geometry.pageSize) }
        guard end & Geometry.pageOffsetMask == 0 else { throw .unaligned(name: "\(operation) end", value: end, alignment: Geometry.pageSize) }
        guard start < end else { throw .invalidRange(start: start, end: end, reason: "\(operation): start must be below end") }
        let vs = vmas(intersecting: start, end)
        var a = start
        for v in vs {
            if v.start > a { throw .noVMA(address: a) }
            a = v.end
        }
        if a < end { throw .noVMA(address: a) }
        return vs
    }
}

/// Hands out inode numbers for anonymous shared memory.
final class AnonInodeCounter: @unchecked Sendable {
    private let lock = SpinLock()
    private var value: UInt64 = 1000
    func next() -> UInt64 { lock.ref.withLock { value += 1; return value } }
}
