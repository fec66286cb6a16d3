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
    /// arm64's writers need arm64 tables; -EINVAL.
    case notArm64(Architecture)
    /// arm64's `pageattr_pud_entry()` or `pageattr_pmd_entry()` met a block
    /// leaf the range covers only in part, at `address` (the WARN and
    /// -EINVAL; the caller should have split it first). Entries before it
    /// were rewritten.
    case partialBlock(address: UInt64)
    /// The walk failed: not a kernel address space, an invalid range, the
    /// lock (the kernel returns the walker's error).
    case walk(PageWalkError)

    /// The value the model returns for this failure (negative errno).
    public var errno: Int32 {
        switch self {
        case .noCacheInhibitBit, .notArm64, .partialBlock: return -EINVAL
        case .walk(let e): return e.errno
        }
    }

    public var description: String {
        switch self {
        case .noCacheInhibitBit(let a): return "\(a) entries have no cache-inhibit bit (EINVAL)"
        case .notArm64(let a): return "arm64 page attributes on \(a) tables (EINVAL)"
        case .partialBlock(let a): return "block leaf at 0x\(String(a, radix: 16)) only partly in the range (EINVAL)"
        case .walk(let e): return e.description
        }
    }
}
