import Testing
import MemoryModel
@testable import PageWalk
import TestKit

/// Runs `op` on each walker, each on its own space from `build` (then
/// `prepare`); records an issue when the results, or the `state` lines of
/// the two spaces afterwards, differ; returns the range walker's space and
/// result.
func walkerTwins<R: Equatable>(_ build: () throws -> AddressSpace, state: (AddressSpace) -> [String],
                               sourceLocation: SourceLocation, _ prepare: (AddressSpace) throws -> Void,
                               _ op: (AddressSpace, WalkerKind) throws -> R) throws -> (AddressSpace, R) {
    var out: [(AddressSpace, R, [String])] = []
    for w in [WalkerKind.callback, .range] {
        let mm = try build()
        try prepare(mm)
        let r = try op(mm, w)
        out.append((mm, r, state(mm)))
    }
    #expect(out[0].1 == out[1].1, "walkers disagree: \(out[0].1) vs \(out[1].1)", sourceLocation: sourceLocation)
    #expect(out[0].2 == out[1].2, "\(endStateDifferences(out[0].2, out[1].2).joined(separator: "\n"))",
            sourceLocation: sourceLocation)
    return (out[1].0, out[1].1)
}
