import MemoryModel
import PageWalk

/// The callback handlers of smaps (`smaps_pte_range()`,
/// `smaps_hugetlb_range()`): account each entry of one VMA into
/// `MemSizeStats`. Used as closures by `Smaps.gatherCallback` and, as a
/// generic parameter (`MMWalkOpsProtocol`), by the specialized walker.
public struct SmapsWalkOps: MMWalkOpsProtocol {
    public typealias Private = MemSizeStats
    let mm: AddressSpace
    let layout: EntryLayout
    let memory: PhysicalMemory
    let locked: Bool
    let hugeSize: UInt64
    let pmdMask: UInt64

    public init(_ mm: AddressSpace, _ vma: VMA) {
        self.mm = mm
        layout = mm.geometry.layout
        memory = mm.memory
        locked = vma.flags.contains(.locked)
        hugeSize = vma.hugePageSize
        pmdMask = mm.geometry.entrySize(.pmd) - 1
    }

    public var hasPMDEntry: Bool { true }
    public var hasPTEEntry: Bool { true }
    public var hasHugetlbEntry: Bool { true }

    /// A PMD leaf (THP, or a PMD migration or device entry) is accounted
    /// whole and not descended.
    @inline(__always)
    public func pmdEntry(_ p: EntryPointer<PMD>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<MemSizeStats>) -> Int32 {
        if p.hasTrivialEntries { return 0 }
        let w = p.rawValue
        if w == 0 || layout.isTable(w, .pmd) { return 0 }
        walk.action = .continue
        let pages = Int((next - addr) >> Geometry.pageShift)
        let offset = (addr & pmdMask) >> Geometry.pageShift
        if layout.isPresent(w, .pmd) {
            let pfn = layout.pfn(w) + offset
            guard let f = memory.folio(containing: pfn), !f.isZero else { return 0 }
            let pmd = p.entry
            walk.privateData.accountPMD(f, first: Int(pfn - f.pfn), count: pages, young: pmd.isYoung,
                                        dirty: pmd.isDirty, locked: locked, present: true)
        } else {
            let leaf = SoftLeafEntry(decoding: w, layout: layout).leaf
            guard let pfn = leaf.pfn else { return 0 }
            var present = false
            if case .devicePrivate = leaf { present = true }
            Smaps.accountPFNEntry(&walk.privateData, memory, pfn: pfn + offset, pages: pages, pmd: true,
                                  locked: locked, present: present)
        }
        return 0
    }

    @inline(__always)
    public func pteEntry(_ p: EntryPointer<PTE>, _ addr: UInt64, _ next: UInt64, _ walk: inout MMWalk<MemSizeStats>) -> Int32 {
        let w = p.rawValue
        if w == 0 { return 0 }
        if layout.isPresent(w, .pte) {
            if w & layout.special != 0 { return 0 }   // vm_normal_page(): no page
            let pfn = layout.pfn(w)
            guard let f = memory.folio(containing: pfn) else { return 0 }
            let pte = p.entry
            walk.privateData.account(f, first: Int(pfn - f.pfn), count: 1, young: pte.isYoung, dirty: pte.isDirty,
                                     locked: locked, present: true)
            return 0
        }
        switch SoftLeafEntry(decoding: w, layout: layout).leaf {
        case .swap(let s): walk.privateData.accountSwap(s, count: 1, memory: memory)
        case .migration(_, let pfn, _, _), .hwpoison(let pfn), .deviceExclusive(let pfn):
            Smaps.accountPFNEntry(&walk.privateData, memory, pfn: pfn, pages: 1, pmd: false, locked: locked, present: false)
        case .devicePrivate(_, let pfn):
            Smaps.accountPFNEntry(&walk.privateData, memory, pfn: pfn, pages: 1, pmd: false, locked: locked, present: true)
        case .marker: break
        }
        return 0
    }

    @inline(__always)
    public func hugetlbEntry(_ p: EntryPointer<PTE>, _ hmask: UInt64, _ addr: UInt64, _ next: UInt64,
                             _ walk: inout MMWalk<MemSizeStats>) -> Int32 {
        let w = p.rawValue
        let level = p.slot.level
        if w == 0 { return 0 }
        if layout.isPresent(w, level) {
            if let f = memory.folio(containing: layout.pfn(w)) {
                walk.privateData.accountHugetlb(f, present: true, size: hugeSize)
            }
        } else if let pfn = SoftLeafEntry(decoding: w, layout: layout).leaf.pfn, let f = memory.folio(containing: pfn) {
            walk.privateData.accountHugetlb(f, present: false, size: hugeSize)
        }
        return 0
    }
}
