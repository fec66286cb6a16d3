import MemoryModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a dirty-tracking helper of mm/mapping_dirty_helpers.c failed.
public enum MappingDirtyError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The caller's bitmap does not cover file pages `firstIndex ..<
    /// firstIndex + count`: `clean_record_shared_mapping_range()` requires
    /// it to and would write past it (the kernel does not check; the model
    /// refuses with -EINVAL before walking).
    case bitmapDoesNotCover(firstIndex: UInt64, count: UInt64, bitmapFirstIndex: UInt64, bitmapBits: UInt64)
    /// The walk underneath failed (the kernel only WARNs on this).
    case walk(PageWalkError)

    /// The value the model returns for this failure (negative errno).
    public var errno: Int32 {
        switch self {
        case .bitmapDoesNotCover: return -EINVAL
        case .walk(let e): return e.errno
        }
    }

    public var description: String {
        switch self {
        case .bitmapDoesNotCover(let first, let count, let bitmapFirst, let bits):
            return "bitmap of \(bits) bits from page \(bitmapFirst) does not cover pages \(first)..<\(first + count) (EINVAL)"
        case .walk(let e):
            return e.description
        }
    }
}
