import MemoryModel

/// Where DAMOS's migrate actions (`DAMOS_MIGRATE_HOT`, `DAMOS_MIGRATE_COLD`)
/// send folios: `s->target_nid` alone, or a weighted set of nodes
/// (`struct damos_migrate_dests`) across which folios are interleaved by
/// their index in the VMA, as `weighted_interleave_nid()` does.
public struct DAMOSMigrateDests: Hashable, Sendable {
    /// `node_id_arr`.
    public var nodes: [Int]
    /// `weight_arr`, one per node.
    public var weights: [UInt32]

    /// Only `target`, the scheme's `target_nid`; nil is `NUMA_NO_NODE`,
    /// to which nothing migrates.
    public static func targetNode(_ target: Int?) -> DAMOSMigrateDests {
        DAMOSMigrateDests(nodes: target.map { [$0] } ?? [], weights: [], single: true)
    }

    /// Folios interleaved across `nodes` by `weights` (the same count).
    public init(nodes: [Int], weights: [UInt32]) { self.init(nodes: nodes, weights: weights, single: false) }

    private init(nodes: [Int], weights: [UInt32], single: Bool) {
        self.nodes = nodes; self.weights = weights; self.useTargetNode = single
    }

    /// `dests->nr_dests == 0`: one migration list, for the target node.
    let useTargetNode: Bool

    /// How many migration lists the walk fills.
    var listCount: Int { useTargetNode ? 1 : nodes.count }

    /// The node list `i` migrates to; nil for `NUMA_NO_NODE`.
    func node(ofList i: Int) -> Int? { useTargetNode ? nodes.first : nodes[i] }

    /// `damos_va_migrate_dests_add()`'s choice for a folio of `order` and
    /// node `folioNode` met at `addr` of a VMA starting at `vmaStart` with
    /// offset `pgoff`: the list to isolate it onto, or nil when it stays
    /// (weights all zero, or already on the chosen node).
    func list(order: Int, folioNode: Int, addr: UInt64, vmaStart: UInt64, pgoff: UInt64) -> Int? {
        if useTargetNode { return 0 }
        let total = weights.reduce(UInt64(0)) { $0 + UInt64($1) }
        guard total > 0 else { return nil }
        let ilx = (pgoff >> UInt64(order)) &+ ((addr - vmaStart) >> UInt64(Geometry.pageShift + order))
        var target = ilx % total
        var i = 0
        while i < nodes.count - 1, target >= UInt64(weights[i]) { target -= UInt64(weights[i]); i += 1 }
        return folioNode == nodes[i] ? nil : i
    }
}
