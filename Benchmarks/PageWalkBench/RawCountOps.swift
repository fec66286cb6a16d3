import MemoryModel
import PageWalk

/// The raw walk's handlers: count pages by kind into `KindCounts`. Run as
/// closures (`rawCallback`) and as the generic parameter of the specialized
/// callback walker (`rawSpecialized`).
struct RawCountOps: MMWalkOpsProtocol {
    typealias Private = KindCounts
    let layout: EntryLayout
    let memory: PhysicalMemory
    let pmdMask: UInt64

    init(_ mm: AddressSpace) {
        layout = mm.geometry.layout
        memory = mm.memory
        pmdMask = mm.geometry.entrySize(.pmd) - 1
    }

    var hasPMDEntry: Bool { true }
    var hasPTEEntry: Bool { true }
    var hasPTEHole: Bool { true }
    var hasHugetlbEntry: Bool { true }

    /// A PMD leaf is counted whole and not descended.
    @inline(__always)
    func pmdEntry(_ p: EntryPointer<PMD>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<KindCounts>) -> Int32 {
        if p.hasTrivialEntries { return 0 }
        let w = p.rawValue
        if w == 0 || layout.isTable(w, .pmd) { return 0 }
        walk.action = .continue
        let n = Int((next - addr) >> Geometry.pageShift)
        if layout.isPresent(w, .pmd) {
            let pfn = layout.pfn(w) + ((addr & pmdMask) >> Geometry.pageShift)
            if let f = memory.folio(containing: pfn), !f.isZero { walk.privateData.folio &+= n } else { walk.privateData.pfn &+= n }
        } else {
            walk.privateData.add(SoftLeafEntry(decoding: w, layout: layout).leaf, n)
        }
        return 0
    }

    @inline(__always)
    func pteEntry(_ p: EntryPointer<PTE>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<KindCounts>) -> Int32 {
        let w = p.rawValue
        if w == 0 { walk.privateData.none &+= 1; return 0 }
        if layout.isPresent(w, .pte) {
            if w & layout.special == 0, memory.folio(containing: layout.pfn(w)) != nil {
                walk.privateData.folio &+= 1
            } else {
                walk.privateData.pfn &+= 1
            }
            return 0
        }
        walk.privateData.add(SoftLeafEntry(decoding: w, layout: layout).leaf, 1)
        return 0
    }

    @inline(__always)
    func pteHole(_ addr: UInt64, _ next: UInt64, _ depth: Int32, _ walk: inout MMWalk<KindCounts>) -> Int32 {
        let n = Int((next - addr) >> Geometry.pageShift)
        if depth < 0 { walk.privateData.hole &+= n } else { walk.privateData.none &+= n }
        return 0
    }

    @inline(__always)
    func hugetlbEntry(_ p: EntryPointer<PTE>, _ hmask: UInt64, _ addr: UInt64, _ next: UInt64,
                      _ walk: inout MMWalk<KindCounts>) -> Int32 {
        let w = p.rawValue
        let n = Int((next - addr) >> Geometry.pageShift)
        if w == 0 { walk.privateData.none &+= n; return 0 }
        if layout.isPresent(w, p.slot.level) {
            if memory.folio(containing: layout.pfn(w)) != nil { walk.privateData.folio &+= n } else { walk.privateData.pfn &+= n }
        } else {
            walk.privateData.add(SoftLeafEntry(decoding: w, layout: layout).leaf, n)
        }
        return 0
    }
}
