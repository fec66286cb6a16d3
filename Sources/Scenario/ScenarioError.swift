// Errors raised while reading and validating a scenario.
//
// Every case carries the JSON path of the offending value, written the way a
// person would point at it: `processes[1].vmas[3].end`, `levels`,
// `processes[0].ops[7].child`. The empty path means the document itself.
// `description` always starts with the path, then says what is wrong.

/// Why a scenario document was rejected. Nothing is built from a document
/// that fails validation.
public enum ScenarioError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes are not JSON. `offset` is the byte offset (0-based), `line`
    /// and `column` are 1-based (the column counts characters).
    case invalidJSON(offset: Int, line: Int, column: Int, reason: String)
    /// `parse(contentsOf:)` could not read the file.
    case unreadableFile(path: String, reason: String)
    /// A required field is absent (`path` names the field).
    case missingField(path: String)
    /// A value has the wrong JSON type. `expected` describes what is
    /// accepted, `found` the JSON type that was there.
    case wrongType(path: String, expected: String, found: String)
    /// An object holds a key the format does not define (typos are never
    /// ignored). `allowed` lists the keys that object may hold.
    case unknownKey(path: String, allowed: [String])
    /// An object holds the same key twice.
    case duplicateKey(path: String)
    /// A name from a closed set (architecture, VMA kind, op, flag, huge page
    /// size, policy mode, clear_refs kind) is not one of `allowed`.
    case unknownValue(path: String, value: String, allowed: [String])
    /// The value is well-typed but not acceptable; `reason` says why.
    case invalidValue(path: String, reason: String)
    /// The value exists in the format but not on this architecture or
    /// paging configuration (5 levels on arm64, a 64K huge page on x86_64...).
    case unsupportedOnArchitecture(path: String, value: String, architecture: ScenarioDocument.Architecture)
    /// An address (or size) is not a multiple of `alignment`.
    case unalignedAddress(path: String, address: UInt64, alignment: UInt64)
    /// A range whose start is not below its end (or whose size is zero).
    case emptyRange(path: String, start: UInt64, end: UInt64)
    /// An address beyond the user address space: `limit` is the first
    /// address user space cannot use (the kernel's TASK_SIZE).
    case beyondAddressSpace(path: String, address: UInt64, limit: UInt64)
    /// The VMA at `path` overlaps the VMA at `other`, which covers
    /// `otherStart..<otherEnd`.
    case overlappingVMAs(path: String, other: String, otherStart: UInt64, otherEnd: UInt64)
    /// An operation's range is not covered by contiguous VMAs of its process
    /// (as they are at that point of the op list); `address` is the first
    /// address that no VMA covers.
    case outsideVMAs(path: String, address: UInt64)
    /// The operation cannot apply to the VMA at `vma` (as declared), e.g.
    /// `thp` on a hugetlb VMA or `remap_pfn` on an anonymous one.
    case incompatibleOperation(path: String, op: String, vma: String, reason: String)
    /// Two processes declare the same pid; `first` is the earlier one.
    case duplicatePID(path: String, pid: Int, first: String)
    /// A pid referenced by `parent` or by a `fork` op is not declared.
    case undeclaredPID(path: String, pid: Int)
    /// A process is the child of more than one `fork` op; `first` is the
    /// earlier fork.
    case duplicateFork(path: String, pid: Int, first: String)
    /// `parent` and `fork` do not agree, or a child is declared in a way a
    /// fork cannot produce.
    case inconsistentParent(path: String, reason: String)
    /// The populating operations, summed up to and including the one at
    /// `path`, need `needed` bytes; the document allows `budget`.
    case budgetExceeded(path: String, needed: UInt64, budget: UInt64)
    /// The swap-out operations up to and including the one at `path` need
    /// `needed` swap slots; the document provides `available`.
    case swapExceeded(path: String, needed: UInt64, available: UInt64)
    /// The memory model refused the operation at `path` while building
    /// (its `ModelError`, as text); nothing built is kept.
    case buildFailed(path: String, reason: String)

    /// The JSON path the error points at ("" is the whole document). For
    /// `invalidJSON` it is empty (the position is in the case); for
    /// `unreadableFile` it is the file's path.
    public var path: String {
        switch self {
        case .invalidJSON: return ""
        case .unreadableFile(let p, _), .missingField(let p), .wrongType(let p, _, _),
             .unknownKey(let p, _), .duplicateKey(let p), .unknownValue(let p, _, _),
             .invalidValue(let p, _), .unsupportedOnArchitecture(let p, _, _),
             .unalignedAddress(let p, _, _), .emptyRange(let p, _, _),
             .beyondAddressSpace(let p, _, _), .overlappingVMAs(let p, _, _, _),
             .outsideVMAs(let p, _), .incompatibleOperation(let p, _, _, _),
             .duplicatePID(let p, _, _), .undeclaredPID(let p, _),
             .duplicateFork(let p, _, _), .inconsistentParent(let p, _),
             .budgetExceeded(let p, _, _), .swapExceeded(let p, _, _), .buildFailed(let p, _):
            return p
        }
    }

    /// Why the value at `path` was rejected, without the path.
    public var reason: String {
        switch self {
        case .invalidJSON(let offset, let line, let column, let reason):
            return "invalid JSON at line \(line), column \(column) (byte \(offset)): \(reason)"
        case .unreadableFile(_, let reason):
            return "cannot read the scenario file: \(reason)"
        case .missingField(let p):
            if p.hasSuffix(".end") || p == "end" {
                return "missing required field (give end or size)"
            }
            return "missing required field"
        case .wrongType(_, let expected, let found):
            return "expected \(expected), found \(found)"
        case .unknownKey(_, let allowed):
            return "unknown key (allowed here: \(allowed.joined(separator: ", ")))"
        case .duplicateKey:
            return "key appears more than once in the same object"
        case .unknownValue(_, let value, let allowed):
            return "unknown value \(quoted(value)) (expected one of: \(allowed.joined(separator: ", ")))"
        case .invalidValue(_, let reason):
            return reason
        case .unsupportedOnArchitecture(_, let value, let arch):
            return "\(value) is not supported on \(arch.rawValue)"
        case .unalignedAddress(_, let address, let alignment):
            return "\(hex(address)) is not aligned to \(formatSize(alignment))"
        case .emptyRange(_, let start, let end):
            return "empty range: start \(hex(start)) is not below end \(hex(end))"
        case .beyondAddressSpace(_, let address, let limit):
            return "\(hex(address)) is beyond the user address space (limit \(hex(limit)))"
        case .overlappingVMAs(_, let other, let start, let end):
            return "overlaps \(other) (\(hex(start))-\(hex(end)))"
        case .outsideVMAs(_, let address):
            return "range is not inside contiguous VMAs of the process: no VMA covers \(hex(address))"
        case .incompatibleOperation(_, let op, let vma, let reason):
            return "\(op) cannot apply to \(vma): \(reason)"
        case .duplicatePID(_, let pid, let first):
            return "pid \(pid) is already declared at \(first)"
        case .undeclaredPID(_, let pid):
            return "pid \(pid) is not declared in processes"
        case .duplicateFork(_, let pid, let first):
            return "process \(pid) is already forked at \(first)"
        case .inconsistentParent(_, let reason):
            return reason
        case .budgetExceeded(_, let needed, let budget):
            return "populated memory would reach \(formatSize(needed)) (\(needed) bytes), beyond memoryBudget \(formatSize(budget)) (\(budget) bytes)"
        case .swapExceeded(_, let needed, let available):
            return "swapped-out pages would need \(needed) swap slots, beyond swapSlots \(available)"
        case .buildFailed(_, let reason):
            return "the memory model refused the operation: \(reason)"
        }
    }

    /// `path: reason`, or just the reason when the error has no path.
    public var description: String {
        let p = path
        return p.isEmpty ? reason : "\(p): \(reason)"
    }
}

// MARK: - Formatting helpers shared by the module

/// `0x7fff_f000` style: lowercase hex with a 0x prefix, no separators.
func hex(_ value: UInt64) -> String {
    "0x" + String(value, radix: 16)
}

/// Exact binary size: "4K", "2M", "1G", "1536K", else plain bytes.
func formatSize(_ bytes: UInt64) -> String {
    let units: [(UInt64, String)] = [(1 << 40, "T"), (1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")]
    for (unit, suffix) in units where bytes >= unit && bytes % unit == 0 {
        return "\(bytes / unit)\(suffix)"
    }
    return "\(bytes)B"
}

func quoted(_ s: String) -> String {
    "\"" + s + "\""
}
