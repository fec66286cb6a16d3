import MemoryModel

/// mm/mempolicy.c's page queueing (`queue_pages_range()`) and its two
/// callers, mbind(2) and migrate_pages(2), on both walkers: the update
/// walk, or `queue_pages_walk_ops` / `queue_pages_lock_vma_walk_ops` as
/// the kernel writes them (`QueuePagesWalkOps.swift`).
public enum Mempolicy {
    /// `queue_pages_range()`: walks `[start, end)` and isolates the
    /// misplaced folios onto a migration list (see `QueuedPages`). A folio
    /// is misplaced when its node is in `nodes`, or with `.invert` when it
    /// is not. Caller holds the mmap lock: for write with `.writeLock`
    /// (each VMA is then write-locked as it is walked), else for read. The
    /// caller owns the isolated folios: migrate them (`migrate`) or give
    /// them back (`putBack`).
    ///
    /// Throws `.fault` for a hole without `.discontigOK` (or a range in no
    /// VMA), `.io` when `.strict` without a move flag meets a misplaced
    /// folio; otherwise returns the list and the count of misplaced folios
    /// that could not be queued.
    public static func queuePages(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64, nodes: NodeMask,
                                  flags: MempolicyFlags, walker: WalkerKind = .range) throws(MempolicyError) -> QueuedPages {
        var state = QueuePagesState(mm, start, end, nodes: nodes, flags: flags)
        do throws(MempolicyError) {
            switch walker {
            case .range: try rangeQueue(mm, &state)
            case .callback: try callbackQueue(mm, &state)
            }
        } catch {
            putBack(mm, state.list)
            throw error
        }
        return state.list
    }

    /// `putback_movable_pages()`: the isolated folios back on their lists.
    public static func putBack(_ mm: AddressSpace, _ list: QueuedPages) {
        for (f, _) in list.folios {
            if f.test(.hugetlb) { mm.putBackHugetlb(f) } else { mm.putBackOnLRU(f) }
        }
    }

    /// `migrate_pages()` of the list, each folio to the node `target`
    /// chooses for it; returns the folios moved (as they were, with the
    /// node they went to) and how many did not move. Caller holds no lock
    /// of `mm`.
    static func migrate(_ mm: AddressSpace, _ list: QueuedPages,
                        target: (Folio, UInt64) -> Int) throws(MempolicyError) -> (moved: [QueuedFolio], failed: Int) {
        var moved: [QueuedFolio] = [], failed = 0
        var rest = list.folios[...]
        while let (f, a) = rest.popFirst() {
            let was = QueuedFolio(pfn: f.pfn, address: a, node: target(f, a), pages: f.pageCount)
            do throws(ModelError) {
                if try mm.migrateIsolatedFolio(f, at: a, toNode: was.node) { moved.append(was) } else { failed += 1 }
            } catch {
                putBack(mm, QueuedPages(folios: Array(rest), failed: 0))
                throw .model(error)
            }
        }
        return (moved, failed)
    }

    /// The nodes a policy names (the `nmask` mbind(2) is given).
    static func nodeMask(of policy: MemoryPolicy) -> NodeMask {
        switch policy {
        case .default, .local: return []
        case .bind(let n), .interleave(let n), .weightedInterleave(let n): return NodeMask(n)
        case .preferred(let n): return [n]
        }
    }

    /// The node `alloc_migration_target_by_mpol()` gives a folio under
    /// `policy`, for a task running on node 0 with the default task
    /// policy: the local node when the policy allows it, else its first
    /// node; interleaving by the folio's page index (`ilx`) over the
    /// policy's nodes.
    static func targetNode(_ policy: MemoryPolicy, _ folio: Folio, _ address: UInt64) -> Int {
        switch policy {
        case .default, .local: return 0
        case .preferred(let n): return n
        case .bind(let n): return n.contains(0) ? 0 : (n.min() ?? 0)
        case .interleave(let n), .weightedInterleave(let n):
            let nodes = NodeMask(n).nodes
            guard !nodes.isEmpty else { return 0 }
            return nodes[Int((address >> Geometry.pageShift) >> UInt64(folio.order)) % nodes.count]
        }
    }

    /// Models mbind(2) (`do_mbind()`, Linux 6.18) over `[start, start +
    /// len)`: `policy` set on the VMAs of the range (split at its edges,
    /// merged after), and with MPOL_MF_MOVE / MOVE_ALL the folios not on
    /// the policy's nodes moved to them. Under the mmap write lock, the
    /// walk write-locking each VMA (`queue_pages_lock_vma_walk_ops`); the
    /// folios move after the lock is dropped.
    ///
    /// Throws `.invalid` (flags outside MPOL_MF_VALID, an unaligned start,
    /// a wrapping range, a mode that needs nodes given none of this
    /// machine's), `.fault` for a hole (holes are fine for MPOL_DEFAULT
    /// only),
    /// `.io` with MPOL_MF_STRICT when a misplaced folio is found without a
    /// move flag, or some misplaced folio could not be moved. MOVE_ALL is
    /// taken as coming from a CAP_SYS_NICE caller.
    @discardableResult
    public static func mbind(_ mm: AddressSpace, _ start: UInt64, _ len: UInt64, policy: MemoryPolicy,
                             flags userFlags: MempolicyFlags, walker: WalkerKind = .range) throws(MempolicyError) -> MempolicyOutcome {
        guard userFlags.isSubset(of: .valid) else { throw .invalid("flags 0x\(String(userFlags.rawValue, radix: 16)) outside MPOL_MF_VALID") }
        guard start & Geometry.pageOffsetMask == 0 else { throw .invalid("start 0x\(String(start, radix: 16)) is not page aligned") }
        var flags = userFlags
        if policy == .default { flags.remove(.strict) }
        let aligned = (len &+ Geometry.pageOffsetMask) & ~Geometry.pageOffsetMask
        let end = start &+ aligned
        guard end >= start, aligned >= len else { throw .invalid("the range wraps") }
        if end == start { return MempolicyOutcome() }
        let nodes = nodeMask(of: policy)
        // mpol_new() and mpol_set_nodemask(): MPOL_DEFAULT is no policy at
        // all, and then holes are fine; MPOL_LOCAL takes no nodes; the
        // other modes need one of this machine's.
        switch policy {
        case .default: flags.insert(.discontigOK)
        case .local: break
        default:
            guard !nodes.isEmpty, !NodeMask(nodes.nodes.filter { $0 < mm.memory.nodeCount }).isEmpty else {
                throw .invalid("policy \(policy) names no node of this machine (\(mm.memory.nodeCount) nodes)")
            }
        }
        var outcome = MempolicyOutcome()
        let list = try mm.withMmapWriteLock { (_) throws(MempolicyError) -> QueuedPages in
                let list = try queuePages(mm, start, end, nodes: nodes, flags: flags.union([.invert, .writeLock]), walker: walker)
                do throws(ModelError) {
                    try mm.setVMAPolicy(policy, start, end)
                } catch {
                    putBack(mm, list)
                    throw .model(error)
                }
                return list
        }
        outcome.queued = list.queued
        var failed = list.failed
        if !list.folios.isEmpty {
            let (moved, notMoved) = try migrate(mm, list) { f, a in targetNode(policy, f, a) }
            outcome.migrated = moved
            failed += notMoved
        }
        outcome.failed = failed
        if failed > 0 && flags.contains(.strict) { throw .io }
        return outcome
    }

    /// Models migrate_pages(2) for this process (`do_migrate_pages()`):
    /// for each source node of `from` paired with a destination of `to`
    /// (`node_remap()`, in the kernel's order, a node that is its own
    /// destination not moving), the folios on the source node anywhere in
    /// the address space are queued (`queue_pages_walk_ops`, under the
    /// mmap read lock, holes allowed) and moved. `moveAll` is
    /// CAP_SYS_NICE (MPOL_MF_MOVE_ALL, shared folios too). Returns how
    /// many folios were not moved, with what moved. Throws `.invalid`
    /// when `to` has none of this machine's nodes.
    @discardableResult
    public static func migratePages(_ mm: AddressSpace, from: NodeMask, to requested: NodeMask, moveAll: Bool = false,
                                    walker: WalkerKind = .range) throws(MempolicyError) -> MempolicyOutcome {
        let to = NodeMask(requested.nodes.filter { $0 < mm.memory.nodeCount })
        guard !to.isEmpty else { throw .invalid("no destination node of this machine in \(requested)") }
        let flags: MempolicyFlags = [moveAll ? .moveAll : .move, .discontigOK]
        var outcome = MempolicyOutcome()
        var tmp = from
        while !tmp.isEmpty {
            var pair: (source: Int, dest: Int)?
            for s in tmp.nodes {
                if from.weight != to.weight && to.contains(s) { continue }
                let d = from.remap(s, onto: to)
                if s == d { continue }
                pair = (s, d)
                if !tmp.contains(d) { break }
            }
            guard let (source, dest) = pair else { break }
            tmp.bits &= ~(1 << UInt64(source))
            // migrate_to_node()
            let list: QueuedPages? = try mm.withMmapReadLock { (_) throws(MempolicyError) -> QueuedPages? in
                guard let first = mm.vmas.first else { return nil }
                return try queuePages(mm, first.start, mm.geometry.userAddressLimit, nodes: [source], flags: flags, walker: walker)
            }
            guard let list else { continue }
            outcome.queued += list.queued
            let (moved, notMoved) = try migrate(mm, list) { _, _ in dest }
            outcome.migrated += moved
            outcome.failed += list.failed + notMoved
        }
        return outcome
    }
}
