import MemoryModel

/// Why `DAMONVaddr.migrate` failed.
public enum DAMONMigrateError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The walk failed (the lock, an invalid range, a torn-down address
    /// space).
    case walk(PageWalkError)
    /// A destination node the machine does not have (the kernel's sysfs
    /// refuses it before the scheme runs: -EINVAL).
    case noSuchNode(Int)
    /// `dests` gives a different number of weights than nodes.
    case weightsMismatch(nodes: Int, weights: Int)
    /// The model failed while migrating a folio (a new folio could not be
    /// had on the target node).
    case model(ModelError)

    public var description: String {
        switch self {
        case .walk(let e): return e.description
        case .noSuchNode(let n): return "node \(n) does not exist (EINVAL)"
        case .weightsMismatch(let n, let w): return "\(n) destination nodes but \(w) weights (EINVAL)"
        case .model(let e): return "\(e)"
        }
    }
}
