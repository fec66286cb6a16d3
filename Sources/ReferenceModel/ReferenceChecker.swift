import MemoryModel

/// One difference between the real address spaces and the reference.
public struct Mismatch: Hashable, Sendable, CustomStringConvertible {
    /// The process, or nil for memory-wide state (folios, swap, caches).
    public let pid: Int?
    /// The virtual address, or nil for per-process / global fields.
    public let address: UInt64?
    public let field: String
    public let expected: String
    public let actual: String

    public var description: String {
        var s = ""
        if let pid { s += "pid \(pid) " }
        if let address { s += "0x" + String(address, radix: 16) + " " }
        return s + "\(field): expected \(expected), got \(actual)"
    }
}

/// Compares real address spaces with a `ReferenceModel`: every page of every
/// VMA (through `AddressSpace.translate`), the folios in the memmap
/// (mapcounts, refcount, flags, node, exclusivity), swap slots, page caches,
/// RSS and table counters, and the VMA lists.
///
/// Reference identities (folios, slots, poisoned frames, files) are bound to
/// real ones on first sight; the bindings persist in the model across checks
/// (dropped when the reference frees the object), so a later check that finds
/// another frame where the reference expects the same folio fails.
public enum ReferenceChecker {
    public static func check(_ spaces: [AddressSpace], against model: ReferenceModel) -> [Mismatch] {
        var c = Context(model: model)
        c.run(spaces)
        return c.out
    }

    struct Context {
        let model: ReferenceModel
        var out: [Mismatch] = []

        mutating func fail(_ pid: Int?, _ a: UInt64?, _ field: String, _ e: Any, _ g: Any) {
            if out.count < 200 { out.append(Mismatch(pid: pid, address: a, field: field, expected: "\(e)", actual: "\(g)")) }
        }

        mutating func bindFolio(_ f: ReferenceFolioID, head: UInt64, _ pid: Int?, _ a: UInt64?) {
            if let known = model.folioPFN[f] {
                if known != head { fail(pid, a, "folio f\(f) identity", hx(known), hx(head)) }
                return
            }
            if let other = model.pfnFolio[head], other != f {
                fail(pid, a, "folio f\(f) identity", "a frame of its own", "\(hx(head)), already bound to f\(other)")
                return
            }
            model.folioPFN[f] = head
            model.pfnFolio[head] = f
        }

        mutating func bindSlot(_ s: ReferenceSlotID, offset: UInt64, _ pid: Int, _ a: UInt64) {
            if let known = model.slotOffset[s] {
                if known != offset { fail(pid, a, "swap slot s\(s) identity", hx(known), hx(offset)) }
                return
            }
            if let other = model.offsetSlot[offset], other != s {
                fail(pid, a, "swap slot s\(s) identity", "a slot of its own", "\(hx(offset)), already bound to s\(other)")
                return
            }
            model.slotOffset[s] = offset
            model.offsetSlot[offset] = s
        }

        mutating func run(_ spaces: [AddressSpace]) {
            guard let any = spaces.first else { return }
            let memory = any.memory
            let live = model.processes.filter(\.alive)
            let real = spaces.filter { !$0.isTornDown }
            if live.map(\.pid).sorted() != real.map({ $0.options.pid }).sorted() {
                fail(nil, nil, "processes", live.map(\.pid).sorted(), real.map { $0.options.pid }.sorted())
            }
            for mm in real {
                guard let p = model.process(mm.options.pid) else { continue }
                checkVMAs(mm, p)
                checkPages(mm, p)
                checkCounters(mm, p)
            }
            checkCaches(memory)
            checkFolios(memory)
            checkSwap(memory)
        }

        // MARK: VMAs

        mutating func checkVMAs(_ mm: AddressSpace, _ p: ReferenceProcess) {
            let pid = p.pid
            let gate = Self.describeGate(mm.gateVMA.map { ($0.start, $0.end, $0.flags, $0.name) })
            let expectedGate = Self.describeGate(p.gateVMA.map { ($0.start, $0.end, $0.flags, $0.name) })
            if gate != expectedGate { fail(pid, nil, "gate VMA", expectedGate, gate) }
            let rv = mm.vmas
            if rv.count != p.vmas.count {
                fail(pid, nil, "VMA list", p.vmas.map { "\(hx($0.start))-\(hx($0.end))" }, rv.map { "\(hx($0.start))-\($0.end)" })
                return
            }
            for (r, e) in zip(rv, p.vmas) {
                let a = e.start
                if r.start != e.start || r.end != e.end { fail(pid, a, "VMA range", "\(hx(e.start))-\(hx(e.end))", "\(hx(r.start))-\(hx(r.end))") }
                if r.flags != e.flags { fail(pid, a, "VMA flags", hx(e.flags.rawValue), hx(r.flags.rawValue)) }
                if r.name != e.name { fail(pid, a, "VMA name", e.name ?? "nil", r.name ?? "nil") }
                if r.hugePageSize != e.hugePageSize { fail(pid, a, "VMA huge page size", e.hugePageSize, r.hugePageSize) }
                if r.hasAnonVMA != e.hasAnonVMA { fail(pid, a, "VMA anon_vma", e.hasAnonVMA, r.hasAnonVMA) }
                switch (e.backing, r.backing) {
                case (.anonymous, .anonymous): break
                case (.pfnRange(let x), .pfnRange(let y)): if x != y { fail(pid, a, "VMA first pfn", hx(x), hx(y)) }
                case (.file(let ef, let eo), .file(let rf, let ro)), (.shmem(let ef, let eo), .shmem(let rf, let ro)):
                    if eo != ro { fail(pid, a, "VMA page offset", eo, ro) }
                    bindFile(ef, rf, pid, a)
                default: fail(pid, a, "VMA backing", "\(e.backing)", "\(r.backing)")
                }
            }
        }

        static func describeGate(_ v: (start: UInt64, end: UInt64, flags: VMFlags, name: String?)?) -> String {
            guard let v else { return "none" }
            return "\(hx(v.start))-\(hx(v.end)) flags \(hx(v.flags.rawValue)) \(v.name ?? "")"
        }

        mutating func bindFile(_ e: ReferenceFile, _ r: FileObject, _ pid: Int, _ a: UInt64) {
            let id = ObjectIdentifier(r)
            if let real = e.real, real !== r { fail(pid, a, "VMA file", real.path, r.path); return }
            if let known = model.fileBinding[e.id] {
                if known != id { fail(pid, a, "VMA file", "file #\(e.id)", r.path) }
            } else {
                model.fileBinding[e.id] = id
                realFiles[e.id] = r
            }
            if realFiles[e.id] == nil { realFiles[e.id] = r }
        }
        var realFiles: [Int: FileObject] = [:]

        // MARK: Pages

        mutating func checkPages(_ mm: AddressSpace, _ p: ReferenceProcess) {
            let pid = p.pid
            let zero = mm.memory.zeroPage.pfn, hugeZero = mm.memory.hugeZeroFolio.pfn
            let layout = mm.geometry.layout
            var seen = 0
            for v in mm.vmas {
                var a = v.start
                while a < v.end {
                    defer { a += Geometry.pageSize }
                    let t = mm.translate(a)
                    guard let e = p.pages[a] else {
                        if case .none = t {} else { fail(pid, a, "entry", "none", describe(t)) }
                        continue
                    }
                    seen += 1
                    switch e {
                    case .present(let pp):
                        guard case .present(let level, let raw, let pfn) = t else { fail(pid, a, "entry", e, describe(t)); continue }
                        if level != pp.level { fail(pid, a, "level", pp.level, level) }
                        let attrs = layout.attributes(of: raw, level: level).intersection(ReferenceModel.comparedAttributes)
                        if attrs != pp.attrs { fail(pid, a, "attributes", ReferenceModel.describe(pp.attrs), ReferenceModel.describe(attrs)) }
                        switch pp.target {
                        case .zero: if pfn != zero { fail(pid, a, "pfn", "zero page", hx(pfn)) }
                        case .hugeZero(let k): if pfn != hugeZero + UInt64(k) { fail(pid, a, "pfn", "huge zero+\(k)", hx(pfn)) }
                        case .pfn(let x): if pfn != x { fail(pid, a, "pfn", hx(x), hx(pfn)) }
                        case .folio(let f, let k):
                            bindFolio(f, head: pfn &- UInt64(k), pid, a)
                        }
                    case .swap(let slot, let bits):
                        guard case .softLeaf(_, _, let se) = t, case .swap(let s) = se.leaf else { fail(pid, a, "entry", e, describe(t)); continue }
                        if s.type != 0 { fail(pid, a, "swap type", 0, s.type) }
                        bindSlot(slot, offset: s.offset, pid, a)
                        if se.bits != bits { fail(pid, a, "swap bits", bits.rawValue, se.bits.rawValue) }
                    case .migration(let kind, let f, let k, let young, let dirty, let bits, let level):
                        guard case .softLeaf(let l, _, let se) = t, case .migration(let rk, let pfn, let ry, let rd) = se.leaf else {
                            fail(pid, a, "entry", e, describe(t)); continue
                        }
                        if l != level { fail(pid, a, "level", level, l) }
                        if rk != kind { fail(pid, a, "migration kind", kind, rk) }
                        if ry != young || rd != dirty { fail(pid, a, "migration young/dirty", "\(young)/\(dirty)", "\(ry)/\(rd)") }
                        if se.bits != bits { fail(pid, a, "migration bits", bits.rawValue, se.bits.rawValue) }
                        bindFolio(f, head: level == .pte ? pfn &- UInt64(k) : pfn, pid, a)
                    case .devicePrivate(let f, let w, let bits):
                        guard case .softLeaf(.pte, _, let se) = t, case .devicePrivate(let rw, let pfn) = se.leaf else {
                            fail(pid, a, "entry", e, describe(t)); continue
                        }
                        if rw != w { fail(pid, a, "device-private writable", w, rw) }
                        if se.bits != bits { fail(pid, a, "device-private bits", bits.rawValue, se.bits.rawValue) }
                        bindFolio(f, head: pfn, pid, a)
                    case .deviceExclusive(let f, let k, let bits):
                        guard case .softLeaf(.pte, _, let se) = t, case .deviceExclusive(let pfn) = se.leaf else {
                            fail(pid, a, "entry", e, describe(t)); continue
                        }
                        if se.bits != bits { fail(pid, a, "device-exclusive bits", bits.rawValue, se.bits.rawValue) }
                        bindFolio(f, head: pfn &- UInt64(k), pid, a)
                    case .hwpoison(let frame, let bits):
                        guard case .softLeaf(.pte, _, let se) = t, case .hwpoison(let pfn) = se.leaf else {
                            fail(pid, a, "entry", e, describe(t)); continue
                        }
                        if se.bits != bits { fail(pid, a, "hwpoison bits", bits.rawValue, se.bits.rawValue) }
                        if let known = model.framePFN[frame] {
                            if known != pfn { fail(pid, a, "poisoned frame \(frame)", hx(known), hx(pfn)) }
                        } else {
                            if let b = model.folioPFN[frame.folio], b + UInt64(frame.page) != pfn {
                                fail(pid, a, "poisoned frame \(frame)", hx(b + UInt64(frame.page)), hx(pfn))
                            }
                            model.framePFN[frame] = pfn
                        }
                    case .marker(let m):
                        guard case .softLeaf(.pte, _, let se) = t, case .marker(let rm) = se.leaf else {
                            fail(pid, a, "entry", e, describe(t)); continue
                        }
                        if rm != m || !se.bits.isEmpty { fail(pid, a, "marker", m.rawValue, "\(rm.rawValue) bits \(se.bits.rawValue)") }
                    }
                }
            }
            if seen != p.pages.count {
                let outside = p.pages.keys.filter { a in !mm.vmas.contains { $0.contains(a) } }.sorted().prefix(4)
                fail(pid, nil, "reference pages outside VMAs", 0, outside.map(hx))
            }
        }

        func describe(_ t: AddressSpace.Translation) -> String {
            switch t {
            case .none(let l): return "none(\(l))"
            case .present(let l, let raw, let pfn): return "present(\(l) pfn \(hx(pfn)) raw \(hx(raw)))"
            case .softLeaf(let l, _, let e): return "softleaf(\(l) \(e))"
            }
        }

        // MARK: Counters

        mutating func checkCounters(_ mm: AddressSpace, _ p: ReferenceProcess) {
            let e = model.expectedCounters(p)
            let r = mm.counterSnapshot
            let pid = p.pid
            if r.anon != e.anon { fail(pid, nil, "RSS anon", e.anon, r.anon) }
            if r.file != e.file { fail(pid, nil, "RSS file", e.file, r.file) }
            if r.shmem != e.shmem { fail(pid, nil, "RSS shmem", e.shmem, r.shmem) }
            if r.swapEntries != e.swapEntries { fail(pid, nil, "swap entries", e.swapEntries, r.swapEntries) }
            if r.pteTables != e.pteTables { fail(pid, nil, "PTE tables", e.pteTables, r.pteTables) }
            if r.hugetlbBytes != e.hugetlbBytes { fail(pid, nil, "hugetlb bytes", e.hugetlbBytes, r.hugetlbBytes) }
        }

        // MARK: Page caches

        mutating func checkCaches(_ memory: PhysicalMemory) {
            for f in model.allFiles {
                guard let real = f.real ?? realFiles[f.id] else {
                    if !f.cache.isEmpty { fail(nil, nil, "page cache of file #\(f.id)", "a file bound through a VMA", "none") }
                    continue
                }
                if real.cachedPages != f.cache.count { fail(nil, nil, "cached pages of \(real.path)", f.cache.count, real.cachedPages) }
                for (index, folio) in f.cache {
                    guard let pfn = real.cachedPFN(index) else { fail(nil, nil, "page cache \(real.path)[\(index)]", "f\(folio)", "absent"); continue }
                    bindFolio(folio, head: pfn, nil, nil)
                }
            }
        }

        // MARK: Folios

        mutating func checkFolios(_ memory: PhysicalMemory) {
            // Folios only the swap cache holds: bind through a bound slot.
            for (slot, (f, k)) in model.swapCache where model.folioPFN[f] == nil {
                if let off = model.slotOffset[slot], let pfn = memory.swap.cachedFolioPFN(Int(off)) {
                    bindFolio(f, head: pfn &- UInt64(k), nil, nil)
                }
            }
            if memory.folioCount != model.liveFolioCount {
                fail(nil, nil, "live folios", model.liveFolioCount, memory.folioCount)
            }
            for (id, f) in model.folios.sorted(by: { $0.key < $1.key }) {
                guard let head = model.folioPFN[id] else {
                    fail(nil, nil, "folio f\(id)", "found in a mapping or cache", "never seen (order \(f.order), ref \(f.refcount))")
                    continue
                }
                let name = "folio f\(id) (\(hx(head)))"
                guard let r = memory.folio(containing: head), r.pfn == head else {
                    fail(nil, nil, name, "a live folio", "no folio"); continue
                }
                if r.order != f.order { fail(nil, nil, "\(name) order", f.order, r.order); continue }
                if r.node != f.node { fail(nil, nil, "\(name) node", f.node, r.node) }
                let flags = r.flags.subtracting(.perPage).intersection(ReferenceModel.trackedFlags)
                if flags != f.flags { fail(nil, nil, "\(name) flags", f.flags, flags) }
                if r.mapcount != f.mapcount { fail(nil, nil, "\(name) mapcount", f.mapcount, r.mapcount) }
                if r.entireMapcount != (f.order >= 2 ? f.entireMaps : 0) { fail(nil, nil, "\(name) entire mapcount", f.entireMaps, r.entireMapcount) }
                if r.refcount != f.refcount { fail(nil, nil, "\(name) refcount", f.refcount, r.refcount) }
                for k in 0..<f.pageCount {
                    if r.pageMapcount(k) != f.pageMapcount(k) { fail(nil, nil, "\(name) page \(k) mapcount", f.pageMapcount(k), r.pageMapcount(k)) }
                    let pf = r.pageFlags(k)
                    if f.isAnon && pf.contains(.anonExclusive) != f.exclusive[k] {
                        fail(nil, nil, "\(name) page \(k) anon-exclusive", f.exclusive[k], pf.contains(.anonExclusive))
                    }
                    if pf.contains(.hwpoison) != f.poisoned[k] { fail(nil, nil, "\(name) page \(k) hwpoison", f.poisoned[k], pf.contains(.hwpoison)) }
                }
            }
        }

        // MARK: Swap

        mutating func checkSwap(_ memory: PhysicalMemory) {
            if memory.swap.usedSlots != model.liveSlotCount { fail(nil, nil, "used swap slots", model.liveSlotCount, memory.swap.usedSlots) }
            for (slot, count) in model.slotCounts.sorted(by: { $0.key < $1.key }) {
                guard let off = model.slotOffset[slot] else { continue }
                let rc = memory.swap.count(Int(off))
                if rc != count { fail(nil, nil, "swap count of s\(slot) (\(hx(off)))", count, rc) }
                let cached = memory.swap.cachedFolioPFN(Int(off))
                if let (f, k) = model.swapCache[slot] {
                    if let b = model.folioPFN[f] {
                        if cached != b + UInt64(k) { fail(nil, nil, "swap cache of s\(slot)", hx(b + UInt64(k)), cached.map(hx) ?? "none") }
                    }
                } else if let cached {
                    fail(nil, nil, "swap cache of s\(slot)", "none", hx(cached))
                }
            }
        }
    }
}

func hx(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
