import MemoryModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `ERESTARTNOINTR`: the kernel's own errno (include/linux/errno.h), never
/// seen by user space: the syscall is restarted instead.
public let ERESTARTNOINTR: Int32 = 513

/// Why a walk did not run or did not finish.
///
/// The kernel's walkers return a negative errno; the model throws a typed
/// error instead and keeps the errno (`errno`, negative, as the kernel
/// returns it) so callers can compare with Linux. A handler's own negative
/// return comes back as `.handlerError` carrying that value.
public enum PageWalkError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `start >= end`, or a range outside the VMA (-EINVAL).
    case invalidRange(start: UInt64, end: UInt64)
    /// `check_ops_valid()` refused the ops: `install_pte` is reserved to
    /// `walkPageRangeMM` (-EINVAL).
    case installNotPermitted
    /// `install_pte` over a hugetlb VMA (-EINVAL from `__walk_page_range()`).
    case hugetlbInstall(vmaStart: UInt64)
    /// The VMA is not one of the address space's, or a kernel walk was
    /// given a user address space (-EINVAL).
    case wrongAddressSpace(String)
    /// The lock the walk mode requires is not held (lockdep's
    /// `mmap_assert_locked()` splat, made a clear error).
    case lockNotHeld(String)
    /// A page table could not be allocated while installing (-ENOMEM from
    /// `__pte_alloc()` and friends); what was installed before stays.
    case allocationFailed(String)
    /// A handler returned this negative value; the walk stopped there.
    case handlerError(Int32)
    /// A model operation the walk needed (a THP split) failed.
    case model(ModelError)
    /// An update walk used against its rules: an update that does not apply
    /// to the entry (a marker on a present page, a PMD split of a PTE), a
    /// walk iterated twice (-EINVAL).
    case misuse(String)
    /// An update through an entry handle whose table lock the walk no
    /// longer holds (-EINVAL).
    case handleOutlivedLock(String)

    /// The kernel's return value for this failure (negative errno).
    public var errno: Int32 {
        switch self {
        case .invalidRange, .installNotPermitted, .hugetlbInstall, .wrongAddressSpace: return -EINVAL
        case .allocationFailed: return -ENOMEM
        case .lockNotHeld: return -EDEADLK   // no errno in the kernel: lockdep warns
        case .handlerError(let e): return e
        case .model, .misuse, .handleOutlivedLock: return -EINVAL
        }
    }

    public var description: String {
        switch self {
        case .invalidRange(let s, let e): return "invalid walk range 0x\(String(s, radix: 16))-0x\(String(e, radix: 16))"
        case .installNotPermitted: return "install_pte is only permitted through walkPageRangeMM"
        case .hugetlbInstall(let a): return "install_pte over the hugetlb VMA at 0x\(String(a, radix: 16))"
        case .wrongAddressSpace(let s): return "wrong address space: \(s)"
        case .lockNotHeld(let s): return s
        case .allocationFailed(let s): return "page-table allocation failed: \(s)"
        case .handlerError(let e): return "walk handler returned \(e)"
        case .model(let e): return "model error during walk: \(e)"
        case .misuse(let s): return "update walk misuse: \(s)"
        case .handleOutlivedLock(let s): return "entry handle used without its lock: \(s)"
        }
    }
}

extension PageWalkError {
    /// The failure as a model operation reports it: a model error as it
    /// was, any other walk failure as an invalid argument naming it.
    package var asModelError: ModelError {
        if case .model(let e) = self { return e }
        return .invalidArgument(name: "walk", reason: description)
    }
}

extension PageWalkError: MmapLockRefusing {
    public static func refusing(_ error: ModelError) -> PageWalkError { .model(error) }
}
