import MemoryModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `flags` of mbind(2) (include/uapi/linux/mempolicy.h) and the
/// internal ones mm/mempolicy.c adds above `MPOL_MF_INTERNAL`.
public struct MempolicyFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `MPOL_MF_STRICT`: every page must follow the policy.
    public static let strict = MempolicyFlags(rawValue: 1 << 0)
    /// `MPOL_MF_MOVE`: move the pages mapped only by this process.
    public static let move = MempolicyFlags(rawValue: 1 << 1)
    /// `MPOL_MF_MOVE_ALL`: move every page (CAP_SYS_NICE).
    public static let moveAll = MempolicyFlags(rawValue: 1 << 2)
    /// `MPOL_MF_VALID`: the flags user space may pass.
    public static let valid: MempolicyFlags = [.strict, .move, .moveAll]
    /// `MPOL_MF_DISCONTIG_OK` (`MPOL_MF_INTERNAL << 0`): holes are allowed.
    public static let discontigOK = MempolicyFlags(rawValue: 1 << 4)
    /// `MPOL_MF_INVERT` (`<< 1`): a folio is misplaced when its node is
    /// *not* in the mask (mbind); without it, when it is (migrate_pages).
    public static let invert = MempolicyFlags(rawValue: 1 << 5)
    /// `MPOL_MF_WRLOCK` (`<< 2`): walk with each VMA write-locked
    /// (`queue_pages_lock_vma_walk_ops`).
    public static let writeLock = MempolicyFlags(rawValue: 1 << 6)

    /// A move was asked for (`MPOL_MF_MOVE | MPOL_MF_MOVE_ALL`).
    var moves: Bool { !isDisjoint(with: [.move, .moveAll]) }
    /// `strictly_unmovable()`: STRICT without a move flag, where the first
    /// misplaced folio ends the walk with -EIO.
    var strictlyUnmovable: Bool { intersection([.strict, .move, .moveAll]) == .strict }
}

/// A NUMA node mask (`nodemask_t`), nodes 0 … 63.
public struct NodeMask: Hashable, Sendable, ExpressibleByArrayLiteral, CustomStringConvertible {
    public var bits: UInt64
    public init(bits: UInt64) { self.bits = bits }
    public init<S: Sequence>(_ nodes: S) where S.Element == Int {
        bits = 0
        for n in nodes where (0..<64).contains(n) { bits |= 1 << UInt64(n) }
    }
    public init(arrayLiteral nodes: Int...) { self.init(nodes) }

    public func contains(_ node: Int) -> Bool { (0..<64).contains(node) && bits & (1 << UInt64(node)) != 0 }
    public var isEmpty: Bool { bits == 0 }
    /// The nodes in increasing order (`for_each_node_mask()`).
    public var nodes: [Int] { (0..<64).filter(contains) }
    /// `nodes_weight()`.
    public var weight: Int { bits.nonzeroBitCount }
    public var description: String { "{" + nodes.map(String.init).joined(separator: ",") + "}" }

    /// `node_remap()`: the node of `to` at the ordinal `node` has in this
    /// mask, modulo the weight of `to`; `node` itself when it is not here
    /// or `to` is empty.
    func remap(_ node: Int, onto to: NodeMask) -> Int {
        guard contains(node), to.weight > 0 else { return node }
        let ordinal = nodes.firstIndex(of: node)!
        return to.nodes[ordinal % to.weight]
    }
}

/// The errors of mbind(2) and migrate_pages(2) the model raises, each with
/// the errno the syscall returns.
public enum MempolicyError: Error, CustomStringConvertible {
    /// -EFAULT: the range has a hole (no MPOL_MF_DISCONTIG_OK), or lies
    /// wholly in one; `address` is where the VMA check found it.
    case fault(address: UInt64)
    /// -EIO: MPOL_MF_STRICT and a misplaced folio found (without a move
    /// flag), or some misplaced folio not moved.
    case io
    /// -EINVAL: bad flags, an unaligned or wrapping range, an empty node
    /// mask where the mode needs one.
    case invalid(String)
    /// The walk itself failed (a misuse or lock error, not an errno of the
    /// syscall).
    case walk(PageWalkError)
    /// The model refused a mutation (migration, VMA policy change).
    case model(ModelError)

    /// The errno, positive (`EFAULT`, `EIO`, `EINVAL`); 0 for the model's
    /// own failures, which the kernel has no counterpart for.
    public var errno: Int32 {
        switch self {
        case .fault: return EFAULT
        case .io: return EIO
        case .invalid: return EINVAL
        case .walk, .model: return 0
        }
    }

    public var description: String {
        switch self {
        case .fault(let a): return "EFAULT: hole in the range near 0x\(String(a, radix: 16))"
        case .io: return "EIO: misplaced folios"
        case .invalid(let why): return "EINVAL: \(why)"
        case .walk(let e): return "walk: \(e)"
        case .model(let e): return "model: \(e)"
        }
    }
}

/// A folio queue_pages isolated for migration: its head frame, the address
/// of its first page in the walked process, its node and size.
public struct QueuedFolio: Hashable, Sendable, CustomStringConvertible {
    public let pfn: UInt64
    public let address: UInt64
    public let node: Int
    public let pages: Int
    public var description: String { "pfn 0x\(String(pfn, radix: 16)) at 0x\(String(address, radix: 16)) node \(node) \(pages)p" }
}

/// What `queue_pages_range()` leaves: the folios isolated onto the
/// migration list (with their isolation references) and `nr_failed`, the
/// misplaced folios that could not be queued.
public struct QueuedPages {
    /// The migration list, in walk order.
    public internal(set) var folios: [(folio: Folio, address: UInt64)] = []
    /// `qp->nr_failed`.
    public internal(set) var failed = 0

    public var queued: [QueuedFolio] {
        folios.map { QueuedFolio(pfn: $0.folio.pfn, address: $0.address, node: $0.folio.node, pages: $0.folio.pageCount) }
    }
}

/// What one mbind(2) or migrate_pages(2) call did, besides its return code.
public struct MempolicyOutcome: Hashable, Sendable {
    /// The folios isolated by the walks, in order (their state then).
    public internal(set) var queued: [QueuedFolio] = []
    /// Those moved, with the node each went to.
    public internal(set) var migrated: [QueuedFolio] = []
    /// Misplaced folios the walks could not queue plus queued ones that
    /// did not move: migrate_pages(2)'s return value (mbind(2) only asks
    /// whether it is non-zero, for STRICT's -EIO).
    public internal(set) var failed = 0
}

extension MempolicyError: MmapLockRefusing {
    public static func refusing(_ error: ModelError) -> MempolicyError { .model(error) }
}
