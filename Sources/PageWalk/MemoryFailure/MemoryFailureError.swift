import MemoryModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why `kill_accessing_process()` signalled nobody, with the value it
/// returns.
public enum MemoryFailureError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No entry of the process maps the poisoned frame, or the only one is at
    /// address 0 (`tk.addr` is 0, which the kernel takes as "not found"):
    /// -EFAULT.
    case notMapped(pfn: UInt64)
    /// The process has no address space left (`p->mm` is NULL; the model's
    /// address space was torn down): -EFAULT.
    case noAddressSpace
    /// The walk underneath failed (lock misuse, a model operation).
    case walk(PageWalkError)

    /// The kernel's return value for this failure (negative errno).
    public var errno: Int32 {
        switch self {
        case .notMapped, .noAddressSpace: return -EFAULT
        case .walk(let e): return e.errno
        }
    }

    public var description: String {
        switch self {
        case .notMapped(let pfn): return "no mapping of poisoned pfn 0x\(String(pfn, radix: 16)) (EFAULT)"
        case .noAddressSpace: return "the process has no address space (EFAULT)"
        case .walk(let e): return e.description
        }
    }
}

extension MemoryFailureError: MmapLockRefusing {
    public static func refusing(_ error: ModelError) -> MemoryFailureError { .walk(.model(error)) }
}
