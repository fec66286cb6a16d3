import MemoryModel

extension UpdateEntry {
    /// Makes a present hugetlb entry old under the hugetlb locks the walk
    /// holds, as a hugetlb handler does with `huge_ptep_get()`, `pte_mkold()`
    /// and `set_huge_pte_at()` (DAMON's `damon_hugetlb_mkold()`): the young
    /// bit cleared on each of its entries (16 for an arm64 contiguous huge
    /// page). Returns whether it was young; owes no flush, as clearing
    /// young never does here. Package: the only hugetlb write of an update
    /// walk, for that one user.
    package func clearHugetlbYoung() throws(PageWalkError) -> Bool {
        try checkHeld()
        guard case .hugetlb(let first) = target else {
            throw .misuse("clearHugetlbYoung at 0x\(String(entry.start, radix: 16)): not a hugetlb entry")
        }
        let young = layout.young
        var was = false
        for k in 0..<entry.count {
            let slot = EntrySlot(first.table, first.index + k, first.level)
            let w = mm.entry(at: slot)
            guard isPresent(w), w & young != 0 else { continue }
            mm.setEntry(at: slot, w & ~young)
            was = true
        }
        return was
    }
}
