/// The address `kill_accessing_process()` signals (`struct to_kill`'s
/// `addr` and `size_shift`): where the process maps the poisoned frame,
/// and the size of the mapping unit reported with SIGBUS (`si_addr_lsb`).
public struct HWPoisonToKill: Equatable, Sendable, CustomStringConvertible {
    /// The virtual address of the poisoned page; for hugetlb, of the start
    /// of the huge page.
    public let address: UInt64
    /// `PAGE_SHIFT` for PTEs and PMD THPs, `huge_page_shift()` for hugetlb.
    public let sizeShift: Int

    public init(address: UInt64, sizeShift: Int) {
        self.address = address
        self.sizeShift = sizeShift
    }

    public var description: String { "to_kill 0x\(String(address, radix: 16)) shift \(sizeShift)" }
}
