import MemoryModel

/// What `ksm_next_page_ops` hands back to ksmd (`struct ksm_next_page_arg`):
/// the address of the first anonymous page from the scan address, the page
/// mapped there, and its folio, on which the walk took a reference
/// (`folio_get()`) under the table lock. The caller owns that reference and
/// drops it with `AddressSpace.memory.folioPut(_:)` when done.
public struct KSMScanPage: Equatable, Sendable, CustomStringConvertible {
    /// The virtual address of `page` (`ksm_next_page_arg.addr`).
    public let address: UInt64
    /// The page at `address` (`ksm_next_page_arg.page`).
    public let page: Page
    /// `page_folio(page)`, referenced (`ksm_next_page_arg.folio`).
    public let folio: Folio

    public var description: String {
        "ksm page 0x\(String(address, radix: 16)) pfn 0x\(String(page.pfn, radix: 16)) \(folio)"
    }
}
