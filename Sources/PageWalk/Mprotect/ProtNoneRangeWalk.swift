import MemoryModel

extension ProtNone {
    /// The check on the range walker: every PTE word and hugetlb entry of
    /// `[start, end)` judged (`PTEEntryWalk`, PMD leaves split first as the
    /// callback walker splits them for a `pte_entry`), under the mmap write
    /// lock with each VMA write-locked when reached (`PGWALK_WRLOCK`).
    static func rangeWalk(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64,
                          check: PFNModifyCheck) throws(PageWalkError) -> MprotectError? {
        var refusal: MprotectError?
        try PTEEntryWalk.run(mm, start..<end, lock: .mmapWrite, hugetlbEntries: true) { raw, level, address, _ in
            refusal = judge(raw, level: level, at: address, mm, check)
            return refusal == nil
        }
        return refusal
    }
}
