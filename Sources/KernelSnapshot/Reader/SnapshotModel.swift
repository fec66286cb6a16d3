import MemoryModel
/// The FORMAT file of a snapshot.
public struct SnapshotFormat: Hashable, Sendable {
    public var version: Int
    /// `uname -r` of the captured machine.
    public var kernel: String
    public var pageSize: Int
    public var pids: [Int32]
    /// How stable the capture was (the `capture` line); nil for snapshots
    /// written before capture recorded it.
    public var capture: CaptureStability?
    /// Lines with keys this reader does not know, in order (key, rest of line).
    public var extra: [SnapshotField]

    public init(version: Int = 1, kernel: String, pageSize: Int = Geometry.pageBytes, pids: [Int32],
                capture: CaptureStability? = nil, extra: [SnapshotField] = []) {
        self.version = version
        self.kernel = kernel
        self.pageSize = pageSize
        self.pids = pids
        self.capture = capture
        self.extra = extra
    }

    /// The FORMAT file's text.
    public var text: String {
        var s = "pagewalk-snapshot \(version)\nkernel \(kernel)\npage_size \(pageSize)\npids"
        for p in pids { s += " \(p)" }
        s += "\n"
        if let capture { s += "\(CaptureStability.key) \(capture.text)\n" }
        for e in extra { s += "\(e.name) \(e.value)\n" }
        return s
    }
}

/// A (name, value) pair from a `Name: value` line, keeping the original text.
public struct SnapshotField: Hashable, Sendable {
    /// The name without its colon (`Rss`, `VmFlags`).
    public var name: String
    /// The value with surrounding blanks removed (`4 kB`, `rd mr mw me`).
    public var value: String
    /// The line exactly as in the file (without its newline).
    public var line: String

    public init(name: String, value: String, line: String) {
        self.name = name
        self.value = value
        self.line = line
    }

    /// The number in a `N kB` value (or a bare number), nil otherwise.
    public var kilobytes: UInt64? {
        var v = Substring(value)
        if v.hasSuffix(" kB") { v = v.dropLast(3) }
        return UInt64(v.trimmingBlanks())
    }

    /// The value as a bare integer, nil otherwise.
    public var integer: Int64? { Int64(value) }
}

/// One line of /proc/<pid>/maps (also the header of each smaps block).
public struct MapsLine: AddressRanged, Hashable, Sendable, CustomStringConvertible {
    public var start: UInt64
    public var end: UInt64
    /// The four permission characters, e.g. `rw-p`.
    public var perms: String
    public var offset: UInt64
    public var devMajor: UInt32
    public var devMinor: UInt32
    public var inode: UInt64
    /// Path, `[heap]`, `[anon:NAME]`, `/dev/zero (deleted)`, … or empty.
    public var name: String
    /// The line exactly as printed (without newline).
    public var raw: String

    public init(start: UInt64, end: UInt64, perms: String, offset: UInt64, devMajor: UInt32,
                devMinor: UInt32, inode: UInt64, name: String, raw: String) {
        self.start = start
        self.end = end
        self.perms = perms
        self.offset = offset
        self.devMajor = devMajor
        self.devMinor = devMinor
        self.inode = inode
        self.name = name
        self.raw = raw
    }

    public var size: UInt64 { end - start }
    /// Number of 4 KiB pages (pagemap words) in the VMA.
    public var pageCount: Int { Int((end - start) / Geometry.pageSize) }
    public var isReadable: Bool { perms.utf8.first == UInt8(ascii: "r") }
    public var isWritable: Bool { perms.utf8.dropFirst(1).first == UInt8(ascii: "w") }
    public var isExecutable: Bool { perms.utf8.dropFirst(2).first == UInt8(ascii: "x") }
    public var isShared: Bool { perms.utf8.dropFirst(3).first == UInt8(ascii: "s") }
    public var description: String { raw }
}

/// One VMA's block of /proc/<pid>/smaps.
public struct SmapsBlock: Hashable, Sendable {
    public var header: MapsLine
    /// 1-based line number of the header in the smaps file.
    public var headerLine: Int
    /// Every line after the header, in order, including THPeligible,
    /// ProtectionKey and VmFlags.
    public var fields: [SnapshotField]

    public init(header: MapsLine, headerLine: Int, fields: [SnapshotField]) {
        self.header = header
        self.headerLine = headerLine
        self.fields = fields
    }

    public subscript(name: String) -> SnapshotField? { fields.first { $0.name == name } }
    /// The kB value of a counter such as `Rss`.
    public func kilobytes(_ name: String) -> UInt64? { self[name]?.kilobytes }

    /// The two-letter VmFlags mnemonics, in order.
    public var vmFlags: [String] {
        guard let f = self["VmFlags"] else { return [] }
        return f.value.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
    }
    public func hasVMFlag(_ mnemonic: String) -> Bool { vmFlags.contains(mnemonic) }
    public var thpEligible: Int? { self["THPeligible"]?.integer.map { Int($0) } }
    public var protectionKey: Int? { self["ProtectionKey"]?.integer.map { Int($0) } }
    public var kernelPageSizeKB: UInt64? { kilobytes("KernelPageSize") }
    public var mmuPageSizeKB: UInt64? { kilobytes("MMUPageSize") }

    /// The block exactly as printed (header and field lines, each with newline).
    public var text: String {
        var s = header.raw + "\n"
        for f in fields { s += f.line + "\n" }
        return s
    }
}

/// /proc/<pid>/smaps_rollup, parsed.
public struct SmapsRollup: Hashable, Sendable {
    public var header: MapsLine
    public var fields: [SnapshotField]
    public var text: String

    public init(header: MapsLine, fields: [SnapshotField], text: String) {
        self.header = header
        self.fields = fields
        self.text = text
    }

    public subscript(name: String) -> SnapshotField? { fields.first { $0.name == name } }
    public func kilobytes(_ name: String) -> UInt64? { self[name]?.kilobytes }
}

/// One line of /proc/<pid>/numa_maps.
public struct NumaMapsLine: Hashable, Sendable {
    public var raw: String
    public var start: UInt64
    /// `default`, `bind:0`, `interleave:0-1`, `prefer:0`, `local`, `weighted interleave:…`.
    public var policy: String
    /// Unescaped path for file mappings.
    public var file: String?
    public var isHeap: Bool
    public var isStack: Bool
    public var isHuge: Bool
    /// Every `key=value` token after the policy, in order (`file` excluded,
    /// per-node counts included as `N0`, …), values as printed.
    public var fields: [NumaMapsField]

    public init(raw: String, start: UInt64, policy: String, file: String?, isHeap: Bool,
                isStack: Bool, isHuge: Bool, fields: [NumaMapsField]) {
        self.raw = raw
        self.start = start
        self.policy = policy
        self.file = file
        self.isHeap = isHeap
        self.isStack = isStack
        self.isHuge = isHuge
        self.fields = fields
    }

    public subscript(key: String) -> UInt64? {
        fields.first { $0.key == key }.flatMap { UInt64($0.value) }
    }
    public var anon: UInt64? { self["anon"] }
    public var dirty: UInt64? { self["dirty"] }
    public var mapped: UInt64? { self["mapped"] }
    public var mapmax: UInt64? { self["mapmax"] }
    public var swapcache: UInt64? { self["swapcache"] }
    public var active: UInt64? { self["active"] }
    public var writeback: UInt64? { self["writeback"] }
    public var kernelPageSizeKB: UInt64? { self["kernelpagesize_kB"] }
    /// Per-node page counts (`N<node>=count`).
    public var nodes: [(node: Int, pages: UInt64)] {
        fields.compactMap { f in
            guard f.key.hasPrefix("N"), let n = Int(f.key.dropFirst()), let v = UInt64(f.value) else { return nil }
            return (n, v)
        }
    }
}

public struct NumaMapsField: Hashable, Sendable {
    public var key: String
    public var value: String
    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }
}

/// Everything captured for one process.
public struct ProcessSnapshot: Sendable {
    public var pid: Int32
    /// The directory `proc/<pid>` inside the snapshot.
    public var directory: String
    public var maps: [MapsLine]
    public var mapsText: String
    /// One block per VMA, same order as `maps`.
    public var smaps: [SmapsBlock]
    public var smapsText: String
    public var smapsRollup: SmapsRollup?
    public var smapsRollupText: String?
    public var numaMaps: [NumaMapsLine]
    public var numaMapsText: String?
    /// NUL-separated arguments.
    public var cmdline: [String]
    public var cmdlineBytes: [UInt8]
    public var statusText: String?
    /// All pagemap words, VMA after VMA.
    public var pagemap: [PagemapWord]
    /// For VMA `i`, the indices of its words in `pagemap`.
    public var vmaPageRanges: [Range<Int>]

    public init(pid: Int32, directory: String, maps: [MapsLine], mapsText: String, smaps: [SmapsBlock],
                smapsText: String, smapsRollup: SmapsRollup?, smapsRollupText: String?,
                numaMaps: [NumaMapsLine], numaMapsText: String?, cmdline: [String], cmdlineBytes: [UInt8],
                statusText: String?, pagemap: [PagemapWord], vmaPageRanges: [Range<Int>]) {
        self.pid = pid
        self.directory = directory
        self.maps = maps
        self.mapsText = mapsText
        self.smaps = smaps
        self.smapsText = smapsText
        self.smapsRollup = smapsRollup
        self.smapsRollupText = smapsRollupText
        self.numaMaps = numaMaps
        self.numaMapsText = numaMapsText
        self.cmdline = cmdline
        self.cmdlineBytes = cmdlineBytes
        self.statusText = statusText
        self.pagemap = pagemap
        self.vmaPageRanges = vmaPageRanges
    }

    /// The pagemap words of VMA `index` (one per 4 KiB page from its start).
    public func pagemapWords(vma index: Int) -> ArraySlice<PagemapWord> {
        pagemap[vmaPageRanges[index]]
    }

    /// Index of the VMA containing `address`, by binary search.
    public func vmaIndex(containing address: UInt64) -> Int? { maps.index(containing: address) }

    /// The pagemap word for the page holding `address`, nil outside every VMA.
    public func pagemapWord(at address: UInt64) -> PagemapWord? {
        guard let i = vmaIndex(containing: address) else { return nil }
        return pagemap[vmaPageRanges[i].lowerBound + Int((address - maps[i].start) / Geometry.pageSize)]
    }

    /// A `Name:` line of status (value trimmed), e.g. `status("VmRSS")`.
    /// The command name: `Name:` of the status file, else the cmdline's
    /// first word without its directory, else empty (a kernel thread).
    public var commandName: String {
        if let n = status("Name") { return n }
        guard let first = cmdline.first, !first.isEmpty else { return "" }
        return String(first.split(separator: "/").last ?? Substring(first))
    }

    public func status(_ key: String) -> String? {
        guard let text = statusText else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
            return String(line.dropFirst(key.count + 1).trimmingBlanks())
        }
        return nil
    }
}

/// A whole snapshot directory, parsed.
public struct Snapshot: Sendable {
    public var directory: String
    public var format: SnapshotFormat
    /// Sorted strictly ascending by pfn.
    public var kpageflags: [KPageFlagsRecord]
    public var meminfo: String?
    /// In the order of `format.pids`.
    public var processes: [ProcessSnapshot]

    public init(directory: String, format: SnapshotFormat, kpageflags: [KPageFlagsRecord],
                meminfo: String?, processes: [ProcessSnapshot]) {
        self.directory = directory
        self.format = format
        self.kpageflags = kpageflags
        self.meminfo = meminfo
        self.processes = processes
    }

    /// The record for `pfn`, by binary search.
    public func record(pfn: UInt64) -> KPageFlagsRecord? { recordIndex(pfn: pfn).map { kpageflags[$0] } }

    /// The index of the record for `pfn`, by binary search.
    public func recordIndex(pfn: UInt64) -> Int? {
        let i = kpageflags.partitionPoint { $0.pfn >= pfn }
        return i < kpageflags.count && kpageflags[i].pfn == pfn ? i : nil
    }

    public func process(pid: Int32) -> ProcessSnapshot? { processes.first { $0.pid == pid } }
}

extension StringProtocol {
    /// Drops leading and trailing spaces and tabs.
    func trimmingBlanks() -> Substring {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return s
    }
}
