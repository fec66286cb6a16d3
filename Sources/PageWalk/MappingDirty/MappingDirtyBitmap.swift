/// The caller's record of `clean_record_shared_mapping_range()`: one bit
/// per file page from `firstIndex` (`bitmap_pgoff`), and the first and one
/// past the last bit set (`*start`, `*end`, relative to `firstIndex`;
/// `start >= end` means none set). The helper sets the bit of each page
/// whose PTE it cleans and widens `start ..< end`; bits already set stay.
public struct MappingDirtyBitmap: Equatable, Sendable {
    /// The file page of bit 0 (`bitmap_pgoff`).
    public let firstIndex: UInt64
    /// How many bits the bitmap holds.
    public let bitCount: UInt64
    /// The bits, 64 per word (`unsigned long *bitmap`).
    public private(set) var words: [UInt64]
    /// The first set bit (`*start`).
    public var start: UInt64
    /// One past the last set bit (`*end`).
    public var end: UInt64

    /// An empty bitmap of `bitCount` bits for the pages from `firstIndex`.
    public init(firstIndex: UInt64, bitCount: UInt64) {
        self.firstIndex = firstIndex
        self.bitCount = bitCount
        words = Array(repeating: 0, count: Int((bitCount + 63) / 64))
        start = 0
        end = 0
    }

    /// Whether the bit of file page `index` is set.
    public func contains(page index: UInt64) -> Bool {
        guard index >= firstIndex, index - firstIndex < bitCount else { return false }
        let bit = index - firstIndex
        return words[Int(bit / 64)] & (1 << (bit % 64)) != 0
    }

    /// The file pages whose bits are set, in order.
    public var pages: [UInt64] {
        (0..<bitCount).filter { words[Int($0 / 64)] & (1 << ($0 % 64)) != 0 }.map { firstIndex + $0 }
    }

    /// Whether the bitmap has a bit for every page of `first ..< first + count`.
    func covers(_ first: UInt64, count: UInt64) -> Bool {
        first >= firstIndex && count <= bitCount && first - firstIndex <= bitCount - count
    }

    /// `__set_bit()` for file page `index`, widening the recorded range.
    mutating func record(page index: UInt64) {
        let bit = index - firstIndex
        words[Int(bit / 64)] |= 1 << (bit % 64)
        start = Swift.min(start, bit)
        end = Swift.max(end, bit + 1)
    }
}
