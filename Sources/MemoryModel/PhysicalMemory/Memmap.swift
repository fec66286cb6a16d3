import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The model's `mem_map`: one compact record per physical frame, kept in
/// sparse sections like `CONFIG_SPARSEMEM` so that captured PFNs can be used
/// as they are.
///
/// A record is four 32-bit words, read and written atomically because
/// several address spaces (after fork) and threads update the same folio:
/// - word 0: flags (`PageFlags`);
/// - word 1: the page's own PTE mapcount (`_mapcount + 1`);
/// - word 2: head: refcount; first tail: large mapcount; second tail:
///   entire mapcount (the folio fields the kernel keeps in tail pages);
/// - word 3: compound info: order (bits 0–4), NUMA node (5–10), tail
///   (bit 11), offset from the head (12–31).
///
/// Sections hold 2^18 frames so that no folio (order ≤ 18) crosses one and a
/// folio's records are contiguous.
public final class Memmap: @unchecked Sendable {
    @inlinable public static var sectionShift: Int { 18 }
    @inlinable static var sectionFrames: Int { 1 << sectionShift }
    @inlinable static var wordsPerRecord: Int { 4 }
    @inlinable static var directoryShift: Int { 11 }
    @inlinable static var directorySize: Int { 1 << directoryShift }

    /// `directory[d][s]` is the section `d << 11 | s`, allocated on first use.
    private let directory: UnsafeMutablePointer<Atomic<UInt>>
    private let growLock = ModelMutex<Void>(())
    private let maxPFN: UInt64

    init(maxPFN: UInt64) {
        self.maxPFN = maxPFN
        directory = .allocate(capacity: Memmap.directorySize)
        for i in 0..<Memmap.directorySize { (directory + i).initialize(to: Atomic(0)) }
    }

    deinit {
        for d in 0..<Memmap.directorySize {
            let dirAddr = directory[d].load(ordering: .relaxed)
            guard dirAddr != 0, let dir = UnsafeMutablePointer<Atomic<UInt>>(bitPattern: dirAddr) else { continue }
            for s in 0..<Memmap.directorySize {
                let sec = dir[s].load(ordering: .relaxed)
                if sec != 0 { munmap(UnsafeMutableRawPointer(bitPattern: sec), Memmap.sectionBytes) }
            }
            dir.deallocate()
        }
        directory.deallocate()
    }

    static let sectionBytes = sectionFrames * wordsPerRecord * 4

    /// Bytes of host memory the sections reserve (virtual; untouched parts of
    /// a section cost nothing resident).
    public private(set) var sectionCount = 0

    /// The record words of `pfn`, or nil if its section was never populated.
    @inlinable @inline(always)
    func existingRecord(_ pfn: UInt64) -> UnsafeMutablePointer<Atomic<UInt32>>? {
        let section = Int(truncatingIfNeeded: pfn >> UInt64(Memmap.sectionShift))
        let d = section >> Memmap.directoryShift
        guard d < Memmap.directorySize else { return nil }
        let dirAddr = directoryLoad(d)
        guard dirAddr != 0 else { return nil }
        let dir = UnsafeMutablePointer<Atomic<UInt>>(bitPattern: dirAddr)!
        let sec = dir[section & (Memmap.directorySize - 1)].load(ordering: .acquiring)
        guard sec != 0 else { return nil }
        let base = UnsafeMutablePointer<Atomic<UInt32>>(bitPattern: sec)!
        return base + Int(truncatingIfNeeded: pfn & UInt64(Memmap.sectionFrames - 1)) * Memmap.wordsPerRecord
    }

    /// The folio whose frame `pfn` has record `r` (`page_folio()`): nil for
    /// a frame in no folio.
    @inlinable @inline(always)
    static func folio(_ pfn: UInt64, record r: UnsafeMutablePointer<Atomic<UInt32>>) -> Folio? {
        folioAndSize(pfn, record: r)?.folio
    }

    /// `folio(_:record:)`, and whether the folio is large
    /// (`folio_test_large()`) from the same record read: a tail page's
    /// folio always is; a head's order is in its own record.
    @inlinable @inline(always)
    static func folioAndSize(_ pfn: UInt64, record r: UnsafeMutablePointer<Atomic<UInt32>>) -> (folio: Folio, isLarge: Bool)? {
        let flags = r[RecordWord.flags].load(ordering: .relaxed)
        let compound = r[RecordWord.compound].load(ordering: .relaxed)
        guard flags & PageFlags.allocated.rawValue != 0 || compound & (1 << 11) != 0 else { return nil }
        let back = Int(compound >> Geometry.pageShift)
        return (Folio(pfn: pfn &- UInt64(back), head: r - back &* RecordWord.wordsPerRecordInline),
                compound & ((1 << 11) | 31) != 0)
    }

    @usableFromInline
    func directoryLoad(_ d: Int) -> UInt { directory[d].load(ordering: .acquiring) }

    /// The record words of `pfn`, populating its section if needed.
    func record(_ pfn: UInt64) -> UnsafeMutablePointer<Atomic<UInt32>> {
        if let r = existingRecord(pfn) { return r }
        precondition(pfn <= maxPFN, "pfn beyond the memmap")
        growLock.withLock { _ in
            let section = Int(truncatingIfNeeded: pfn >> UInt64(Memmap.sectionShift))
            let d = section >> Memmap.directoryShift
            var dirAddr = directory[d].load(ordering: .acquiring)
            if dirAddr == 0 {
                let dir = UnsafeMutablePointer<Atomic<UInt>>.allocate(capacity: Memmap.directorySize)
                for i in 0..<Memmap.directorySize { (dir + i).initialize(to: Atomic(0)) }
                dirAddr = UInt(bitPattern: dir)
                directory[d].store(dirAddr, ordering: .releasing)
            }
            let dir = UnsafeMutablePointer<Atomic<UInt>>(bitPattern: dirAddr)!
            let slot = section & (Memmap.directorySize - 1)
            if dir[slot].load(ordering: .acquiring) == 0 {
                let mem = mmap(nil, Memmap.sectionBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                precondition(mem != MAP_FAILED, "cannot reserve memmap section")
                dir[slot].store(UInt(bitPattern: mem), ordering: .releasing)
                sectionCount += 1
            }
        }
        return existingRecord(pfn)!
    }
}

/// Word indices and packing of a memmap record.
@usableFromInline
enum RecordWord {
    @inlinable static var flags: Int { 0 }
    @inlinable static var mapcount: Int { 1 }
    /// head: refcount; first tail: large mapcount; second tail: entire mapcount.
    @inlinable static var counter: Int { 2 }
    @inlinable static var compound: Int { 3 }

    @inlinable @inline(always)
    static func compound(order: Int, node: Int, tailOffset: Int) -> UInt32 {
        UInt32(order) | UInt32(node) << 5 | (tailOffset > 0 ? 1 << 11 : 0) | UInt32(tailOffset) << Geometry.pageShift
    }
}
