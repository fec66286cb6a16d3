import MemoryModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why unsharing the zero pages of a KVM guest's address space failed
/// (arch/s390/mm/gmap_helpers.c), with the value the kernel returns.
public enum GmapError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A shared zero page in a mapping that is not copy-on-write (a shared
    /// mixed map, FS DAX): `FAULT_FLAG_UNSHARE` cannot replace it (-EFAULT).
    case zeroPageOutsideCOW(address: UInt64)
    /// The unshare fault at `address` failed (`VM_FAULT_OOM` gives
    /// -ENOMEM; the model reports every failure of its fault so).
    case unshareFailed(address: UInt64, ModelError)
    /// The walk underneath failed (lock misuse, a split).
    case walk(PageWalkError)

    /// The kernel's return value for this failure (negative errno).
    public var errno: Int32 {
        switch self {
        case .zeroPageOutsideCOW: return -EFAULT
        case .unshareFailed: return -ENOMEM
        case .walk(let e): return e.errno
        }
    }

    public var description: String {
        switch self {
        case .zeroPageOutsideCOW(let a): return "shared zero page outside a COW mapping at 0x\(String(a, radix: 16)) (EFAULT)"
        case .unshareFailed(let a, let e): return "unshare fault at 0x\(String(a, radix: 16)) failed: \(e) (ENOMEM)"
        case .walk(let e): return e.description
        }
    }
}

extension GmapError: MmapLockRefusing {
    public static func refusing(_ error: ModelError) -> GmapError { .walk(.model(error)) }
}
