import MemoryModel
import Synchronization

// Installing into none entries, allocating the tables that are missing:
// `walk_page_range_mm()` with an `install_pte` handler.
extension UpdateEntry {
    /// Fills every none PTE of the entry with `make(address)`. A none range
    /// with no table below it gets its tables allocated first
    /// (`__pte_alloc()` and friends); populated entries are left alone.
    /// Permitted only in walks opened with `AddressSpace.withInstallingWalk`
    /// (package: reserved to memory-management internals, as
    /// `check_ops_valid()` reserves `install_pte`); refused on hugetlb.
    /// Returns how many PTEs were filled.
    @discardableResult
    public func install(_ make: (UInt64) throws(PageWalkError) -> UInt64) throws(PageWalkError) -> Int {
        try checkHeld()
        guard state.pointee.mayInstall else { throw .installNotPermitted }
        switch target {
        case .hugetlb:
            throw .hugetlbInstall(vmaStart: vmaUnretained?.start ?? entry.start)
        case .outside:
            throw .misuse("install at 0x\(String(entry.start, radix: 16)): outside every VMA")
        case .leaf:
            throw .misuse("install over the \(entry.level) leaf at 0x\(String(entry.start, radix: 16)): a leaf is not a none entry")
        case .ptes(let table, let first, let words):
            var filled = 0
            for i in first..<(first + entry.count) where words[i].load(ordering: .relaxed) == 0 {
                mm.storePTE(table, i, try make(entry.start + UInt64(i - first) << Geometry.pageShift))
                filled += 1
            }
            return filled
        case .noTable:
            return try installAllocating(make)
        }
    }

    /// Installs marker `m` into the entry's none PTEs (guard regions).
    @discardableResult
    public func installMarker(_ m: PTEMarker) throws(PageWalkError) -> Int {
        let w = try encode(m)
        return try install { _ in w }
    }

    /// A none range with no table: the PTE tables are allocated one PMD
    /// span at a time, each filled under its lock.
    func installAllocating(_ make: (UInt64) throws(PageWalkError) -> UInt64) throws(PageWalkError) -> Int {
        let geometry = mm.geometry
        var filled = 0
        var a = entry.start
        while a < entry.end {
            let next = geometry.entryEnd(a, at: .pmd, limit: entry.end)
            let result: Result<Int, PageWalkError>?
            do throws(ModelError) {
                result = try mm.withPTETable(a, allocate: true) { t -> Result<Int, PageWalkError> in
                    let words = mm.memory.tables.entries(t)
                    var n = 0
                    var b = a
                    var i = geometry.tableIndex(a, .pte)
                    while b < next {
                        if words[i].load(ordering: .relaxed) == 0 {
                            do throws(PageWalkError) { mm.storePTE(t, i, try make(b)) } catch { return .failure(error) }
                            n += 1
                        }
                        b += Geometry.pageSize
                        i += 1
                    }
                    return .success(n)
                }
            } catch {
                throw .allocationFailed("PTE table for 0x\(String(a, radix: 16)): \(error)")
            }
            // A leaf appeared meanwhile (a THP fault): the kernel's walk keeps it.
            if let result { filled += try result.get() }
            a = next
        }
        return filled
    }
}
