import MemoryModel

/// One VMA mapping part of a file range, clipped to that part: what the
/// kernel's `walk_page_mapping()` gets from each step of
/// `vma_interval_tree_foreach()` over the mapping's i_mmap tree.
package struct FileMappingRange {
    /// The address space the VMA belongs to (`vma->vm_mm`).
    package let mm: AddressSpace
    package let vma: VMA
    /// The virtual range of the file pages asked for, inside `vma`.
    package let start: UInt64
    package let end: UInt64

    /// Every VMA in every live address space on `memory` that maps some of
    /// file pages `firstIndex ..< firstIndex + count` of `file`, in i_mmap
    /// order (by the file offset each VMA starts at, across address
    /// spaces), each clipped to those pages. Both walkers' mapping walks
    /// take their VMAs from here, so they visit the same ones in the same
    /// order.
    package static func covering(_ memory: PhysicalMemory, _ file: FileObject, firstIndex: UInt64,
                                 count: UInt64) -> [FileMappingRange] {
        guard count > 0 else { return [] }
        let endIndex = firstIndex > UInt64.max - count ? UInt64.max : firstIndex + count
        var found: [(first: UInt64, range: FileMappingRange)] = []
        for mm in memory.addressSpaces where !mm.isTornDown {
            for vma in mm.vmas where vma.file === file {
                let vmaFirst = vma.pageIndex(vma.start)
                let vmaEnd = vmaFirst + vma.size / Geometry.pageSize
                let clipFirst = max(firstIndex, vmaFirst), clipEnd = min(endIndex, vmaEnd)
                guard clipFirst < clipEnd else { continue }
                let start = vma.start + (clipFirst - vmaFirst) * Geometry.pageSize
                let end = vma.start + (clipEnd - vmaFirst) * Geometry.pageSize
                found.append((vmaFirst, FileMappingRange(mm: mm, vma: vma, start: start, end: end)))
            }
        }
        // A stable order for VMAs at the same offset: the order found.
        return found.enumerated().sorted { ($0.element.first, $0.offset) < ($1.element.first, $1.offset) }
            .map(\.element.range)
    }
}
