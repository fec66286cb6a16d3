import MemoryModel

/// Models x86's `pfn_modify_allowed()` (arch/x86/mm/mmap.c), the check
/// `mprotect()` makes before giving PROT_NONE to PFNs of a PFN or mixed map.
///
/// A PROT_NONE entry keeps its PFN bits, so on CPUs with the L1TF bug
/// (L1 Terminal Fault) such an entry naming memory above half the cache's
/// physical address space could be used to read the L1 cache; the kernel
/// refuses it to users without CAP_SYS_ADMIN. So a PFN may be changed
/// unless all of these hold: the CPU has L1TF with the mitigation on, the
/// new protection grants no access (`__pte_needs_invert()`), the PFN has
/// no memmap (`pfn_valid()` false: real memory is always allowed), it lies
/// above `pfnLimit` (`l1tf_pfn_limit()`), and the caller lacks
/// CAP_SYS_ADMIN.
public struct PFNModifyCheck: Sendable, Hashable {
    /// `boot_cpu_has_bug(X86_BUG_L1TF)`: the CPU is affected and the
    /// kernel's L1TF mitigation inverts non-present entries.
    public var l1tfMitigation: Bool
    /// `boot_cpu_data.x86_cache_bits`: physical address bits the L1 cache
    /// tags (`defaultCacheBits` unless a test needs other).
    public var cacheBits: Int
    /// `capable(CAP_SYS_ADMIN)`: the caller may map any PFN PROT_NONE.
    public var capSysAdmin: Bool

    /// A common `x86_cache_bits` on parts affected by L1TF (46 bits, 64 TiB
    /// of physical address space).
    public static let defaultCacheBits = 46

    /// No PFN-modify check: every architecture but x86 with L1TF.
    public static let notAffected = PFNModifyCheck(l1tfMitigation: false)
    /// An L1TF-affected x86 CPU with the mitigation on, an unprivileged
    /// caller.
    public static let l1tfMitigated = PFNModifyCheck(l1tfMitigation: true)

    public init(l1tfMitigation: Bool, cacheBits: Int = PFNModifyCheck.defaultCacheBits, capSysAdmin: Bool = false) {
        self.l1tfMitigation = l1tfMitigation
        self.cacheBits = cacheBits
        self.capSysAdmin = capSysAdmin
    }

    /// `arch_has_pfn_modify_check()`: whether mprotect() asks at all.
    public var isActive: Bool { l1tfMitigation }

    /// `l1tf_pfn_limit()`: the highest PFN below half the cache's physical
    /// address space.
    public var pfnLimit: UInt64 { (1 << UInt64(cacheBits - 1 - Geometry.pageShift)) - 1 }

    /// `pfn_modify_allowed(pfn, prot)`; `grantsNoAccess` says the new
    /// protection is PROT_NONE (the one `__pte_needs_invert()` is true of).
    public func allows(_ pfn: UInt64, grantsNoAccess: Bool, in memory: PhysicalMemory) -> Bool {
        guard l1tfMitigation, grantsNoAccess else { return true }
        if memory.pfnValid(pfn) { return true }
        return pfn <= pfnLimit || capSysAdmin
    }
}
