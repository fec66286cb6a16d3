import MemoryModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a madvise() behaviour built on the walker (guard install and
/// remove, cold, pageout, willneed) failed, with the value the syscall
/// returns.
public enum MadviseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// An unaligned start or a range that wraps (-EINVAL).
    case invalidRange(start: UInt64, end: UInt64)
    /// A VMA of the range does not allow the behaviour (-EINVAL).
    case invalidVMA(address: UInt64, reason: String)
    /// Part of the range is not mapped (-ENOMEM); the mapped parts were
    /// still processed, as `madvise_walk_vmas()` does.
    case unmapped(address: UInt64)
    /// Raced by faults too often; the kernel restarts the syscall
    /// (-ERESTARTNOINTR, never seen by user space).
    case restartSyscall
    /// The walk underneath failed (lock misuse, a table allocation, a
    /// model operation).
    case walk(PageWalkError)

    /// The kernel's return value for this failure (negative errno).
    public var errno: Int32 {
        switch self {
        case .invalidRange, .invalidVMA: return -EINVAL
        case .unmapped: return -ENOMEM
        case .restartSyscall: return -ERESTARTNOINTR
        case .walk(let e): return e.errno
        }
    }

    public var description: String {
        switch self {
        case .invalidRange(let s, let e): return "invalid madvise range 0x\(String(s, radix: 16))-0x\(String(e, radix: 16))"
        case .invalidVMA(let a, let r): return "VMA at 0x\(String(a, radix: 16)): \(r)"
        case .unmapped(let a): return "no VMA at 0x\(String(a, radix: 16))"
        case .restartSyscall: return "raced by faults; restart the call"
        case .walk(let e): return e.description
        }
    }
}

extension MadviseError: MmapLockRefusing {
    public static func refusing(_ error: ModelError) -> MadviseError { .walk(.model(error)) }
}
