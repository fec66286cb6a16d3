import MemoryModel

/// A small x86-64 address space for the rule tests of this target.
func makeSmallSpace(_ g: Geometry = .x86_64, options: AddressSpaceOptions = .init()) throws -> AddressSpace {
    try AddressSpace(geometry: g, memory: try PhysicalMemory(budgetBytes: 64 << 20), options: options)
}

/// Whether page `index` of the range starting at `base` is mapped.
func isMapped(_ mm: AddressSpace, _ base: UInt64, _ index: Int) -> Bool {
    if case .present = mm.translate(base + UInt64(index) * Geometry.pageSize) { return true } else { return false }
}
