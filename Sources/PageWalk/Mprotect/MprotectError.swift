import MemoryModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why the PROT_NONE check of `mprotect()` failed, with the value the
/// syscall returns.
public enum MprotectError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `pfn_modify_allowed()` refused `pfn`, mapped at `address`, the new
    /// PROT_NONE protection (-EACCES). The kernel reports only the errno;
    /// the model keeps where the walk stopped.
    case pfnModifyRefused(address: UInt64, pfn: UInt64)
    /// The walk underneath failed (lock misuse, a split).
    case walk(PageWalkError)

    /// The kernel's return value for this failure (negative errno).
    public var errno: Int32 {
        switch self {
        case .pfnModifyRefused: return -EACCES
        case .walk(let e): return e.errno
        }
    }

    public var description: String {
        switch self {
        case .pfnModifyRefused(let a, let pfn):
            return "PROT_NONE refused for pfn 0x\(String(pfn, radix: 16)) at 0x\(String(a, radix: 16)) (EACCES)"
        case .walk(let e):
            return e.description
        }
    }
}

extension MprotectError: MmapLockRefusing {
    public static func refusing(_ error: ModelError) -> MprotectError { .walk(.model(error)) }
}
