/// Errors of the memory model: misuse of its API or a request it cannot
/// satisfy. Each case names what was wrong; nothing is left half-changed.
public enum ModelError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidGeometry(String)
    /// An argument that is not acceptable, with the argument's name.
    case invalidArgument(name: String, reason: String)
    case unaligned(name: String, value: UInt64, alignment: UInt64)
    case invalidRange(start: UInt64, end: UInt64, reason: String)
    /// No VMA covers the address (the kernel's -EFAULT / -ENOMEM).
    case noVMA(address: UInt64)
    case overlappingVMA(start: UInt64, end: UInt64, existingStart: UInt64, existingEnd: UInt64)
    /// The operation does not apply to this VMA kind (-EINVAL in the kernel).
    case wrongVMAKind(address: UInt64, reason: String)
    /// Populating would exceed the physical memory budget.
    case outOfMemory(requestedBytes: UInt64, budgetBytes: UInt64)
    case swapFull(slots: Int)
    case unsupported(String)
    /// A lock the operation requires is not held (lockdep's assertion).
    case lockNotHeld(String)
    /// The calling thread asked for a lock it already holds in a
    /// conflicting mode, which in Linux deadlocks.
    case lockConflict(String)
    /// The address space was torn down.
    case tornDown
    /// Populating met a page whose fault fails, a guard or poison marker
    /// (`__mm_populate()` gets -EFAULT; mlock(2) reports -ENOMEM). What
    /// came before it is populated, the rest is not.
    case faultFailed(address: UInt64, reason: String)
    /// An injected failure (tests): allocation of a page table failed.
    case allocationFailed(String)

    public var description: String {
        switch self {
        case .invalidGeometry(let s): return "invalid geometry: \(s)"
        case .invalidArgument(let n, let r): return "invalid \(n): \(r)"
        case .unaligned(let n, let v, let a): return "\(n) \(hex(v)) is not aligned to \(hex(a))"
        case .invalidRange(let s, let e, let r): return "invalid range \(hex(s))-\(hex(e)): \(r)"
        case .noVMA(let a): return "no VMA covers \(hex(a))"
        case .overlappingVMA(let s, let e, let es, let ee):
            return "VMA \(hex(s))-\(hex(e)) overlaps existing VMA \(hex(es))-\(hex(ee))"
        case .wrongVMAKind(let a, let r): return "VMA at \(hex(a)): \(r)"
        case .outOfMemory(let r, let b): return "out of memory: \(r) bytes requested, budget \(b) bytes"
        case .swapFull(let n): return "swap full (\(n) slots)"
        case .unsupported(let s): return "unsupported: \(s)"
        case .lockNotHeld(let s): return "lock not held: \(s)"
        case .lockConflict(let s): return "lock conflict: \(s)"
        case .tornDown: return "address space was torn down"
        case .faultFailed(let a, let r): return "fault at \(hex(a)) fails: \(r)"
        case .allocationFailed(let s): return "allocation failed: \(s)"
        }
    }
}

@inline(__always)
func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
