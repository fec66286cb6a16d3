/// Something that covers `[start, end)` of an address space: a VMA, or a
/// captured maps line.
public protocol AddressRanged {
    var start: UInt64 { get }
    var end: UInt64 { get }
}

extension VMA: AddressRanged {}

extension RandomAccessCollection where Index == Int {
    /// The first index at which `isAtOrAfter` holds, for a predicate that is
    /// false over a prefix of the collection and true over the rest (the
    /// partition point, by binary search).
    @inlinable
    public func partitionPoint(_ isAtOrAfter: (Element) throws -> Bool) rethrows -> Int {
        var lo = startIndex, hi = endIndex
        while lo < hi {
            let mid = lo + (hi - lo) / 2
            if try isAtOrAfter(self[mid]) { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }
}

extension RandomAccessCollection where Index == Int, Element: AddressRanged {
    /// Models the search in the kernel's `find_vma()`: the index of the first
    /// range ending above `address` (`endIndex` when none does), in ranges
    /// sorted by address and not overlapping.
    @inlinable
    public func firstIndex(endingAfter address: UInt64) -> Int {
        partitionPoint { $0.end > address }
    }

    /// The index of the range containing `address`, nil when it falls in a gap.
    @inlinable
    public func index(containing address: UInt64) -> Int? {
        let i = firstIndex(endingAfter: address)
        return i < endIndex && self[i].start <= address ? i : nil
    }
}
