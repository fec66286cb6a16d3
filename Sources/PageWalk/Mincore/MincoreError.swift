import MemoryModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why `mincore()` failed, with the value the syscall returns.
public enum MincoreError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The start is not page aligned (-EINVAL).
    case unalignedStart(UInt64)
    /// `[start, start + length)` is not a user-space range: it wraps or
    /// ends above the user address limit (`access_ok()` fails, -ENOMEM).
    case outsideUserSpace(start: UInt64, length: UInt64)
    /// No VMA holds `address` (`vma_lookup()` fails, -ENOMEM). The entries of
    /// the pages before it were already copied to the caller's vector.
    case unmapped(address: UInt64)
    /// The vector of `bytes` bytes cannot be written (-EFAULT: the kernel's
    /// `access_ok(vec, pages)` or `copy_to_user()`). The model collects at
    /// most `Mincore.maxVectorBytes`; a longer vector is a buffer the caller
    /// cannot have.
    case badVector(bytes: UInt64)
    /// The walk underneath failed (lock misuse, a model operation).
    case walk(PageWalkError)

    /// The kernel's return value for this failure (negative errno).
    public var errno: Int32 {
        switch self {
        case .unalignedStart: return -EINVAL
        case .outsideUserSpace, .unmapped: return -ENOMEM
        case .badVector: return -EFAULT
        case .walk(let e): return e.errno
        }
    }

    public var description: String {
        switch self {
        case .unalignedStart(let s):
            return "mincore start 0x\(String(s, radix: 16)) is not page aligned (EINVAL)"
        case .outsideUserSpace(let s, let l):
            return "mincore range 0x\(String(s, radix: 16)) + 0x\(String(l, radix: 16)) is not in user space (ENOMEM)"
        case .unmapped(let a):
            return "mincore: no VMA at 0x\(String(a, radix: 16)) (ENOMEM)"
        case .badVector(let n):
            return "mincore: a vector of \(n) bytes cannot be written (EFAULT)"
        case .walk(let e):
            return e.description
        }
    }
}

extension MincoreError: MmapLockRefusing {
    public static func refusing(_ error: ModelError) -> MincoreError { .walk(.model(error)) }
}
