import MemoryModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a kernel-table writer failed.
public enum KernelPageAttrError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The layout has no cache-inhibit bit to stand for OpenRISC's
    /// `_PAGE_CI` (arm64 expresses caching by memory type, not by a bit);
    /// -EINVAL.
    case noCacheInhibitBit(Architecture)
    /// The walk failed: not a kernel address space, an invalid range, the
    /// lock (the kernel returns the walker's error).
    case walk(PageWalkError)

    /// The value the model returns for this failure (negative errno).
    public var errno: Int32 {
        switch self {
        case .noCacheInhibitBit: return -EINVAL
        case .walk(let e): return e.errno
        }
    }

    public var description: String {
        switch self {
        case .noCacheInhibitBit(let a): return "\(a) entries have no cache-inhibit bit (EINVAL)"
        case .walk(let e): return e.description
        }
    }
}
