/// Which walker a walker user runs on.
public enum WalkerKind: Sendable, Hashable, CaseIterable {
    /// The range walker (`for entry in mm.walk(...)`, `withUpdateWalk`):
    /// the product.
    case range
    /// The callback walker (`walkPageRange` with `MMWalkOps`): the twin
    /// written as the kernel writes the user, and the benchmark baseline.
    case callback
}
