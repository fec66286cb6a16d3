import MemoryModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PageWalk

/// The `PAGEMAP_SCAN` ioctl on /proc/PID/pagemap (fs/proc/task_mmu.c:
/// do_pagemap_scan() and the pagemap_scan_* helpers; include/uapi/linux/fs.h):
/// finds the pages of a range whose categories match the masks and returns
/// them as merged `{start, end, categories}` regions.
///
/// The model scans only: `PM_SCAN_WP_MATCHING` (write-protecting what
/// matched) is refused. A VMA counts as `PAGE_IS_WPALLOWED` when it has
/// VM_UFFD_WP (the model's stand-in for a userfaultfd registered with
/// `UFFD_FEATURE_WP_ASYNC` and `UFFD_FEATURE_WP_UNPOPULATED`).
public enum PagemapScan {
    /// `PAGE_IS_*`.
    public struct Category: OptionSet, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: UInt64
        public init(rawValue: UInt64) { self.rawValue = rawValue }
        public static let wpAllowed = Category(rawValue: 1 << 0)
        public static let written = Category(rawValue: 1 << 1)
        public static let file = Category(rawValue: 1 << 2)
        public static let present = Category(rawValue: 1 << 3)
        public static let swapped = Category(rawValue: 1 << 4)
        public static let pfnZero = Category(rawValue: 1 << 5)
        public static let huge = Category(rawValue: 1 << 6)
        public static let softDirty = Category(rawValue: 1 << 7)
        public static let guardRegion = Category(rawValue: 1 << 8)
        /// `PM_SCAN_CATEGORIES`.
        public static let all: Category = [.wpAllowed, .written, .file, .present, .swapped, .pfnZero, .huge, .softDirty, .guardRegion]
        public var description: String { "0x" + String(rawValue, radix: 16) }
    }

    /// `PM_SCAN_WP_MATCHING`, `PM_SCAN_CHECK_WPASYNC`.
    public struct Flags: OptionSet, Hashable, Sendable {
        public let rawValue: UInt64
        public init(rawValue: UInt64) { self.rawValue = rawValue }
        public static let wpMatching = Flags(rawValue: 1 << 0)
        public static let checkWPAsync = Flags(rawValue: 1 << 1)
    }

    /// `struct pm_scan_arg` (the output vector is returned, `vecLen` is its
    /// capacity).
    public struct Arguments: Hashable, Sendable {
        public var start: UInt64
        public var end: UInt64
        public var flags: Flags
        public var vecLen: Int
        /// 0: no limit.
        public var maxPages: UInt64
        public var categoryInverted: Category
        public var categoryMask: Category
        public var categoryAnyofMask: Category
        public var returnMask: Category

        public init(start: UInt64, end: UInt64, flags: Flags = [], vecLen: Int = 1 << 16, maxPages: UInt64 = 0,
                    categoryInverted: Category = [], categoryMask: Category = [], categoryAnyofMask: Category = [],
                    returnMask: Category = .all) {
            self.start = start; self.end = end; self.flags = flags; self.vecLen = vecLen; self.maxPages = maxPages
            self.categoryInverted = categoryInverted; self.categoryMask = categoryMask
            self.categoryAnyofMask = categoryAnyofMask; self.returnMask = returnMask
        }
    }

    /// `struct page_region`.
    public struct Region: Hashable, Sendable, CustomStringConvertible {
        public var start: UInt64
        public var end: UInt64
        public var categories: Category
        public init(start: UInt64, end: UInt64, categories: Category) {
            self.start = start; self.end = end; self.categories = categories
        }
        public var description: String {
            "0x\(String(start, radix: 16))-0x\(String(end, radix: 16)) \(categories)"
        }
    }

    /// What the ioctl returns: the regions written, `walk_end`, and the
    /// return value (the number of regions, or a negative errno).
    public struct Result: Hashable, Sendable {
        public var regions: [Region]
        public var walkEnd: UInt64
        public var value: Int
    }

    public enum ScanError: Error, CustomStringConvertible {
        /// EINVAL from `pagemap_scan_get_args()`.
        case invalidArgument(String)
        /// EFAULT: the range is not user memory.
        case badAddress
        /// The model does not write-protect.
        case unsupported(String)
        case walk(PageWalkError)
        public var description: String {
            switch self {
            case .invalidArgument(let s): return "EINVAL: \(s)"
            case .badAddress: return "EFAULT: range outside user space"
            case .unsupported(let s): return "unsupported: \(s)"
            case .walk(let e): return "walk failed: \(e)"
            }
        }
    }

    static let enospc = -Int(ENOSPC)
    static let eperm = -Int(EPERM)

    /// Runs the scan.
    public static func scan(_ mm: AddressSpace, _ args: Arguments,
                            options: ProcOptions = ProcOptions()) throws(ScanError) -> Result {
        var a = args
        guard a.flags.subtracting([.wpMatching, .checkWPAsync]).isEmpty else { throw .invalidArgument("unknown flags") }
        if a.flags.contains(.wpMatching) { throw .unsupported("PM_SCAN_WP_MATCHING") }
        let masks = a.categoryInverted.union(a.categoryMask).union(a.categoryAnyofMask).union(a.returnMask)
        guard masks.subtracting(.all).isEmpty else { throw .invalidArgument("unknown categories") }
        guard a.start & Geometry.pageOffsetMask == 0 else { throw .invalidArgument("start not page aligned") }
        guard a.end >= a.start, a.end <= mm.geometry.userAddressLimit else { throw .badAddress }
        guard a.vecLen >= 0 else { throw .invalidArgument("vec_len") }
        a.end = (a.end + Geometry.pageOffsetMask) & ~Geometry.pageOffsetMask
        if a.maxPages == 0 { a.maxPages = UInt64.max }
        var s = State(a)
        var ret = 0
        var walkStart = a.start
        while walkStart < a.end {
            do {
                ret = try mm.withMmapReadLock { (lock) throws(PageWalkError) -> Int in
                    switch options.walker {
                    case .range: return try walkRange(mm, walkStart, lock: lock, batching: options.batching, &s)
                    case .callback: return try walkCallback(mm, walkStart, &s)
                    }
                }
            } catch {
                throw .walk(error)
            }
            s.flush()
            if ret != enospc { break }
            if s.vecLen == 0 || s.foundPages == s.arg.maxPages { break }
            walkStart = s.walkEnd
        }
        if ret == 0 || ret == enospc { ret = s.out.count }
        if s.walkEnd == 0 { s.walkEnd = a.end }
        return Result(regions: s.out, walkEnd: s.walkEnd, value: ret)
    }

    /// `struct pagemap_scan_private` plus the output; the category and
    /// output logic both walkers share.
    struct State {
        let arg: Arguments
        let masksOfInterest: Category
        var curVMACategory: Category = []
        /// The bounce buffer (`vec_buf`), nil without an output vector.
        var buf: [Region]?
        var bufLen = 0
        var bufIndex = 0
        var foundPages: UInt64 = 0
        var vecLen: Int
        var walkEnd: UInt64 = 0
        var out: [Region] = []

        init(_ a: Arguments) {
            arg = a
            masksOfInterest = a.categoryMask.union(a.categoryAnyofMask).union(a.returnMask)
            vecLen = a.vecLen
            if a.vecLen > 0 {
                bufLen = Swift.min(512, a.vecLen)
                buf = Array(repeating: Region(start: 0, end: 0, categories: []), count: bufLen)
            }
        }

        /// The fast path of `pagemap_scan_pmd_entry()`: only WRITTEN asked
        /// and returned.
        var writtenOnly: Bool {
            arg.categoryAnyofMask.isEmpty && arg.categoryInverted.isEmpty
                && arg.categoryMask == .written && arg.returnMask == .written
        }

        func isInterestingPage(_ c: Category) -> Bool {
            let x = Category(rawValue: c.rawValue ^ arg.categoryInverted.rawValue)
            if !x.isSuperset(of: arg.categoryMask) { return false }
            if !arg.categoryAnyofMask.isEmpty && x.isDisjoint(with: arg.categoryAnyofMask) { return false }
            return true
        }

        /// `pagemap_scan_test_walk()`: 0 walk, 1 skip, < 0 error.
        mutating func testVMA(_ vma: VMA) -> Int {
            let wpAllowed = vma.flags.contains(.uffdWP)
            if !wpAllowed {
                if arg.flags.contains(.checkWPAsync) { return PagemapScan.eperm }
                if arg.flags.contains(.wpMatching) { return 1 }
            }
            if vma.isPFNMap { return 1 }
            var c: Category = []
            if wpAllowed { c.insert(.wpAllowed) }
            if vma.flags.contains(.softDirty) { c.insert(.softDirty) }
            let required = arg.categoryMask.intersection(.wpAllowed)
            let x = Category(rawValue: c.rawValue ^ arg.categoryInverted.rawValue)
            if !x.isSuperset(of: required) { return 1 }
            curVMACategory = c
            return 0
        }

        mutating func pushRange(_ c: Category, _ addr: UInt64, _ end: UInt64) -> Bool {
            if addr == buf![bufIndex].end && c == buf![bufIndex].categories {
                buf![bufIndex].end = end
                return true
            }
            if buf![bufIndex].end != 0 {
                if bufIndex >= bufLen - 1 { return false }
                bufIndex += 1
            }
            buf![bufIndex] = Region(start: addr, end: end, categories: c)
            return true
        }

        /// `pagemap_scan_output()`: reports `[addr, end)`, cut at max_pages or
        /// at a full buffer; returns 0 or -ENOSPC and the end reached.
        mutating func output(_ categories: Category, _ addr: UInt64, _ end: UInt64) -> (Int, UInt64) {
            guard buf != nil else { return (0, end) }
            let c = categories.intersection(arg.returnMask)
            var end = end
            var nPages = (end - addr) >> Geometry.pageShift
            var ret = 0
            let (total, overflow) = foundPages.addingReportingOverflow(nPages)
            if overflow || total > arg.maxPages {
                let tooMuch = total &- arg.maxPages
                end -= tooMuch << Geometry.pageShift
                nPages -= tooMuch
                ret = PagemapScan.enospc
            }
            if !pushRange(c, addr, end) {
                end = addr
                nPages = 0
                ret = PagemapScan.enospc
            }
            foundPages += nPages
            if ret != 0 { walkEnd = end }
            return (ret, end)
        }

        /// Reports `[addr, end)` if interesting. Returns nil to go on, or the
        /// walk's result when the output is cut: a cut batch stops where a
        /// page-by-page walk would have stopped.
        mutating func report(_ c: Category, _ addr: UInt64, _ end: UInt64, interesting: Bool) -> Int? {
            guard interesting || isInterestingPage(c) else { return nil }
            let (ret, reached) = output(c, addr, end)
            return reached != end ? ret : (ret != 0 ? ret : nil)
        }

        /// `pagemap_scan_flush_buffer()`.
        mutating func flush() {
            guard let b = buf else { return }
            var n = bufIndex
            if b[n].end != b[n].start { n += 1 }
            if n == 0 { return }
            out.append(contentsOf: b[0..<n])
            vecLen -= n
            bufIndex = 0
            bufLen = Swift.min(bufLen, vecLen)
            buf![0].start = 0
            buf![0].end = 0
        }

        // MARK: Categories (shared by both walkers)

        /// A present PTE (`pagemap_page_category()`).
        func presentPTE(folio: Folio?, pfn: UInt64, zeroPFN: UInt64, uffdWP: Bool, softDirty: Bool) -> Category {
            var c: Category = .present
            if !uffdWP { c.insert(.written) }
            if masksOfInterest.contains(.file), let f = folio, !f.test(.anon) { c.insert(.file) }
            if pfn == zeroPFN { c.insert(.pfnZero) }
            if softDirty { c.insert(.softDirty) }
            return c
        }

        /// A swap-format PTE: swap, migration, device, hwpoison or marker.
        func swapPTE(_ entry: SoftLeafEntry, memory: PhysicalMemory) -> Category {
            var c: Category = .swapped
            var uffd = entry.bits.contains(.uffdWP)
            if case .marker(let m) = entry.leaf, m.contains(.uffdWP) { uffd = true }
            if !uffd { c.insert(.written) }
            if case .marker(let m) = entry.leaf, m.contains(.guardRegion) {
                c.insert(.guardRegion)
            } else if masksOfInterest.contains(.file), let pfn = entry.leaf.pfn,
                      let f = memory.folio(containing: pfn), !f.test(.anon) {
                c.insert(.file)
            }
            if entry.bits.contains(.softDirty) { c.insert(.softDirty) }
            return c
        }

        /// A PMD leaf or PMD migration entry (`pagemap_thp_category()`).
        func pmd(present: Bool, normalFolio: Folio?, pfn: UInt64, zeroPFN: UInt64, uffdWP: Bool, softDirty: Bool,
                 entry: SoftLeafEntry?, memory: PhysicalMemory) -> Category {
            var c: Category = .huge
            if present {
                c.insert(.present)
                if !uffdWP { c.insert(.written) }
                if masksOfInterest.contains(.file), let f = normalFolio, !f.test(.anon) { c.insert(.file) }
                if pfn == zeroPFN { c.insert(.pfnZero) }
                if softDirty { c.insert(.softDirty) }
            } else if let entry {
                c.insert(.swapped)
                if !entry.bits.contains(.uffdWP) { c.insert(.written) }
                if entry.bits.contains(.softDirty) { c.insert(.softDirty) }
                if masksOfInterest.contains(.file), let p = entry.leaf.pfn, let f = memory.folio(containing: p), !f.test(.anon) {
                    c.insert(.file)
                }
            }
            return c
        }

        /// A hugetlb entry (`pagemap_hugetlb_category()`).
        func hugetlb(raw: UInt64, present: Bool, folio: Folio?, pfn: UInt64, zeroPFN: UInt64, layout: EntryLayout) -> Category {
            var c: Category = .huge
            if present {
                c.insert(.present)
                if raw & layout.uffdWP == 0 { c.insert(.written) }
                if let f = folio, !f.test(.anon) { c.insert(.file) }
                if pfn == zeroPFN { c.insert(.pfnZero) }
                if raw & layout.softDirty != 0 { c.insert(.softDirty) }
            } else if raw != 0 {
                let e = SoftLeafEntry(decoding: raw, layout: layout)
                c.insert(.swapped)
                var uffd = e.bits.contains(.uffdWP)
                if case .marker(let m) = e.leaf, m.contains(.uffdWP) { uffd = true }
                if !uffd { c.insert(.written) }
                if e.bits.contains(.softDirty) { c.insert(.softDirty) }
            }
            return c
        }
    }

    /// Whether the hugetlb page at `addr` has its entry (table present),
    /// as `hugetlb_walk()` finds it; otherwise the walk reports a hole.
    static func hugetlbEntryExists(_ mm: AddressSpace, _ vma: VMA, _ addr: UInt64) -> Bool {
        let level = mm.hugetlbEntryShape(forSize: vma.hugePageSize).level
        switch mm.translate(addr & ~(vma.hugePageSize - 1)) {
        case .none(let l): return l == level
        case .present, .softLeaf: return true
        }
    }

    // MARK: Range walker

    /// Scan batches must agree on uffd-wp and soft-dirty (both decide
    /// categories); holes come as `.none` entries of upper levels.
    public static let walkOptions = RangeWalkOptions(batching: true, respect: [.uffdWP, .softDirty])

    static func walkRange(_ mm: AddressSpace, _ start: UInt64, lock: AddressSpace.MmapLockToken, batching: Bool,
                          _ s: inout State) throws(PageWalkError) -> Int {
        let end = s.arg.end
        let memory = mm.memory
        let layout = mm.geometry.layout
        let zeroPFN = memory.zeroPage.pfn
        var opts = walkOptions
        opts.batching = batching
        let fast = s.writtenOnly
        for vma in mm.vmas(intersecting: start, end) {
            let t = s.testVMA(vma)
            if t < 0 { return t }
            if t > 0 { continue }
            let cur = s.curVMACategory
            for e in try mm.walk(Swift.max(start, vma.start)..<Swift.min(end, vma.end), lock: lock, options: opts) {
                var c: Category
                var forced = false
                if vma.isHugetlb {
                    switch e.content {
                    case .none:
                        c = hugetlbEntryExists(mm, vma, e.start) ? cur.union(.huge) : cur
                    case .folio(let f, let first, _):
                        c = cur.union(s.hugetlb(raw: e.raw, present: true, folio: f, pfn: f.pfn + UInt64(first), zeroPFN: zeroPFN, layout: layout))
                    case .pfn(let pfn):
                        c = cur.union(s.hugetlb(raw: e.raw, present: true, folio: nil, pfn: pfn, zeroPFN: zeroPFN, layout: layout))
                    default:
                        c = cur.union(s.hugetlb(raw: e.raw, present: false, folio: nil, pfn: 0, zeroPFN: zeroPFN, layout: layout))
                    }
                } else if e.level.tableLevel != .pte {
                    switch e.content {
                    case .none, .hole:
                        c = cur   // pagemap_scan_pte_hole()
                    case .folio(let f, let first, _):
                        c = cur.union(s.pmd(present: true, normalFolio: f, pfn: f.pfn + UInt64(first), zeroPFN: zeroPFN,
                                            uffdWP: e.entryAttributesContain(.uffdWP), softDirty: e.entryAttributesContain(.softDirty),
                                            entry: nil, memory: memory))
                    case .pfn(let pfn):
                        c = cur.union(s.pmd(present: true, normalFolio: nil, pfn: pfn, zeroPFN: zeroPFN,
                                            uffdWP: e.entryAttributesContain(.uffdWP), softDirty: e.entryAttributesContain(.softDirty),
                                            entry: nil, memory: memory))
                    default:
                        c = cur.union(s.pmd(present: false, normalFolio: nil, pfn: 0, zeroPFN: zeroPFN, uffdWP: false, softDirty: false,
                                            entry: SoftLeafEntry(decoding: e.raw, layout: layout), memory: memory))
                    }
                } else if fast {
                    // Written-only fast path: every PTE not uffd-wp protected.
                    switch e.content {
                    case .folio, .pfn:
                        if e.entryAttributesContain(.uffdWP) { continue }
                    case .none:
                        break
                    default:
                        let entry = SoftLeafEntry(decoding: e.raw, layout: layout)
                        if entry.bits.contains(.uffdWP) { continue }
                        if case .marker(let m) = entry.leaf, m.contains(.uffdWP) { continue }
                    }
                    c = cur.union(.written)
                    forced = true
                } else {
                    switch e.content {
                    case .none, .hole:
                        c = cur
                    case .folio(let f, let first, _):
                        c = cur.union(s.presentPTE(folio: f, pfn: f.pfn + UInt64(first), zeroPFN: zeroPFN,
                                                   uffdWP: e.entryAttributesContain(.uffdWP), softDirty: e.entryAttributesContain(.softDirty)))
                    case .pfn(let pfn):
                        c = cur.union(s.presentPTE(folio: nil, pfn: pfn, zeroPFN: zeroPFN,
                                                   uffdWP: e.entryAttributesContain(.uffdWP), softDirty: e.entryAttributesContain(.softDirty)))
                    default:
                        c = cur.union(s.swapPTE(SoftLeafEntry(decoding: e.raw, layout: layout), memory: memory))
                    }
                }
                if let r = s.report(c, e.start, e.end, interesting: forced) { return r }
            }
        }
        return 0
    }

    // MARK: Callback walker

    static func walkCallback(_ mm: AddressSpace, _ start: UInt64, _ s: inout State) throws(PageWalkError) -> Int {
        let memory = mm.memory
        let layout = mm.geometry.layout
        let zeroPFN = memory.zeroPage.pfn
        let fast = s.writtenOnly
        var ops = MMWalkOps<State>()
        ops.testWalk = { _, _, walk in Int32(walk.privateData.testVMA(walk.vma!)) }
        ops.pteHole = { a, e, _, walk in
            guard walk.vma != nil else { return 0 }
            let c = walk.privateData.curVMACategory
            return Int32(walk.privateData.report(c, a, e, interesting: false) ?? 0)
        }
        ops.pmdEntry = { p, addr, next, walk in
            if p.hasTrivialEntries { return 0 }
            let raw = p.rawValue
            if raw == 0 || layout.isTable(raw, .pmd) { return 0 }
            walk.action = .continue
            let cur = walk.privateData.curVMACategory
            let c: Category
            if layout.isPresent(raw, .pmd) {
                let pfn = layout.pfn(raw) + ((addr >> Geometry.pageShift) & 511)
                let f = memory.folio(containing: pfn).flatMap { $0.isZero ? nil : $0 }
                let pmd = p.entry
                c = cur.union(walk.privateData.pmd(present: true, normalFolio: f, pfn: pfn, zeroPFN: zeroPFN,
                                                   uffdWP: pmd.isUffdWP, softDirty: pmd.isSoftDirty, entry: nil, memory: memory))
            } else {
                c = cur.union(walk.privateData.pmd(present: false, normalFolio: nil, pfn: 0, zeroPFN: zeroPFN, uffdWP: false,
                                                   softDirty: false, entry: SoftLeafEntry(decoding: raw, layout: layout), memory: memory))
            }
            return Int32(walk.privateData.report(c, addr, next, interesting: false) ?? 0)
        }
        ops.pteEntry = { p, addr, next, walk in
            let raw = p.rawValue
            let cur = walk.privateData.curVMACategory
            var c: Category
            if fast {
                if raw != 0 {
                    if layout.isPresent(raw, .pte) {
                        if p.entry.isUffdWP { return 0 }
                    } else {
                        let entry = SoftLeafEntry(decoding: raw, layout: layout)
                        if entry.bits.contains(.uffdWP) { return 0 }
                        if case .marker(let m) = entry.leaf, m.contains(.uffdWP) { return 0 }
                    }
                }
                c = cur.union(.written)
                return Int32(walk.privateData.report(c, addr, next, interesting: true) ?? 0)
            }
            if raw == 0 {
                c = cur
            } else if layout.isPresent(raw, .pte) {
                let pfn = layout.pfn(raw)
                let f = raw & layout.special == 0 ? memory.folio(containing: pfn) : nil
                let pte = p.entry
                c = cur.union(walk.privateData.presentPTE(folio: f, pfn: pfn, zeroPFN: zeroPFN, uffdWP: pte.isUffdWP,
                                                          softDirty: pte.isSoftDirty))
            } else {
                c = cur.union(walk.privateData.swapPTE(SoftLeafEntry(decoding: raw, layout: layout), memory: memory))
            }
            return Int32(walk.privateData.report(c, addr, next, interesting: false) ?? 0)
        }
        ops.hugetlbEntry = { p, _, addr, next, walk in
            let raw = p.rawValue
            let level = p.slot.level
            let present = layout.isPresent(raw, level)
            let pfn = layout.pfn(raw)
            let f = present ? memory.folio(containing: pfn) : nil
            let c = walk.privateData.curVMACategory.union(
                walk.privateData.hugetlb(raw: raw, present: present, folio: f, pfn: pfn, zeroPFN: zeroPFN, layout: layout))
            return Int32(walk.privateData.report(c, addr, next, interesting: false) ?? 0)
        }
        do {
            _ = try walkPageRange(mm, start, s.arg.end, ops: ops, private: &s)
            return 0
        } catch {
            if case .handlerError(let code) = error { return Int(code) }
            throw error
        }
    }
}
