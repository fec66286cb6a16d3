import Synchronization

/// The physical side of the model: frames and their memmap, the page-table
/// arena, the zero pages, swap space, page caches and KSM's stable tree.
///
/// Several address spaces share one `PhysicalMemory` (a forked child maps
/// its parent's folios; two captured processes map the same frames).
/// Counts in the memmap are updated atomically; the allocator, page caches
/// and swap map are each guarded by their own lock.
public final class PhysicalMemory: @unchecked Sendable {
    public let memmap: Memmap
    public let tables: TableArena
    public let swap: SwapSpace
    /// Bytes of folio memory the model may allocate (page tables excluded).
    public let budgetBytes: UInt64
    public let nodeCount: Int

    /// The shared zero page (`ZERO_PAGE(0)`) and the huge zero folio.
    public private(set) var zeroPage: Folio! = nil
    public private(set) var hugeZeroFolio: Folio! = nil

    private struct AllocatorState {
        var next: [UInt64]
        var free: [[UInt64]]   // index node * 19 + order
        var allocatedBytes: UInt64 = 0
        var folios = 0
    }
    private let allocator: ModelMutex<AllocatorState>
    private let files = ModelMutex<[FileKey: FileObject]>([:])
    private let ksmStable = ModelMutex<[Int: UInt64]>([:])
    private let spaces = ModelMutex<[WeakSpace]>([])

    /// First frame of node 0's simulated RAM.
    public static let firstDataPFN: UInt64 = 1 << 20
    /// Frames per simulated NUMA node.
    public static let nodeSpanPFNs: UInt64 = 1 << 30
    public static let zeroPagePFN: UInt64 = 0x1000
    public static let hugeZeroPFN: UInt64 = 0x2000
    /// Page tables live from this frame on.
    public static let tableBasePFN: UInt64 = 1 << 35

    /// - Parameters:
    ///   - budgetBytes: most folio memory the model may hold.
    ///   - nodes: NUMA nodes (1 … 16).
    ///   - swapSlots: slots of the one swap device (type 0); 0 models a
    ///     machine with no swap active, where every swap-out fails as a
    ///     full device does.
    ///   - zeroPagePFN/hugeZeroPFN: where the zero pages live (a snapshot
    ///     rebuild passes the captured frames).
    public init(budgetBytes: UInt64 = 4 << 30, nodes: Int = 1, swapSlots: Int = 1 << 22,
                zeroPagePFN: UInt64 = PhysicalMemory.zeroPagePFN,
                hugeZeroPFN: UInt64 = PhysicalMemory.hugeZeroPFN) throws(ModelError) {
        guard (1...16).contains(nodes) else { throw .invalidArgument(name: "nodes", reason: "\(nodes) is not in 1…16") }
        guard swapSlots >= 0 else { throw .invalidArgument(name: "swapSlots", reason: "must not be negative") }
        guard hugeZeroPFN & 511 == 0 else { throw .unaligned(name: "huge zero pfn", value: hugeZeroPFN, alignment: 512) }
        self.budgetBytes = budgetBytes
        self.nodeCount = nodes
        memmap = Memmap(maxPFN: PhysicalMemory.tableBasePFN - 1)
        tables = TableArena(basePFN: PhysicalMemory.tableBasePFN)
        swap = SwapSpace(slots: swapSlots)
        allocator = ModelMutex(AllocatorState(
            next: (0..<nodes).map { PhysicalMemory.firstDataPFN + UInt64($0) * PhysicalMemory.nodeSpanPFNs },
            free: Array(repeating: [], count: nodes * 19)))
        zeroPage = installFolio(pfn: zeroPagePFN, order: 0, node: 0, flags: [.zeroPage, .reserved, .uptodate], refcount: 1)
        hugeZeroFolio = installFolio(pfn: hugeZeroPFN, order: 9, node: 0, flags: [.hugeZeroPage, .uptodate], refcount: 1)
    }

    // MARK: Folio lookup

    /// The folio containing frame `pfn`, if the frame belongs to one.
    @inlinable
    public func folio(containing pfn: UInt64) -> Folio? {
        guard let r = memmap.existingRecord(pfn) else { return nil }
        return Memmap.folio(pfn, record: r)
    }

    /// `pfn_valid()`: the frame has a memmap record (its section exists),
    /// whether or not a folio holds it now.
    package func pfnValid(_ pfn: UInt64) -> Bool { memmap.existingRecord(pfn) != nil }

    /// The page for frame `pfn`.
    public func page(_ pfn: UInt64) -> Page? {
        guard let f = folio(containing: pfn) else { return nil }
        return f.page(Int(pfn - f.pfn))
    }

    // MARK: Allocation

    /// Allocates a folio of `order` on `node` (`folio_alloc()`), charging the
    /// budget. Its refcount starts at `refcount`, its mapcounts at 0.
    public func allocateFolio(order: Int, node: Int = 0, flags: PageFlags, refcount: Int = 1) throws(ModelError) -> Folio {
        guard (0...18).contains(order) else { throw .invalidArgument(name: "order", reason: "\(order) is not in 0…18") }
        guard (0..<nodeCount).contains(node) else { throw .invalidArgument(name: "node", reason: "node \(node) does not exist (\(nodeCount) nodes)") }
        let pfn = try reserveFrames(order: order, node: node, count: 1)[0]
        return installFolio(pfn: pfn, order: order, node: node, flags: flags, refcount: refcount)
    }

    /// Reserves `count` folio-sized frame ranges in one allocator call (the
    /// fast path of populating faults).
    func reserveFrames(order: Int, node: Int, count: Int) throws(ModelError) -> [UInt64] {
        let bytes = UInt64(count) << UInt64(12 + order)
        let budget = budgetBytes
        return try allocator.withLock { (s) throws(ModelError) -> [UInt64] in
            guard s.allocatedBytes + bytes <= budget else {
                throw .outOfMemory(requestedBytes: s.allocatedBytes + bytes, budgetBytes: budget)
            }
            s.allocatedBytes += bytes
            s.folios += count
            var out: [UInt64] = []
            out.reserveCapacity(count)
            let key = node * 19 + order
            while out.count < count, let p = s.free[key].popLast() { out.append(p) }
            if out.count < count {
                let size = UInt64(1) << UInt64(order)
                var next = (s.next[node] + size - 1) & ~(size - 1)
                while out.count < count { out.append(next); next += size }
                s.next[node] = next
            }
            return out
        }
    }

    /// Charges a folio placed at caller-chosen frames (a snapshot rebuild's
    /// captured PFNs) to the budget as an allocation would, and moves the
    /// node's allocator past those frames so that no later allocation
    /// hands them out again. Pair with `installFolio`.
    func chargeAdoptedFrames(pfn: UInt64, order: Int, node: Int) throws(ModelError) {
        let bytes = UInt64(Geometry.pageSize) << UInt64(order)
        let end = pfn + (UInt64(1) << UInt64(order))
        let budget = budgetBytes
        try allocator.withLock { (s) throws(ModelError) in
            guard s.allocatedBytes + bytes <= budget else {
                throw .outOfMemory(requestedBytes: s.allocatedBytes + bytes, budgetBytes: budget)
            }
            s.allocatedBytes += bytes
            s.folios += 1
            for n in s.next.indices {
                let base = PhysicalMemory.firstDataPFN + UInt64(n) * PhysicalMemory.nodeSpanPFNs
                if end > base && pfn < base + PhysicalMemory.nodeSpanPFNs && s.next[n] < end { s.next[n] = end }
            }
        }
    }

    /// Initialises the memmap records of a folio at `pfn` (also used by
    /// snapshot rebuilds, which place folios at captured frames).
    @discardableResult
    public func installFolio(pfn: UInt64, order: Int, node: Int, flags: PageFlags, refcount: Int) -> Folio {
        let head = memmap.record(pfn)
        let n = 1 << order
        head[RecordWord.flags].store(flags.union(.allocated).rawValue, ordering: .relaxed)
        head[RecordWord.mapcount].store(0, ordering: .relaxed)
        head[RecordWord.counter].store(UInt32(bitPattern: Int32(refcount)), ordering: .relaxed)
        head[RecordWord.compound].store(RecordWord.compound(order: order, node: node, tailOffset: 0), ordering: .relaxed)
        var i = 1
        while i < n {
            let r = head + i * RecordWord.wordsPerRecordInline
            r[RecordWord.flags].store(0, ordering: .relaxed)
            r[RecordWord.mapcount].store(0, ordering: .relaxed)
            r[RecordWord.counter].store(0, ordering: .relaxed)
            r[RecordWord.compound].store(RecordWord.compound(order: 0, node: node, tailOffset: i), ordering: .relaxed)
            i += 1
        }
        return Folio(pfn: pfn, head: head)
    }

    /// Frees a folio whose last reference went away (`folio_put()` reaching
    /// zero): its frames return to the allocator and the budget.
    func freeFolio(_ folio: Folio) {
        let order = folio.order, node = folio.node, n = folio.pageCount
        var poisoned = false
        for i in 0..<n where folio.pageFlags(i).contains(.hwpoison) { poisoned = true }
        // A freed KSM folio leaves the stable tree (its frame may be reused).
        if folio.isKSM { dropKSMStable(pfn: folio.pfn) }
        for i in 0..<n {
            let r = folio.head + i * RecordWord.wordsPerRecordInline
            for w in 0..<4 { r[w].store(0, ordering: .relaxed) }
        }
        allocator.withLock { s in
            s.allocatedBytes -= UInt64(n) << Geometry.pageShift
            s.folios -= 1
            // A poisoned frame is never handed out again.
            if !poisoned { s.free[node * 19 + order].append(folio.pfn) }
        }
    }

    /// Drops `n` references; frees the folio when none remain.
    func put(_ folio: Folio, _ n: Int = 1) {
        if folio.isZero { return }
        let old = Int(Int32(bitPattern: folio.head[RecordWord.counter].wrappingSubtract(UInt32(n), ordering: .acquiringAndReleasing).oldValue))
        if old == n { freeFolio(folio) }
    }

    /// `folio_get()`: one more reference, held by a walker user past the
    /// table lock (KSM's scan keeps the folio it found). The zero pages are
    /// not counted, as `put` does not count them.
    package func folioGet(_ folio: Folio) {
        if folio.isZero { return }
        folio.addRef(1)
    }

    /// `folio_put()`: drops a reference `folioGet` took; the folio is freed
    /// when it was the last.
    package func folioPut(_ folio: Folio) { put(folio) }

    /// Records that a large folio became `n` order-0 folios.
    func noteSplit(order: Int, into n: Int) {
        allocator.withLock { s in s.folios += n - 1 }
    }

    /// Bytes of folio memory in use.
    public var allocatedBytes: UInt64 { allocator.withLock { $0.allocatedBytes } }
    /// Folios in use (zero pages excluded).
    public var folioCount: Int { allocator.withLock { $0.folios } }

    // MARK: Files, KSM, address spaces

    struct FileKey: Hashable { let dev: UInt32; let inode: UInt64 }

    /// The file (page cache) with this identity, created on first use.
    public func file(path: String, device: DeviceNumber, inode: UInt64, isShmem: Bool = false) -> FileObject {
        files.withLock { m in
            let key = FileKey(dev: device.rawValue, inode: inode)
            if let f = m[key] { return f }
            let f = FileObject(path: path, device: device, inode: inode, isShmem: isShmem)
            m[key] = f
            return f
        }
    }

    /// KSM's stable tree: the folio holding content `id`, if merged before.
    func ksmStableFolio(_ id: Int) -> Folio? {
        ksmStable.withLock { m in m[id] }.flatMap { folio(containing: $0) }
    }
    func setKSMStableFolio(_ id: Int, _ folio: Folio?) {
        ksmStable.withLock { m in m[id] = folio?.pfn }
    }
    func dropKSMStable(pfn: UInt64) {
        ksmStable.withLock { m in
            if let k = m.first(where: { $0.value == pfn })?.key { m[k] = nil }
        }
    }

    private struct WeakSpace { weak var space: AddressSpace? }
    func register(_ mm: AddressSpace) {
        spaces.withLock { s in
            s.removeAll { $0.space == nil }
            s.append(WeakSpace(space: mm))
        }
    }
    /// The live address spaces on this memory (for reverse mapping).
    public var addressSpaces: [AddressSpace] { spaces.withLock { $0.compactMap(\.space) } }
}

/// A device number as `/proc/PID/maps` prints it (`major:minor`).
public struct DeviceNumber: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(major: UInt32, minor: UInt32) { rawValue = major << 20 | minor }
    public var major: UInt32 { rawValue >> 20 }
    public var minor: UInt32 { rawValue & 0xFFFFF }
    public static let none = DeviceNumber(rawValue: 0)
    public var description: String {
        let hx = { (v: UInt32) -> String in let s = String(v, radix: 16); return s.count < 2 ? "0" + s : s }
        return "\(hx(major)):\(hx(minor))"
    }
}
