import MemoryModel
import PageWalk

/// `/proc/PID/pagemap` (fs/proc/task_mmu.c: pagemap_read(),
/// pte_to_pagemap_entry(), pagemap_pmd_range(), pagemap_hugetlb_range(),
/// pagemap_pte_hole()): one little-endian 64-bit word per virtual page.
///
/// The word's bits are MemoryModel's `PagemapBits` (the one definition the
/// snapshot parser reads too); there are no second names for them.
public enum Pagemap {
    /// The most output `words(_:_:privileged:options:)` collects in memory.
    public static let maxCollectedBytes: UInt64 = 1 << 30

    /// Writes the words of the pages of `range` (page aligned; clipped to
    /// user space, as the kernel clips to `TASK_SIZE`). `privileged` is
    /// CAP_SYS_ADMIN: without it PFNs and swap entries read as zero.
    @_specialize(where S == CountingSink)
    @_specialize(where S == ByteCollector)
    @_specialize(where S == FileDescriptorSink)
    public static func read<S: ProcSink>(_ mm: AddressSpace, _ range: Range<UInt64>, privileged: Bool,
                                         to w: inout ProcWriter<S>, options: ProcOptions = ProcOptions()) throws(PageWalkError) {
        let start = range.lowerBound
        let end = Swift.min(range.upperBound, mm.geometry.userAddressLimit)
        guard start & Geometry.pageOffsetMask == 0, range.upperBound & Geometry.pageOffsetMask == 0 else {
            throw .invalidRange(start: range.lowerBound, end: range.upperBound)
        }
        guard start < end else { return }
        let enc = Encoder(layout: mm.geometry.layout, privileged: privileged, memory: mm.memory,
                          pmdSize: mm.geometry.entrySize(.pmd))
        // pagemap_read() walks one PMD-sized chunk at a time into a buffer
        // of its own, then drops the mmap lock (and with it every table
        // lock) before copying to user space: a reader that stalls in the
        // copy never holds a lock a faulting thread waits for.
        let chunkSize = mm.geometry.entrySize(.pmd)
        var chunk = ProcWriter(ByteCollector(), capacity: Int(chunkSize >> Geometry.pageShift) * PagemapBits.entryBytes)
        var s = start
        while s < end {
            let e = Swift.min(end, (s & ~(chunkSize - 1)) &+ chunkSize)
            let chunkEnd = e > s ? e : end
            try mm.withMmapReadLock { (lock) throws(PageWalkError) in
                switch options.walker {
                case .range: try readRange(mm, s, chunkEnd, lock: lock, batching: options.batching, enc, &chunk)
                case .callback: try readCallback(mm, s, chunkEnd, enc, &chunk)
                }
            }
            chunk.moveBuffered(into: &w)
            s = chunkEnd
        }
    }

    /// The words as an array (tests, comparisons).
    public static func words(_ mm: AddressSpace, _ range: Range<UInt64>, privileged: Bool,
                             options: ProcOptions = ProcOptions()) throws(PageWalkError) -> [UInt64] {
        // The words are collected in memory: a range whose words could not be
        // held (the whole of user space is 2^35 of them) is refused, not a
        // crash; the kernel reads through a bounded buffer, `read(_:_:to:)`
        // streams.
        let end = Swift.min(range.upperBound, mm.geometry.userAddressLimit)
        let wanted = end > range.lowerBound ? (end - range.lowerBound) / Geometry.pageSize * 8 : 0
        guard wanted <= Pagemap.maxCollectedBytes else {
            throw .model(.outOfMemory(requestedBytes: wanted, budgetBytes: Pagemap.maxCollectedBytes))
        }
        var w = ProcWriter(ByteCollector())
        try read(mm, range, privileged: privileged, to: &w, options: options)
        let bytes = w.finish().bytes
        return stride(from: 0, to: bytes.count, by: 8).map { i in
            var v: UInt64 = 0
            for k in 0..<8 { v |= UInt64(bytes[i + k]) << UInt64(8 * k) }
            return v
        }
    }

    /// The per-entry encoding both walkers share.
    struct Encoder {
        let layout: EntryLayout
        let privileged: Bool
        let memory: PhysicalMemory
        let pmdSize: UInt64
        /// The PFN bits a present page's word shows: none unprivileged.
        let shownPFN: UInt64

        init(layout: EntryLayout, privileged: Bool, memory: PhysicalMemory, pmdSize: UInt64) {
            self.layout = layout
            self.privileged = privileged
            self.memory = memory
            self.pmdSize = pmdSize
            shownPFN = privileged ? PagemapBits.pfnMask : 0
        }

        @inline(always)
        func vmaBits(_ vma: VMA?) -> UInt64 { vma?.flags.contains(.softDirty) == true ? PagemapBits.softDirty : 0 }

        /// `count` holes (none entries, missing tables, gaps, PFN maps);
        /// `vbits` is `vmaBits()` of their VMA (nil outside VMAs).
        @inline(always)
        func holes<S: ProcSink>(_ vbits: UInt64, _ count: Int, _ w: inout ProcWriter<S>) {
            w.writeLE64(count: count) { _ in vbits }
        }

        /// Present PTEs mapping pages `first ..< first + count` of `folio`
        /// (nil: no normal page) from frame `pfn`.
        @inline(always)
        func presentPTEs<S: ProcSink>(_ vbits: UInt64, pfn: UInt64, folio: Folio?, first: Int, count: Int,
                                      softDirty: Bool, uffdWP: Bool, _ w: inout ProcWriter<S>) {
            let flags = presentFlags(vbits, folio: folio, softDirty: softDirty, uffdWP: uffdWP)
            guard let f = folio else {
                let pfnMask = privileged ? PagemapBits.pfnMask : 0
                w.writeLE64(count: count) { k in flags | ((pfn &+ UInt64(truncatingIfNeeded: k)) & pfnMask) }
                return
            }
            w.writeLE64(count: count) { k in presentWord(flags, folio: f, page: first &+ k, pfn: pfn &+ UInt64(truncatingIfNeeded: k)) }
        }

        /// The bits every present page of a run shares (`pte_to_pagemap_entry()`
        /// of a present PTE, before the per-page exclusive bit and the PFN).
        @inline(always)
        func presentFlags(_ vbits: UInt64, folio: Folio?, softDirty: Bool, uffdWP: Bool) -> UInt64 {
            var flags = PagemapBits.present | vbits
            if softDirty { flags |= PagemapBits.softDirty }
            if uffdWP { flags |= PagemapBits.uffdWP }
            if let f = folio, !f.test(.anon) { flags |= PagemapBits.file }
            return flags
        }

        /// The word of page `page` of `f`, frame `pfn`: exclusive when that
        /// page is mapped once (`page_mapcount() == 1`).
        @inline(always)
        func presentWord(_ flags: UInt64, folio f: Folio, page: Int, pfn: UInt64) -> UInt64 {
            let exclusive = f.pageMapcount(page) == 1 ? PagemapBits.exclusive : 0
            return flags | exclusive | (pfn & shownPFN)
        }

        /// A PMD leaf seen from `pfn` (`count` pages). Linux 6.18 tests
        /// exclusivity on the PMD's first page for every page.
        @inline(always)
        func presentPMD<S: ProcSink>(_ vbits: UInt64, pfn: UInt64, basePFN: UInt64, count: Int, softDirty: Bool,
                                     uffdWP: Bool, _ w: inout ProcWriter<S>) {
            var flags = PagemapBits.present | vbits
            if softDirty { flags |= PagemapBits.softDirty }
            if uffdWP { flags |= PagemapBits.uffdWP }
            if let f = memory.folio(containing: basePFN) {
                if !f.test(.anon) { flags |= PagemapBits.file }
                if f.pageMapcount(Int(basePFN - f.pfn)) == 1 { flags |= PagemapBits.exclusive }
            }
            let pfnMask = privileged ? PagemapBits.pfnMask : 0
            w.writeLE64(count: count) { k in flags | ((pfn &+ UInt64(truncatingIfNeeded: k)) & pfnMask) }
        }

        /// Non-present entries: `type` and `offset` of the first, the page
        /// they name (pfn entries), the swap-PTE bits.
        func swapEntries<S: ProcSink>(_ vbits: UInt64, type: Int, offset: UInt64, step: Bool, pagePFN: UInt64?, count: Int,
                                      softDirty: Bool, uffdWP: Bool, guardRegion: Bool, _ w: inout ProcWriter<S>) {
            var flags = PagemapBits.swap | vbits
            if softDirty { flags |= PagemapBits.softDirty }
            if uffdWP { flags |= PagemapBits.uffdWP }
            if guardRegion { flags |= PagemapBits.guardRegion }
            if let pfn = pagePFN, let f = memory.folio(containing: pfn), !f.test(.anon) { flags |= PagemapBits.file }
            guard privileged else { w.writeLE64(count: count) { _ in flags }; return }
            let stride: UInt64 = step ? 1 : 0
            w.writeLE64(count: count) { k in
                flags | PagemapBits.swapEntry(type: UInt64(type), offset: offset &+ UInt64(truncatingIfNeeded: k) &* stride)
            }
        }

        /// One hugetlb page's part `[addr, next)` (`pagemap_hugetlb_range()`).
        func hugetlb<S: ProcSink>(_ vbits: UInt64, present: Bool, pfn: UInt64, uffdWP: Bool, count: Int,
                                  _ w: inout ProcWriter<S>) {
            var flags = vbits
            if present {
                flags |= PagemapBits.present
                if let f = memory.folio(containing: pfn) {
                    if !f.test(.anon) { flags |= PagemapBits.file }
                    // !folio_maybe_mapped_shared() (PMD table sharing is not modelled).
                    if f.mapcount <= 1 { flags |= PagemapBits.exclusive }
                }
            }
            if uffdWP { flags |= PagemapBits.uffdWP }
            let pfnMask = privileged && present ? PagemapBits.pfnMask : 0
            w.writeLE64(count: count) { k in flags | ((pfn &+ UInt64(truncatingIfNeeded: k)) & pfnMask) }
        }

        /// A decoded non-present PTE or PMD (`count` pages, the first at
        /// `offset` pages into the entry).
        func softLeaf<S: ProcSink>(_ vbits: UInt64, raw: UInt64, _ entry: SoftLeafEntry, pageOffset: UInt64, count: Int,
                                   _ w: inout ProcWriter<S>) {
            let sd = entry.bits.contains(.softDirty)
            var uffd = entry.bits.contains(.uffdWP)
            let type = layout.swapType(raw)
            switch entry.leaf {
            case .swap(let s):
                swapEntries(vbits, type: type, offset: s.offset + pageOffset, step: true, pagePFN: nil, count: count,
                            softDirty: sd, uffdWP: uffd, guardRegion: false, &w)
            case .migration(_, let pfn, _, _), .devicePrivate(_, let pfn), .deviceExclusive(let pfn), .hwpoison(let pfn):
                swapEntries(vbits, type: type, offset: pfn + pageOffset, step: true, pagePFN: pfn + pageOffset, count: count,
                            softDirty: sd, uffdWP: uffd, guardRegion: false, &w)
            case .marker(let m):
                if m.contains(.uffdWP) { uffd = true }
                swapEntries(vbits, type: type, offset: m.rawValue, step: false, pagePFN: nil, count: count,
                            softDirty: sd, uffdWP: uffd, guardRegion: m.contains(.guardRegion), &w)
            }
        }
    }

    // MARK: Range walker

    /// Batches may not merge entries differing in soft-dirty or uffd-wp
    /// (both are per-page bits); holes are reported and PFN maps read as holes.
    public static let walkOptions = RangeWalkOptions(batching: true, respect: [.softDirty, .uffdWP],
                                                     reportHoles: true, pfnMap: .hole)

    static func readRange<S: ProcSink>(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64, lock: AddressSpace.MmapLockToken,
                                       batching: Bool, _ enc: Encoder, _ w: inout ProcWriter<S>) throws(PageWalkError) {
        var opts = walkOptions
        opts.batching = batching
        // Per-VMA values, read again only when the entries reach another VMA.
        var vma: VMA? = nil
        var current = VMAIdentity.unset
        var vbits: UInt64 = 0
        var huge = false
        for e in try mm.walk(start..<end, lock: lock, options: opts) {
            let pages = e.pageCount
            if e.vmaIdentity != current {
                current = e.vmaIdentity
                vma = try e.vma
                vbits = enc.vmaBits(vma)
                huge = vma?.isHugetlb ?? false
            }
            guard vma != nil else { enc.holes(0, pages, &w); continue }
            if huge {
                switch e.content {
                case .folio(let f, let first, _):
                    enc.hugetlb(vbits, present: true, pfn: f.pfn + UInt64(first), uffdWP: e.entryAttributesContain(.uffdWP), count: pages, &w)
                case .pfn(let pfn):
                    enc.hugetlb(vbits, present: true, pfn: pfn, uffdWP: e.entryAttributesContain(.uffdWP), count: pages, &w)
                case .marker(let m):
                    enc.hugetlb(vbits, present: false, pfn: 0, uffdWP: m.contains(.uffdWP) || e.entryAttributesContain(.uffdWP), count: pages, &w)
                default:
                    enc.hugetlb(vbits, present: false, pfn: 0, uffdWP: e.entryAttributesContain(.uffdWP), count: pages, &w)
                }
                continue
            }
            let pmdLevel = e.level.tableLevel != .pte
            let sd = e.entryAttributesContain(.softDirty), uffd = e.entryAttributesContain(.uffdWP)
            switch e.content {
            case .none, .hole:
                enc.holes(vbits, pages, &w)
            case .folio(let f, let first, let n):
                let pfn = f.pfn &+ UInt64(truncatingIfNeeded: first)
                if pmdLevel {
                    let base = pfn - ((e.start & (enc.pmdSize - 1)) >> Geometry.pageShift)
                    enc.presentPMD(vbits, pfn: pfn, basePFN: base, count: n, softDirty: sd, uffdWP: uffd, &w)
                } else {
                    // presentPTEs(), spelled out so that the page loop is compiled into this one.
                    let flags = enc.presentFlags(vbits, folio: f, softDirty: sd, uffdWP: uffd)
                    w.writeLE64(count: n) { k in enc.presentWord(flags, folio: f, page: first &+ k, pfn: pfn &+ UInt64(truncatingIfNeeded: k)) }
                }
            case .pfn(let pfn):
                if pmdLevel {
                    let base = pfn - ((e.start & (enc.pmdSize - 1)) >> Geometry.pageShift)
                    enc.presentPMD(vbits, pfn: pfn, basePFN: base, count: pages, softDirty: sd, uffdWP: uffd, &w)
                } else {
                    enc.presentPTEs(vbits, pfn: pfn, folio: nil, first: 0, count: pages, softDirty: sd, uffdWP: uffd, &w)
                }
            case .present:
                break   // not produced: this walk looks folios up
            case .swap, .migration, .device, .hwpoison, .marker:
                let entry = SoftLeafEntry(decoding: e.raw, layout: enc.layout)
                let offset = pmdLevel ? (e.start & (enc.pmdSize - 1)) >> Geometry.pageShift : 0
                enc.softLeaf(vbits, raw: e.raw, entry, pageOffset: offset, count: pages, &w)
            }
        }
    }

    // MARK: Callback walker

    static func readCallback<S: ProcSink>(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64, _ enc: Encoder,
                                          _ w: inout ProcWriter<S>) throws(PageWalkError) {
        let layout = enc.layout
        var ops = MMWalkOps<ProcWriter<S>>()
        ops.pteHole = { s, e, _, walk in
            enc.holes(enc.vmaBits(walk.vma), Int((e - s) >> Geometry.pageShift), &walk.privateData)
            return 0
        }
        ops.pmdEntry = { p, addr, next, walk in
            if p.hasTrivialEntries { return 0 }
            let raw = p.rawValue
            if raw == 0 || layout.isTable(raw, .pmd) { return 0 }
            walk.action = .continue
            let vma = walk.vma!
            let pages = Int((next - addr) >> Geometry.pageShift)
            let offset = (addr & (enc.pmdSize - 1)) >> Geometry.pageShift
            if layout.isPresent(raw, .pmd) {
                let pmd = p.entry
                enc.presentPMD(enc.vmaBits(vma), pfn: layout.pfn(raw) + offset, basePFN: layout.pfn(raw), count: pages,
                               softDirty: pmd.isSoftDirty, uffdWP: pmd.isUffdWP, &walk.privateData)
            } else {
                enc.softLeaf(enc.vmaBits(vma), raw: raw, SoftLeafEntry(decoding: raw, layout: layout), pageOffset: offset, count: pages,
                             &walk.privateData)
            }
            return 0
        }
        ops.pteEntry = { p, _, _, walk in
            let raw = p.rawValue
            let vma = walk.vma!
            if raw == 0 {
                enc.holes(enc.vmaBits(vma), 1, &walk.privateData)
            } else if layout.isPresent(raw, .pte) {
                let pte = p.entry
                let pfn = layout.pfn(raw)
                let folio = raw & layout.special == 0 ? enc.memory.folio(containing: pfn) : nil
                enc.presentPTEs(enc.vmaBits(vma), pfn: pfn, folio: folio, first: folio.map { Int(pfn - $0.pfn) } ?? 0, count: 1,
                                softDirty: pte.isSoftDirty, uffdWP: pte.isUffdWP, &walk.privateData)
            } else {
                enc.softLeaf(enc.vmaBits(vma), raw: raw, SoftLeafEntry(decoding: raw, layout: layout), pageOffset: 0, count: 1,
                             &walk.privateData)
            }
            return 0
        }
        ops.hugetlbEntry = { p, hmask, addr, next, walk in
            let raw = p.rawValue
            let vma = walk.vma!
            let level = p.slot.level
            let pages = Int((next - addr) >> Geometry.pageShift)
            if layout.isPresent(raw, level) {
                let pfn = layout.pfn(raw) + ((addr & ~hmask) >> Geometry.pageShift)
                enc.hugetlb(enc.vmaBits(vma), present: true, pfn: pfn, uffdWP: raw & layout.uffdWP != 0, count: pages, &walk.privateData)
            } else {
                var uffd = false
                if raw != 0 {
                    let leaf = SoftLeafEntry(decoding: raw, layout: layout)
                    uffd = leaf.bits.contains(.uffdWP)
                    if case .marker(let m) = leaf.leaf, m.contains(.uffdWP) { uffd = true }
                }
                enc.hugetlb(enc.vmaBits(vma), present: false, pfn: 0, uffdWP: uffd, count: pages, &walk.privateData)
            }
            return 0
        }
        _ = try walkPageRange(mm, start, end, ops: ops, private: &w)
    }
}
