import MemoryModel

/// The reference's device-private and device-exclusive operations, the
/// page-granular counterpart of `AddressSpace+Device.swift`. Each operation
/// follows the documented semantics of the model's operation (named in its
/// comment), checks its arguments in the same order and throws the same
/// `ModelError` cases.
extension ReferenceModel {
    /// `AddressSpace.makeDevicePrivate`.
    public func makeDevicePrivate(pid: Int, _ start: UInt64, _ end: UInt64, writable: Bool) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for vma in try covered(p, start, end, "device_private") {
            guard vma.isAnonymous else { throw .wrongVMAKind(address: vma.start, reason: "device-private migration needs anonymous memory") }
            try forEachPTE(p, max(start, vma.start), min(end, vma.end)) { (a) throws(ModelError) in
                guard case .present(let pp)? = p.pages[a], !pp.attrs.contains(.special), case .folio(let f, _) = pp.target,
                      let fo = folios[f], fo.isAnon, !fo.isLarge, !fo.isKSM, fo.mapcount == 1 else { return }
                let d = newFolio(order: 0, node: fo.node, flags: [.anon, .swapBacked, .zoneDevice, .devicePrivate])
                folios[d]!.exclusive[0] = true
                var bits: SwapPTEBits = [.exclusive]
                if pp.attrs.contains(.softDirty) { bits.insert(.softDirty) }
                if pp.attrs.contains(.uffdWP) { bits.insert(.uffdWP) }
                set(p, a, .devicePrivate(folio: d, writable: writable && pp.attrs.contains(.writable), bits: bits))
            }
        }
    }

    /// `AddressSpace.makeDeviceExclusive`.
    public func makeDeviceExclusive(pid: Int, _ start: UInt64, _ end: UInt64) throws(ModelError) {
        let p = try alive(pid)
        defer { collect() }
        for vma in try covered(p, start, end, "device_exclusive") {
            guard vma.isPrivate, !vma.isHugetlb else { throw .wrongVMAKind(address: vma.start, reason: "device-exclusive needs private memory") }
            try forEachPTE(p, max(start, vma.start), min(end, vma.end)) { (a) throws(ModelError) in
                guard case .present(let pp)? = p.pages[a], !pp.attrs.contains(.special), case .folio(let f, let i) = pp.target,
                      let fo = folios[f], fo.isAnon, fo.exclusive[i], !fo.isKSM else { return }
                var bits: SwapPTEBits = [.exclusive]
                if pp.attrs.contains(.softDirty) { bits.insert(.softDirty) }
                if pp.attrs.contains(.uffdWP) { bits.insert(.uffdWP) }
                if pp.attrs.contains(.dirty) { folios[f]!.flags.insert(.dirty) }
                set(p, a, .deviceExclusive(folio: f, page: i, bits: bits))
            }
        }
    }
}
