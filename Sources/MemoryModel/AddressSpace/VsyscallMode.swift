/// The kernel's `vsyscall=` boot mode (arch/x86/entry/vsyscall/vsyscall_64.c):
/// whether a 64-bit x86-64 process has the gate VMA, `[vsyscall]`, and with
/// which permissions.
///
/// The gate VMA is one static `vm_area_struct` outside every mm's VMA tree
/// (`get_gate_vma()`): /proc/PID/maps and smaps print it after the mm's last
/// VMA, with zero counters (it has no `vm_mm`, so nothing is walked);
/// numa_maps skips it, smaps_rollup neither counts it nor lets it end its
/// range, and pagemap never reaches it (it lies above `TASK_SIZE`). arm64
/// has no gate VMA.
public enum VsyscallMode: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// `vsyscall=none`: no gate VMA (and every arm64 process).
    case none
    /// `vsyscall=xonly`, the default (`CONFIG_LEGACY_VSYSCALL_XONLY`):
    /// `--xp`, execute-only, no page behind it (`map_vsyscall()` leaves
    /// the gate VMA just `VM_EXEC`).
    case xonly
    /// `vsyscall=emulate`: `r-xp` (`VM_READ | VM_EXEC`).
    case emulate

    public var description: String { rawValue }

    /// `VSYSCALL_ADDR`: the gate VMA's start, in the top 2 MiB of the
    /// address space (`__fix_to_virt(VSYSCALL_PAGE)`).
    public static let gateStart: UInt64 = 0xffff_ffff_ff60_0000
    /// The gate VMA is one page.
    public static let gateEnd: UInt64 = gateStart + Geometry.pageSize
    /// The name `gate_vma_name()` gives it.
    public static let gateName = "[vsyscall]"

    /// The gate VMA's `vm_flags` in this mode, nil for none.
    public var gateFlags: VMFlags? {
        switch self {
        case .none: return nil
        case .xonly: return [.exec]
        case .emulate: return [.read, .exec]
        }
    }

    /// The mode a maps line's permissions show for the gate VMA (`--xp`,
    /// `r-xp`); nil for permissions no mode gives it.
    public init?(gatePermissions perms: some StringProtocol) {
        switch perms {
        case "--xp": self = .xonly
        case "r-xp": self = .emulate
        default: return nil
        }
    }

    /// Whether `architecture` has a gate VMA in this mode at all.
    public func isSupported(on architecture: Architecture) -> Bool {
        self == .none || architecture == .x86_64
    }

    /// The kernel's single `gate_vma` of each mode: every mm shares it.
    static let xonlyGate = makeGate(.xonly)
    static let emulateGate = makeGate(.emulate)

    private static func makeGate(_ mode: VsyscallMode) -> VMA {
        VMA(start: gateStart, end: gateEnd, flags: mode.gateFlags ?? [], backing: .anonymous, name: gateName,
            policy: .default, protectionKey: 0, hugePageSize: 0)
    }

    /// `get_gate_vma()` for a process of `geometry` in this mode.
    func gateVMA(_ geometry: Geometry) throws(ModelError) -> VMA? {
        guard isSupported(on: geometry.architecture) else {
            throw .invalidArgument(name: "vsyscall", reason: "\(rawValue): \(geometry.architecture) has no gate VMA")
        }
        switch self {
        case .none: return nil
        case .xonly: return Self.xonlyGate
        case .emulate: return Self.emulateGate
        }
    }
}
