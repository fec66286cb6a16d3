import MemoryModel

/// The reference's VMA bookkeeping and `mmap`, the page-granular counterpart of
/// `AddressSpace+VMAs.swift`. Each operation follows the documented semantics of
/// the model's operation (named in its comment), checks its arguments in the same
/// order and throws the same `ModelError` cases.
extension ReferenceModel {
    static let specialFlags: VMFlags = [.io, .dontExpand, .pfnMap, .mixedMap]

    func covered(_ p: ReferenceProcess, _ start: UInt64, _ end: UInt64, _ op: String) throws(ModelError) -> [ReferenceVMA] {
        guard start & Geometry.pageOffsetMask == 0 else { throw .unaligned(name: "\(op) start", value: start, alignment: Geometry.pageSize) }
        guard end & Geometry.pageOffsetMask == 0 else { throw .unaligned(name: "\(op) end", value: end, alignment: Geometry.pageSize) }
        guard start < end else { throw .invalidRange(start: start, end: end, reason: "\(op): start must be below end") }
        let vs = p.vmas(intersecting: start, end)
        var a = start
        for v in vs {
            if v.start > a { throw .noVMA(address: a) }
            a = v.end
        }
        if a < end { throw .noVMA(address: a) }
        return vs
    }

    func splitVMA(_ p: ReferenceProcess, at a: UInt64) throws(ModelError) {
        guard let i = p.vmaIndex(containing: a) else { return }
        let v = p.vmas[i]
        guard v.start != a else { return }
        if v.isHugetlb && a % v.hugePageSize != 0 {
            throw .unaligned(name: "hugetlb split address", value: a, alignment: v.hugePageSize)
        }
        try splitLeafStraddling(p, a)
        p.vmas.replaceSubrange(i...i, with: [v.copy(start: v.start, end: a), v.copy(start: a, end: v.end)])
    }

    func isolate(_ p: ReferenceProcess, _ s: UInt64, _ e: UInt64) throws(ModelError) -> [ReferenceVMA] {
        try splitVMA(p, at: s)
        try splitVMA(p, at: e)
        return p.vmas(intersecting: s, e)
    }

    /// `isolate` for a flag change that leaves some VMAs alone: only those
    /// `changes` accepts are split at the edges and returned.
    func isolate(_ p: ReferenceProcess, _ s: UInt64, _ e: UInt64,
                 where changes: (ReferenceVMA) -> Bool) throws(ModelError) -> [ReferenceVMA] {
        if let i = p.vmaIndex(containing: s), changes(p.vmas[i]) { try splitVMA(p, at: s) }
        if let i = p.vmaIndex(containing: e), p.vmas[i].start < e, changes(p.vmas[i]) { try splitVMA(p, at: e) }
        return p.vmas(intersecting: s, e).filter(changes)
    }

    func canMerge(_ a: ReferenceVMA, _ b: ReferenceVMA) -> Bool {
        guard a.end == b.start, a.flags.subtracting(.sticky) == b.flags.subtracting(.sticky), a.name == b.name, a.policy == b.policy,
              a.protectionKey == b.protectionKey, a.hugePageSize == b.hugePageSize,
              a.flags.intersection(ReferenceModel.specialFlags).isEmpty,
              a.anonVMA == 0 || b.anonVMA == 0 || a.anonVMA == b.anonVMA else { return false }
        switch (a.backing, b.backing) {
        case (.anonymous, .anonymous): return true
        case (.file(let f, let o), .file(let g, let q)), (.shmem(let f, let o), .shmem(let g, let q)):
            return f === g && o + (a.end - a.start) / Geometry.pageSize == q
        default: return false
        }
    }

    func merge(_ p: ReferenceProcess, _ start: UInt64, _ end: UInt64) {
        var i = max(0, (p.vmas.firstIndex { $0.end > start } ?? p.vmas.count) - 1)
        while i + 1 < p.vmas.count && p.vmas[i].start <= end {
            let a = p.vmas[i], b = p.vmas[i + 1]
            if canMerge(a, b) {
                let m = a.copy(start: a.start, end: b.end)
                m.flags.formUnion(b.flags.intersection(.sticky))
                m.anonVMA = a.anonVMA != 0 ? a.anonVMA : b.anonVMA
                p.vmas.replaceSubrange(i...(i + 1), with: [m])
            } else {
                i += 1
            }
        }
    }

    /// The gate VMA of a new x86-64 process (arch/x86/entry/vsyscall):
    /// one page at VSYSCALL_ADDR, `--xp` under vsyscall=xonly and `r-xp`
    /// under emulate; none under vsyscall=none or on arm64.
    func newGateVMA() -> ReferenceVMA? {
        guard geometry.architecture == .x86_64 else { return nil }
        let flags: VMFlags
        switch options.vsyscall {
        case .none: return nil
        case .xonly: flags = .exec
        case .emulate: flags = [.read, .exec]
        }
        let vsyscallAddress: UInt64 = 0xffff_ffff_ff60_0000
        return ReferenceVMA(start: vsyscallAddress, end: vsyscallAddress + Geometry.pageSize, flags: flags,
                            backing: .anonymous, name: "[vsyscall]", policy: .default, protectionKey: 0,
                            hugePageSize: 0, hasAnonVMA: false)
    }

    /// `AddressSpace.mmap`.
    public func mmap(pid: Int, start: UInt64, end: UInt64, access: VMFlags, shared: Bool = false,
                     kind: MappingKind = .anonymous, name: String? = nil, extraFlags: VMFlags = [],
                     policy: MemoryPolicy = .default, protectionKey: Int = 0) throws(ModelError) {
        let p = try alive(pid)
        guard start & Geometry.pageOffsetMask == 0 else { throw .unaligned(name: "start", value: start, alignment: Geometry.pageSize) }
        guard end & Geometry.pageOffsetMask == 0 else { throw .unaligned(name: "end", value: end, alignment: Geometry.pageSize) }
        guard start < end else { throw .invalidRange(start: start, end: end, reason: "start must be below end") }
        guard end <= geometry.userAddressLimit else {
            throw .invalidRange(start: start, end: end, reason: "beyond the user address space")
        }
        guard access.subtracting(.access).isEmpty else { throw .invalidArgument(name: "access", reason: "only read, write and exec") }
        if let v = p.vmas(intersecting: start, end).first {
            throw .overlappingVMA(start: start, end: end, existingStart: v.start, existingEnd: v.end)
        }
        var flags = access.union([.mayRead, .mayWrite, .mayExec]).union(extraFlags)
        if shared { flags.formUnion([.shared, .mayShare]) }
        if tracksSoftDirty { flags.insert(.softDirty) }
        var huge: UInt64 = 0
        let backing: ReferenceBacking
        switch kind {
        case .anonymous:
            if shared { backing = .shmem(newFile(nil, shmem: true), pageOffset: 0) }
            else { backing = .anonymous; if access.contains(.write) { flags.insert(.account) } }
        case .file(let f, let offset):
            guard offset & Geometry.pageOffsetMask == 0 else { throw .unaligned(name: "file offset", value: offset, alignment: Geometry.pageSize) }
            backing = .file(newFile(f, shmem: f.isShmem), pageOffset: offset / Geometry.pageSize)
            if !shared && access.contains(.write) { flags.insert(.account) }
        case .shmem(let f, let offset):
            guard offset & Geometry.pageOffsetMask == 0 else { throw .unaligned(name: "file offset", value: offset, alignment: Geometry.pageSize) }
            backing = .shmem(newFile(f, shmem: true), pageOffset: offset / Geometry.pageSize)
            if !shared && access.contains(.write) { flags.insert(.account) }
        case .hugetlb(let size, let f):
            guard geometry.hugetlbSizes.contains(size) else {
                throw .invalidArgument(name: "huge page size", reason: "\(size) is not a hugetlb size on \(geometry)")
            }
            guard start % size == 0, end % size == 0 else {
                throw .unaligned(name: "hugetlb mapping", value: start % size == 0 ? end : start, alignment: size)
            }
            huge = size
            flags.formUnion([.hugetlb, .dontExpand])
            backing = .file(newFile(f, shmem: false), pageOffset: 0)
        case .pfnMap(let pfn), .mixedMap(let pfn):
            guard pfn + (end - start) / Geometry.pageSize <= geometry.maxPFN else {
                throw .invalidArgument(name: "pfn", reason: "range exceeds the architecture's frames")
            }
            if case .pfnMap = kind { flags.formUnion([.pfnMap, .io, .dontExpand, .dontDump]) } else { flags.insert(.mixedMap) }
            backing = .pfnRange(firstPFN: pfn)
        }
        let v = ReferenceVMA(start: start, end: end, flags: flags, backing: backing, name: name, policy: policy,
                             protectionKey: protectionKey, hugePageSize: huge, hasAnonVMA: false)
        let i = p.vmas.firstIndex { $0.end > start } ?? p.vmas.count
        p.vmas.insert(v, at: i)
        merge(p, start, end)
    }

    func newFile(_ real: FileObject?, shmem: Bool) -> ReferenceFile {
        if let real, let f = files[ObjectIdentifier(real)] { return f }
        let f = ReferenceFile(id: nextFile, isShmem: shmem, real: real)
        nextFile += 1
        if let real { files[ObjectIdentifier(real)] = f }
        allFiles.append(f)
        return f
    }
}
