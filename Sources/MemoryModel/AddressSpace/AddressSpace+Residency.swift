// The caches behind a mapping, as a reader that reports residency without
// faulting (mincore) looks them up: the page cache of a VMA's file and the
// swap cache of a swap entry. Both take a reference on the folio they find,
// test it and drop the reference, as the kernel's lookups do.

extension AddressSpace {
    /// Models `mincore_page()` for the page at `address` of `vma`:
    /// `filemap_get_entry(vma->vm_file->f_mapping, linear_page_index(vma, address))`,
    /// then `folio_test_uptodate()` of the folio found. False when the VMA has
    /// no file or its page cache holds nothing there.
    ///
    /// A hugetlb folio is filed under its first index (the xarray holds it
    /// as one multi-index entry), so it is found from any of its pages. The
    /// model's page cache holds folios only, no value entries (workingset
    /// shadows, swapped-out shmem pages): the value-entry branch of
    /// `mincore_page()` has nothing to find.
    package func pageCacheHasUptodateFolio(_ vma: VMA, at address: UInt64) -> Bool {
        guard let file = vma.file else { return false }
        let index = vma.pageIndex(vma.isHugetlb ? address & ~(vma.hugePageSize - 1) : address)
        guard let pfn = file.cachedPFN(index), let folio = memory.folio(containing: pfn), folio.tryGet() else {
            return false
        }
        defer { memory.put(folio) }
        // The slot may have been emptied between the lookup and the reference.
        guard file.cachedPFN(index) == pfn else { return false }
        return folio.test(.uptodate)
    }

    /// Models the swap-entry part of `mincore_swap()`: `swap_cache_get_folio(entry)`,
    /// then `folio_test_uptodate()` of the folio found (the reference taken is
    /// dropped again). False when the swap cache holds no folio for the slot.
    package func swapCacheHasUptodateFolio(_ entry: SwapEntry) -> Bool {
        guard let page = memory.swap.cachedPage(Int(entry.offset), getting: memory) else { return false }
        defer { memory.put(page.folio) }
        return page.folio.test(.uptodate)
    }
}
