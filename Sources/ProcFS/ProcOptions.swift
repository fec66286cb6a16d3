import MemoryModel
import PageWalk

/// Which walker a producer runs on.
public typealias ProcWalker = WalkerKind

/// A transparent-hugepage `enabled` mode.
public enum THPMode: String, Sendable, Hashable {
    case always, madvise, never
}

/// A per-size mTHP `enabled` mode (`hugepages-<size>kB/enabled`).
public enum THPOrderMode: String, Sendable, Hashable {
    case always, inherit, madvise, never
}

/// A shmem huge-page policy (`shmem_enabled`, or the tmpfs `huge=` option).
public enum ShmemHugeMode: String, Sendable, Hashable {
    case never, always, withinSize = "within_size", advise, deny, force
}

/// The THP sysfs state that decides `THPeligible` (Linux 6.18
/// `thp_vma_allowable_orders(..., TVA_SMAPS, THP_ORDERS_ALL)`).
public struct THPSettings: Sendable, Hashable {
    /// `/sys/kernel/mm/transparent_hugepage/enabled`.
    public var enabled: THPMode
    /// Per-order anonymous settings (`hugepages-<4K << order>kB/enabled`);
    /// orders not listed are `never`.
    public var anonOrders: [Int: THPOrderMode]
    /// `shmem_enabled` (applied to every shmem mapping: the model does not
    /// track tmpfs mount options).
    public var shmemEnabled: ShmemHugeMode
    /// `CONFIG_READ_ONLY_THP_FOR_FS` (regular files not open for write).
    public var readOnlyFileTHP: Bool

    /// The machine's defaults: `madvise`, 2M `inherit`, other sizes `never`,
    /// shmem `never`, no read-only file THP.
    public init(enabled: THPMode = .madvise, anonOrders: [Int: THPOrderMode] = [9: .inherit],
                shmemEnabled: ShmemHugeMode = .never, readOnlyFileTHP: Bool = false) {
        self.enabled = enabled; self.anonOrders = anonOrders
        self.shmemEnabled = shmemEnabled; self.readOnlyFileTHP = readOnlyFileTHP
    }
}

/// Options shared by the producers.
public struct ProcOptions: Sendable {
    public var walker: ProcWalker
    /// Range walker only: batch entries (the output is the same either way).
    public var batching: Bool
    public var thp: THPSettings
    /// `arch_pkeys_enabled()`: print `ProtectionKey:` (x86 with OSPKE, arm64 POE).
    public var protectionKeys: Bool
    /// Callback walker only: walk with the handlers as a generic parameter
    /// (`walkPageRange(_:_:_:ops:private:)` over an `MMWalkOpsProtocol`
    /// type, specialized and inlined) instead of closures. smaps and
    /// smaps_rollup honour it; the output is the same either way.
    public var specialized: Bool

    public init(walker: ProcWalker = .range, batching: Bool = true, thp: THPSettings = THPSettings(),
                protectionKeys: Bool = false, specialized: Bool = false) {
        self.walker = walker; self.batching = batching; self.thp = thp; self.protectionKeys = protectionKeys
        self.specialized = specialized
    }
}
