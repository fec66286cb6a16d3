import MemoryModel
import PageWalk

/// One input of the note machine, as a shared table's recording keeps it:
/// an effective-permission step (`effective_prot_*`) or a `note_page_*`
/// call at `offset` from the table's first address.
struct PTDumpOp: Sendable {
    var offset: UInt64
    var value: UInt64
    var level: Int8
    var isNote: Bool
}

/// The recording of the walk under one shared table, made the first time
/// the table is walked. Effective steps at the table's own level or above
/// (re-reads of the entries leading to it) are left out, so the recording
/// replays under any upper entry; steps and notes that cannot change the
/// state (a repeated step, a note equal to the previous one) are dropped,
/// which is exact wherever no marker is due inside the replayed range.
struct PTDumpRecorder {
    let table: TableID
    let base: UInt64
    let end: UInt64
    /// Kernel level index (pgd 0 … pte 4) of the table's entries.
    let minLevel: Int
    var ops: [PTDumpOp] = []
    var lastEffective: [UInt64?] = Array(repeating: nil, count: 5)

    mutating func effective(_ level: Int, _ value: UInt64) {
        guard level >= minLevel else { return }
        if lastEffective[level] == value { return }
        ops.append(PTDumpOp(offset: 0, value: value, level: Int8(level), isNote: false))
        lastEffective[level] = value
        for l in (level + 1)..<5 { lastEffective[l] = nil }
    }

    mutating func note(_ addr: UInt64, _ level: Int, _ value: UInt64) {
        if let last = ops.last, last.isNote, last.level == Int8(level), last.value == value { return }
        ops.append(PTDumpOp(offset: addr &- base, value: value, level: Int8(level), isNote: true))
    }
}

/// The state of one dump: the kernel's `struct pg_state` (x86) /
/// `struct ptdump_pg_state` (arm64) and its `note_page()`, the
/// effective-permission levels, the output staging, the W+X counts, and
/// the shared-table recordings. Both walkers feed it the same calls.
final class PTDumper {
    let mm: AddressSpace
    let style: PTDump.Style
    let geometry: Geometry
    let layout: EntryLayout
    let tables: TableArena
    let zeroShadow: ZeroShadowTables?
    let printing: Bool
    let checkWX: Bool
    let output: ([UInt8]) -> Void

    // Markers, with the end sentinel (`{ -1, NULL }`).
    let markerStarts: [UInt64]
    let markerNames: [[UInt8]]
    let markerMaxLines: [Int?]

    // pg_state.
    var level = -1
    var currentProt: UInt64 = 0
    var effectiveProt: UInt64 = 0
    var protLevels: [UInt64] = [0, 0, 0, 0, 0]
    var startAddress: UInt64 = 0
    var marker = 0
    var lines = 0

    var report = PTDump.Report()
    var out: [UInt8] = []

    // Bits.
    let flagsMask: UInt64
    let p4dFolded: Bool, pudFolded: Bool
    let kasanPTE: UInt64
    let rootLevel: PageTableLevel

    // Shared tables.
    var memos: [TableID: [PTDumpOp]] = [:]
    var recorders: [PTDumpRecorder] = []
    /// The callback walk stops (returns 1) to step over an upper entry whose
    /// table it must not enter (PGD/P4D levels ignore ACTION_CONTINUE) and
    /// resumes here.
    var resumeAt: UInt64?
    /// The last upper entry noted as zero shadow (level index, first address),
    /// so a walk that comes back to it does not note it twice.
    var lastZeroShadowEntry: [UInt64?] = [nil, nil, nil, nil, nil]
    /// Tests: walk as the kernel does, without stepping over zero-shadow
    /// PGD/P4D entries or replaying shared tables (the reference the
    /// shortcuts must equal).
    var exactKernelWalk = false

    init(mm: AddressSpace, style: PTDump.Style, markers: [KernelAddressMarker], zeroShadow: ZeroShadowTables?,
         print: Bool, checkWX: Bool, output: @escaping ([UInt8]) -> Void) {
        self.mm = mm
        self.style = style
        geometry = mm.geometry
        layout = mm.geometry.layout
        tables = mm.memory.tables
        self.zeroShadow = zeroShadow
        printing = print
        self.checkWX = checkWX
        self.output = output
        let sorted = markers.isEmpty ? [KernelAddressMarker("", 0)] : markers
        markerStarts = sorted.map(\.start) + [UInt64.max]
        markerNames = sorted.map { Array($0.name.utf8) } + [[]]
        markerMaxLines = sorted.map(\.maxLines) + [nil]
        rootLevel = mm.tableLevels[0]
        p4dFolded = mm.geometry.isFolded(.p4d)
        pudFolded = mm.geometry.isFolded(.pud)
        switch style {
        case .x86:
            flagsMask = ~mm.geometry.layout.pfnMask
        case .arm64:
            flagsMask = Arm64Bits.mask
        }
        if let z = zeroShadow, let t = z.tables[.pte] {
            // kasan_early_shadow_pte[0]: the shared table is read once.
            kasanPTE = mm.memory.tables.entries(t)[0].load(ordering: .acquiring)
        } else {
            kasanPTE = zeroShadow?.pte ?? 0
        }
        out.reserveCapacity(Geometry.pageBytes)
    }

    // MARK: Effective permissions (x86)

    static let x86User: UInt64 = 1 << 2
    static let x86RW: UInt64 = 1 << 1
    static let x86NX: UInt64 = 1 << 63
    static let x86Present: UInt64 = 1 << 0

    /// `effective_prot()`: USR and RW must be set at every level, NX at
    /// any level forbids execution. Only x86 has it.
    @inline(__always)
    func effective(_ level: Int, _ value: UInt64) {
        guard style == .x86 else { return }
        for i in recorders.indices { recorders[i].effective(level, value) }
        let prot = value & flagsMask
        if level > 0 {
            let higher = protLevels[level - 1]
            protLevels[level] = (higher & prot & (Self.x86User | Self.x86RW)) | ((higher | prot) & Self.x86NX)
        } else {
            protLevels[level] = prot
        }
    }

    /// `note_page_*()` at `level` (pgd 0 … pte 4; -1 flushes).
    @inline(__always)
    func note(_ addr: UInt64, _ level: Int, _ value: UInt64) {
        for i in recorders.indices { recorders[i].note(addr, level, value) }
        switch style {
        case .x86: noteX86(addr, level, value)
        case .arm64: noteArm64(addr, level, value)
        }
    }

    /// The zero shadow under an upper entry: one note of its page at the
    /// PTE level, with no effective step (`note_kasan_page_table()`).
    func noteZeroShadow(_ levelIndex: Int, _ addr: UInt64, entryStart: UInt64) {
        if lastZeroShadowEntry[levelIndex] == entryStart { return }
        lastZeroShadowEntry[levelIndex] = entryStart
        report.zeroShadowShortcuts += 1
        note(addr, 4, kasanPTE)
    }

    /// Whether nothing marker-related can happen in `[addr, end)`: the next
    /// marker to print starts at or after `end`, so notes inside that
    /// repeat the current run are no-ops.
    @inline(__always)
    func quiet(until end: UInt64) -> Bool { markerStarts[marker + 1] >= end }

    /// Notes a run of equal entries `[start, end)` of `granule`-sized
    /// entries at `level`: the first, then each one at which a marker is
    /// due (the calls the kernel makes per entry that are not no-ops).
    func noteRun(_ start: UInt64, _ end: UInt64, granule: UInt64, level: Int, _ value: UInt64, effectiveStep: Bool) {
        var a = start
        while true {
            if effectiveStep { effective(level, value) }
            note(a, level, value)
            let due = markerStarts[marker + 1]
            if due >= end { return }
            let next = a &+ granule
            if next >= end || next == 0 { return }
            a = due <= next ? next : ((due &- start &+ granule &- 1) / granule) &* granule &+ start
            if a >= end || a < start { return }
        }
    }

    func flush() {
        note(0, -1, 0)
        emit()
    }

    @inline(__always)
    func emit() {
        guard !out.isEmpty else { return }
        output(out)
        out.removeAll(keepingCapacity: true)
    }

    // MARK: Shared tables

    /// Finishes the recordings whose range the walk has left.
    @inline(__always)
    func leave(_ addr: UInt64) {
        while let r = recorders.last, r.end <= addr {
            memos[r.table] = r.ops
            recorders.removeLast()
        }
    }

    /// At the end of a walked range: recordings it completed are kept,
    /// others dropped.
    func endRange(_ end: UInt64) {
        leave(end)
        recorders.removeAll()
        lastZeroShadowEntry = [nil, nil, nil, nil, nil]
        emit()
    }

    /// Replays `ops` recorded for a table at `base`.
    func replay(_ ops: [PTDumpOp], base: UInt64) {
        report.replayedTables += 1
        for op in ops {
            if op.isNote { note(base &+ op.offset, Int(op.level), op.value) } else { effective(Int(op.level), op.value) }
        }
    }

    /// What to do with an upper entry (kernel level index `index`, word
    /// `value`, range `[addr, next)`) that points at `table`, after the
    /// effective steps of the levels folded above it: the zero shadow is
    /// noted; a shared table seen before is replayed; a shared table seen
    /// for the first time starts a recording.
    enum UpperAction { case descend, skip, descendOrStop }

    func tableEntry(_ index: Int, _ value: UInt64, _ addr: UInt64, _ next: UInt64, table: TableID) -> UpperAction {
        if let z = zeroShadow, z.contains(table) {
            let size = geometry.entrySize(Self.modelLevel(index))
            noteZeroShadow(index, addr, entryStart: addr & ~(size &- 1))
            // The kernel continues past PUD/PMD entries; above, it walks the
            // shared tables below and notes each of their entries the same
            // way: skipping is exact when no marker is due in between.
            if index >= 2 || (!exactKernelWalk && quiet(until: next)) { return .skip }
            return .descend
        }
        effective(index, value)
        guard !exactKernelWalk, tables.shareCount(table) > 0 else { return .descend }
        let size = geometry.entrySize(Self.modelLevel(index))
        let whole = addr & (size &- 1) == 0 && next == addr &+ size && next != 0
        guard whole else { return .descend }
        if let memo = memos[table] {
            if quiet(until: next) {
                replay(memo, base: addr)
                return .skip
            }
            return .descend
        }
        if !recorders.contains(where: { $0.table == table }) {
            recorders.append(PTDumpRecorder(table: table, base: addr, end: next,
                                            minLevel: tables.level(table).holeDepth))
        }
        return .descend
    }

    static func modelLevel(_ index: Int) -> PageTableLevel {
        switch index {
        case 0: return .pgd
        case 1: return .p4d
        case 2: return .pud
        case 3: return .pmd
        default: return .pte
        }
    }

    // MARK: x86 note_page

    static let x86LevelNames: [[UInt8]] = ["pgd", "p4d", "pud", "pmd", "pte"].map { Array($0.utf8) }

    func noteX86(_ addr: UInt64, _ newLevel: Int, _ value: UInt64) {
        let newProt = value & flagsMask
        let newEff = value == 0 ? 0 : protLevels[newLevel]
        if level == -1 {
            currentProt = newProt
            effectiveProt = newEff
            level = newLevel
            marker = 0
            lines = 0
            printMarker()
            return
        }
        guard newProt != currentProt || newEff != effectiveProt || newLevel != level
                || addr >= markerStarts[marker + 1] else { return }
        if checkWX && effectiveProt & Self.x86RW != 0 && effectiveProt & Self.x86NX == 0 {
            countWX(addr)
        }
        let maxLines = markerMaxLines[marker]
        if maxLines == nil || lines < maxLines! {
            if printing {
                line(startAddress, addr, delta: addr &- startAddress, units: Self.x86Units)
                x86Prot(currentProt, level)
            }
            report.lines += 1
        }
        lines += 1
        if addr >= markerStarts[marker + 1] {
            if let m = maxLines, lines > m, printing {
                let skipped = lines - m
                putString("... \(skipped) entr\(skipped == 1 ? "y" : "ies") skipped ... \n")
            }
            marker += 1
            lines = 0
            printMarker()
        }
        startAddress = addr
        currentProt = newProt
        effectiveProt = newEff
        level = newLevel
        if out.count >= 2048 { emit() }
    }

    func x86Prot(_ pr: UInt64, _ level: Int) {
        if pr & Self.x86Present == 0 {
            put("                              ")
        } else {
            put(pr & Self.x86User != 0 ? "USR " : "    ")
            put(pr & Self.x86RW != 0 ? "RW " : "ro ")
            put(pr & (1 << 3) != 0 ? "PWT " : "    ")
            put(pr & (1 << 4) != 0 ? "PCD " : "    ")
            // Bit 7 is PSE above the PTE level and PAT in a PTE; the large
            // PAT bit (12) is outside the flags mask, as in the kernel.
            put(level <= 3 && pr & (1 << 7) != 0 ? "PSE " : "    ")
            put((level == 4 && pr & (1 << 7) != 0) || ((level == 3 || level == 2) && pr & (1 << 12) != 0) ? "PAT " : "    ")
            put(pr & (1 << 8) != 0 ? "GLB " : "    ")
            put(pr & Self.x86NX != 0 ? "NX " : "x  ")
        }
        out.append(contentsOf: Self.x86LevelNames[level])
        out.append(0x0a)
    }

    // MARK: arm64 note_page

    enum Arm64Bits {
        static let valid: UInt64 = 1 << 0
        static let type: UInt64 = 3
        static let sect: UInt64 = 1
        static let attrIndx: UInt64 = 7 << 2
        static let user: UInt64 = 1 << 6
        static let rdonly: UInt64 = 1 << 7
        static let shared: UInt64 = 3 << 8
        static let af: UInt64 = 1 << 10
        static let ng: UInt64 = 1 << 11
        static let gp: UInt64 = 1 << 50
        static let cont: UInt64 = 1 << 52
        static let pxn: UInt64 = 1 << 53
        static let uxn: UInt64 = 1 << 54
        static let mask: UInt64 = valid | type | attrIndx | user | rdonly | shared | af | ng | gp | cont | pxn | uxn
    }

    static let arm64LevelNames: [[UInt8]] = ["PGD", "P4D", "PUD", "PMD", "PTE"].map { Array($0.utf8) }

    func noteArm64(_ addr: UInt64, _ newLevel: Int, _ value: UInt64) {
        var lv = newLevel
        if (lv == 1 && p4dFolded) || (lv == 2 && pudFolded) { lv = 0 }
        let prot = lv >= 0 ? value & flagsMask : 0
        if level == -1 {
            level = lv
            currentProt = prot
            startAddress = addr
            printMarker()
        } else if prot != currentProt || lv != level || addr >= markerStarts[marker + 1] {
            if currentProt != 0 && checkWX {
                if currentProt & Arm64Bits.uxn == 0 { report.nonUXNPages &+= (addr &- startAddress) / Geometry.pageSize }
                if currentProt & Arm64Bits.rdonly == 0 && currentProt & Arm64Bits.pxn == 0 { countWX(addr) }
            }
            if printing {
                line(startAddress, addr, delta: (addr &- startAddress) >> 10, units: Self.arm64Units)
                out.append(0x20)
                out.append(contentsOf: Self.arm64LevelNames[level])
                if currentProt != 0 { arm64Prot(currentProt) }
                out.append(0x0a)
            }
            report.lines += 1
            if addr >= markerStarts[marker + 1] {
                marker += 1
                printMarker()
            }
            startAddress = addr
            currentProt = prot
            level = lv
        }
        if addr >= markerStarts[marker + 1] {
            marker += 1
            printMarker()
        }
        if out.count >= 2048 { emit() }
    }

    func arm64Prot(_ p: UInt64) {
        typealias B = Arm64Bits
        put(p & B.valid != 0 ? "  " : " F")
        put(p & B.user != 0 ? " USR" : "    ")
        put(p & B.rdonly != 0 ? " ro" : " RW")
        put(p & B.pxn != 0 ? " NX" : " x ")
        put(p & B.shared == B.shared ? " SHD" : "    ")
        put(p & B.af != 0 ? " AF" : "   ")
        put(p & B.ng != 0 ? " NG" : "   ")
        put(p & B.cont != 0 ? " CON" : "    ")
        put(p & B.type == B.sect ? " BLK" : "    ")
        put(p & B.uxn != 0 ? " UXN" : "    ")
        put(p & B.gp != 0 ? " GP" : "   ")
        switch (p & B.attrIndx) >> 2 {
        case Arm64MemoryType.deviceNGnRnE.rawValue: put(" DEVICE/nGnRnE")
        case Arm64MemoryType.deviceNGnRE.rawValue: put(" DEVICE/nGnRE")
        case Arm64MemoryType.normalNonCacheable.rawValue: put(" MEM/NORMAL-NC")
        case Arm64MemoryType.normal.rawValue: put(" MEM/NORMAL")
        case Arm64MemoryType.normalTagged.rawValue: put(" MEM/NORMAL-TAGGED")
        default: break
        }
    }

    // MARK: Shared pieces

    func countWX(_ addr: UInt64) {
        report.wxPages &+= (addr &- startAddress) / Geometry.pageSize
        if report.wxRanges.count < 16 {
            let end = addr == 0 ? UInt64.max : addr
            if end > startAddress { report.wxRanges.append(startAddress..<end) }
        }
    }

    func printMarker() {
        guard printing else { return }
        put("---[ ")
        out.append(contentsOf: markerNames[marker])
        put(" ]---\n")
    }

    static let x86Units: [UInt8] = Array("BKMGTPE".utf8)
    static let arm64Units: [UInt8] = Array("KMGTPE".utf8)
    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// `0x%016lx-0x%016lx   %9lu%c` with the size reduced by 1024 while it
    /// divides evenly and a larger unit exists.
    func line(_ start: UInt64, _ end: UInt64, delta: UInt64, units: [UInt8]) {
        hex(start)
        out.append(UInt8(ascii: "-"))
        hex(end)
        put("   ")
        var d = delta
        var u = 0
        while d & 1023 == 0 && u + 1 < units.count {
            d >>= 10
            u += 1
        }
        var digits: [UInt8] = []
        repeat {
            digits.append(UInt8(ascii: "0") + UInt8(d % 10))
            d /= 10
        } while d > 0
        if digits.count < 9 { out.append(contentsOf: repeatElement(0x20, count: 9 - digits.count)) }
        out.append(contentsOf: digits.reversed())
        out.append(units[u])
        if style == .x86 { out.append(0x20) }
    }

    func hex(_ v: UInt64) {
        out.append(UInt8(ascii: "0"))
        out.append(UInt8(ascii: "x"))
        var shift: UInt64 = 60
        while true {
            out.append(Self.hexDigits[Int((v >> shift) & 15)])
            if shift == 0 { break }
            shift -= 4
        }
    }

    @inline(__always)
    func put(_ s: StaticString) {
        s.withUTF8Buffer { out.append(contentsOf: $0) }
    }

    func putString(_ s: String) { out.append(contentsOf: s.utf8) }
}
