import MemoryModel
import PageWalk

/// Address spaces built from a scenario document.
public struct BuiltScenario: @unchecked Sendable {
    /// One built process.
    public struct Process: @unchecked Sendable {
        /// The process id (`pid_t`), as the document gives it.
        public let pid: Int32
        public let name: String
        public let addressSpace: AddressSpace
    }

    public let document: ScenarioDocument
    /// The physical memory every process of the scenario shares.
    public let memory: PhysicalMemory
    /// The processes, in document order.
    public let processes: [Process]

    /// The address space of `pid`.
    public func addressSpace(pid: Int32) -> AddressSpace? {
        processes.first { $0.pid == pid }?.addressSpace
    }
}

/// Builds `AddressSpace`s from a validated `ScenarioDocument`.
///
/// Processes run in document order, each process's ops to completion; a
/// `fork` op creates the child then, and the child's own ops run at its
/// turn. An operation the memory model refuses stops the build with
/// `ScenarioError.buildFailed` naming the op's path; nothing built is kept.
public enum ScenarioBuilder {
    /// Kernel configuration the built address spaces assume.
    public struct Options: Sendable, Hashable {
        /// `CONFIG_MEM_SOFT_DIRTY` (VM_SOFTDIRTY on new VMAs, soft-dirty bits).
        public var softDirty: Bool
        public init(softDirty: Bool = true) { self.softDirty = softDirty }
    }

    public static func build(_ document: ScenarioDocument, options: Options = .init()) throws(ScenarioError) -> BuiltScenario {
        let geometry: Geometry
        let memory: PhysicalMemory
        do {
            geometry = try Geometry(document.architecture.model, levels: document.levels)
            memory = try PhysicalMemory(budgetBytes: document.memoryBudget, nodes: document.numaNodes,
                                        swapSlots: Int(min(document.swapSlots, UInt64(Int32.max))))
        } catch {
            throw .buildFailed(path: "", reason: error.description)
        }
        var spaces: [Int: AddressSpace] = [:]
        var built: [BuiltScenario.Process] = []
        for (p, process) in document.processes.enumerated() {
            let path = "processes[\(p)]"
            let mm: AddressSpace
            if let existing = spaces[process.pid] {
                mm = existing
            } else {
                do {
                    mm = try AddressSpace(geometry: geometry, memory: memory,
                                          options: AddressSpaceOptions(softDirty: options.softDirty,
                                                                       pid: process.pid, name: process.name,
                                                                       vsyscall: document.vsyscall))
                } catch {
                    throw .buildFailed(path: path, reason: error.description)
                }
                spaces[process.pid] = mm
                for (v, vma) in process.vmas.enumerated() {
                    do { try map(vma, in: mm, memory: memory) } catch {
                        throw .buildFailed(path: "\(path).vmas[\(v)]", reason: error.description)
                    }
                }
            }
            for (o, op) in process.ops.enumerated() {
                do {
                    if case .fork(let child) = op {
                        spaces[child] = try mm.fork(childPID: child)
                    } else {
                        try apply(op, to: mm)
                    }
                } catch {
                    throw .buildFailed(path: "\(path).ops[\(o)]", reason: error.description)
                }
            }
            built.append(BuiltScenario.Process(pid: Int32(process.pid), name: process.name, addressSpace: mm))
        }
        return BuiltScenario(document: document, memory: memory, processes: built)
    }

    /// The embedded default scenario, built.
    public static func buildDefault(options: Options = .init()) throws(ScenarioError) -> BuiltScenario {
        try build(DefaultScenario.load(), options: options)
    }

    static func vmFlags(_ flags: Set<VMASpec.Flag>) -> VMFlags {
        var out: VMFlags = []
        for f in flags {
            switch f {
            case .hugepage: out.insert(.hugePage)
            case .nohugepage: out.insert(.noHugePage)
            case .locked: out.insert(.locked)
            case .lockonfault: out.insert(.lockOnFault)
            case .softdirty: out.insert(.softDirty)
            case .uffdWP: out.insert(.uffdWP)
            case .uffdMissing: out.insert(.uffdMissing)
            case .uffdMinor: out.insert(.uffdMinor)
            case .mergeable: out.insert(.mergeable)
            case .io: out.insert(.io)
            case .dontexpand: out.insert(.dontExpand)
            case .dontcopy: out.insert(.dontCopy)
            case .dontdump: out.insert(.dontDump)
            case .wipeonfork: out.insert(.wipeOnFork)
            case .seqread: out.insert(.seqRead)
            case .randread: out.insert(.randRead)
            case .growsdown: out.insert(.growsDown)
            case .account: out.insert(.account)
            case .noreserve: out.insert(.noReserve)
            }
        }
        return out
    }

    static func access(_ p: VMASpec.Permissions) -> VMFlags {
        var a: VMFlags = []
        if p.read { a.insert(.read) }
        if p.write { a.insert(.write) }
        if p.execute { a.insert(.exec) }
        return a
    }

    static func policy(_ p: VMASpec.Policy) -> MemoryPolicy {
        switch p {
        case .default: return .default
        case .local: return .local
        case .bind(let n): return .bind(n)
        case .interleave(let n): return .interleave(n)
        case .preferred(let n): return .preferred(n)
        }
    }

    static func map(_ spec: VMASpec, in mm: AddressSpace, memory: PhysicalMemory) throws(ModelError) {
        let file = spec.file.map {
            memory.file(path: $0.path, device: DeviceNumber(major: $0.device.major, minor: $0.device.minor),
                        inode: $0.inode, isShmem: spec.kind == .shmem)
        }
        let kind: MappingKind
        switch spec.kind {
        case .anon: kind = .anonymous
        case .file: kind = .file(file!, offset: spec.file?.offset ?? 0)
        case .shmem: kind = .shmem(file, offset: spec.file?.offset ?? 0)
        case .hugetlb: kind = .hugetlb(pageSize: spec.hugePageSize?.bytes ?? (2 << 20), file: file)
        case .pfnmap: kind = .pfnMap(firstPFN: (spec.file?.offset ?? 0) / Geometry.pageSize)
        case .mixedmap: kind = .mixedMap(firstPFN: (spec.file?.offset ?? 0) / Geometry.pageSize)
        }
        try mm.mmap(start: spec.start, end: spec.end, access: access(spec.perms), shared: spec.perms.shared,
                    kind: kind, name: spec.name, extraFlags: vmFlags(spec.flags), policy: policy(spec.policy),
                    protectionKey: spec.pkey)
    }

    /// A madvise behaviour of the walker's, its failure as the model error
    /// the builder reports (a model failure as it is).
    static func madvise(_ body: () throws(MadviseError) -> Void) throws(ModelError) {
        do { try body() } catch {
            if case .walk(.model(let m)) = error { throw m }
            throw .invalidArgument(name: "madvise", reason: "\(error.description) (errno \(error.errno))")
        }
    }

    /// Applies one op to `mm`, its walker users on `walker` (the range
    /// walker, or the callback twin). `fork` needs the builder and is refused.
    public static func apply(_ op: OperationSpec, to mm: AddressSpace, walker: WalkerKind = .range) throws(ModelError) {
        switch op {
        case .fault(let r, let write): try mm.fault(r.start, r.end, write: write)
        case .thp(let r): try mm.populateTHP(r.start, r.end)
        case .mthp(let r, let order): try mm.populateLargeFolios(r.start, r.end, order: order)
        case .hugetlb(let r):
            let writable = mm.vma(containing: r.start)?.flags.contains(.write) ?? false
            try mm.populateHugetlb(r.start, r.end, write: writable)
        case .zap(let r): try mm.zap(r.start, r.end)
        case .split(let a): try mm.splitHugePMD(containing: a)
        case .collapse(let r): try mm.collapse(r.start, r.end)
        case .swapout(let r): try mm.swapOut(r.start, r.end)
        case .swapin(let r): try mm.swapIn(r.start, r.end)
        case .migrate(let r, let node): try mm.migrate(r.start, r.end, toNode: node)
        case .migrationEntries(let r): try mm.startMigration(r.start, r.end)
        case .devicePrivate(let r, let w): try mm.makeDevicePrivate(r.start, r.end, writable: w)
        case .deviceExclusive(let r): try mm.makeDeviceExclusive(r.start, r.end)
        case .hwpoison(let a): try mm.poison(a)
        case .uffdWP(let r): try mm.userfaultWriteProtect(r.start, r.end)
        case .guardInstall(let r):
            try madvise { () throws(MadviseError) in try madviseGuardInstall(mm, r.start, r.end, walker: walker) }
        case .guardRemove(let r):
            try madvise { () throws(MadviseError) in try madviseGuardRemove(mm, r.start, r.end, walker: walker) }
        case .remapPFN(let r, let pfn): try mm.remapPFN(r.start, r.end, pfn: pfn)
        case .fork: throw .unsupported("fork is applied by the scenario builder, between processes")
        case .mprotect(let r, let perms): try mm.mprotect(r.start, r.end, access: access(perms))
        case .mlock(let r): try mm.mlock(r.start, r.end, walker: walker)
        case .munlock(let r): try mm.munlock(r.start, r.end, walker: walker)
        case .mlock2OnFault(let r): try mm.mlock2(r.start, r.end, onFault: true, walker: walker)
        case .madvFree(let r): try mm.madviseFree(r.start, r.end, walker: walker)
        case .madvCold(let r): try madvise { () throws(MadviseError) in try madviseCold(mm, r.start, r.end, walker: walker) }
        case .madvPageout(let r): try madvise { () throws(MadviseError) in try madvisePageout(mm, r.start, r.end, walker: walker) }
        case .madvWillNeed(let r): try madvise { () throws(MadviseError) in try madviseWillNeed(mm, r.start, r.end, walker: walker) }
        case .ksm(let r, let distinct): try mm.ksmMerge(r.start, r.end, distinct: distinct)
        case .clearRefs(let kind):
            do throws(PageWalkError) {
                switch kind {
                case .softDirty: try mm.clearRefs(.softDirty, walker: walker)
                case .young: try mm.clearRefs(.all, walker: walker)
                case .anonymous: try mm.clearRefs(.anonymous, walker: walker)
                case .file: try mm.clearRefs(.file, walker: walker)
                case .hiwaterRSS: try mm.clearRefs(.hiwaterRSS, walker: walker)
                case .all:
                    try mm.clearRefs(.all, walker: walker)
                    try mm.clearRefs(.softDirty, walker: walker)
                }
            } catch {
                throw error.asModelError
            }
        case .munmap(let r): try mm.munmap(r.start, r.end)
        case .touch(let r, let write): try mm.access(r.start, r.end, write: write)
        }
    }
}
