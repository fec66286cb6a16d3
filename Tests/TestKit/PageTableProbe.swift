import MemoryModel

/// The PTE table mapping `address`, if one is installed, found with the
/// model's public primitives (tests that lock or replace a table by hand).
public func pteTable(_ mm: AddressSpace, _ address: UInt64) -> TableID? {
    var table = mm.root
    for level in mm.tableLevels {
        let w = mm.memory.tables.entries(table)[mm.geometry.tableIndex(address, level)].load(ordering: .acquiring)
        if level == .pmd {
            return mm.geometry.layout.isTable(w, .pmd) ? mm.lowerTable(w) : nil
        }
        guard mm.geometry.layout.isTable(w, level) else { return nil }
        table = mm.lowerTable(w)
    }
    return nil
}
