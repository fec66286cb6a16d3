#if canImport(Glibc)
import Glibc
#endif
import MemoryModel

/// Parses a snapshot directory (docs/SNAPSHOT.md, format v1) into plain values,
/// validating sizes, order and the agreement of maps with smaps.
public enum SnapshotReader {
    public static let formatMagic = "pagewalk-snapshot"
    public static let supportedVersion = 1
    public static let pageSize = Geometry.pageSize

    // MARK: Whole snapshot

    /// Reads and validates every file of the snapshot at `directory`.
    public static func read(directory: String) throws(SnapshotError) -> Snapshot {
        do {
            return try readUntyped(directory: directory)
        } catch {
            throw SnapshotError.typed(error, in: directory)
        }
    }

    private static func readUntyped(directory: String) throws -> Snapshot {
        guard RawIO.isDirectory(directory) else {
            throw SnapshotError.fileMissing(path: directory)
        }
        let formatPath = directory + "/FORMAT"
        let format = try parseFormat(RawIO.readText(formatPath), path: formatPath)

        let kpfPath = directory + "/kpageflags"
        let records = try parseKPageFlags(RawIO.readBytes(kpfPath), path: kpfPath)

        let meminfoPath = directory + "/proc/meminfo"
        let meminfo = RawIO.exists(meminfoPath) ? try RawIO.readText(meminfoPath) : nil

        var processes: [ProcessSnapshot] = []
        for pid in format.pids {
            processes.append(try readProcess(directory: directory + "/proc/\(pid)", pid: pid))
        }
        return Snapshot(directory: directory, format: format, kpageflags: records,
                        meminfo: meminfo, processes: processes)
    }

    /// Reads one `proc/<pid>` directory of a snapshot. maps, smaps and pagemap
    /// are required; smaps_rollup, numa_maps, cmdline and status are read when present.
    public static func readProcess(directory: String, pid: Int32) throws -> ProcessSnapshot {
        let mapsPath = directory + "/maps"
        let smapsPath = directory + "/smaps"
        let pagemapPath = directory + "/pagemap"
        if !RawIO.isDirectory(directory) { throw SnapshotError.fileMissing(path: directory) }

        let mapsText = try RawIO.readText(mapsPath)
        let maps = try parseMaps(mapsText, path: mapsPath)
        let smapsText = try RawIO.readText(smapsPath)
        let smaps = try parseSmaps(smapsText, path: smapsPath)
        try checkAgreement(maps: maps, smaps: smaps, mapsPath: mapsPath, smapsPath: smapsPath)
        let (words, ranges) = try parsePagemap(RawIO.readBytes(pagemapPath), vmas: maps, path: pagemapPath)

        func optionalText(_ name: String) throws -> String? {
            let p = directory + "/" + name
            return RawIO.exists(p) ? try RawIO.readText(p) : nil
        }
        let rollupText = try optionalText("smaps_rollup")
        let rollup = try rollupText.map { try parseSmapsRollup($0, path: directory + "/smaps_rollup") }
        let numaText = try optionalText("numa_maps")
        let numa = try numaText.map { try parseNumaMaps($0, path: directory + "/numa_maps") } ?? []
        let cmdlinePath = directory + "/cmdline"
        let cmdlineBytes = RawIO.exists(cmdlinePath) ? try RawIO.readBytes(cmdlinePath) : []
        var args = cmdlineBytes.split(separator: 0, omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }
        if cmdlineBytes.last == 0 { args.removeLast() }
        let status = try optionalText("status")

        return ProcessSnapshot(pid: pid, directory: directory, maps: maps, mapsText: mapsText,
                               smaps: smaps, smapsText: smapsText, smapsRollup: rollup,
                               smapsRollupText: rollupText, numaMaps: numa, numaMapsText: numaText,
                               cmdline: args, cmdlineBytes: cmdlineBytes, statusText: status,
                               pagemap: words, vmaPageRanges: ranges)
    }

    // MARK: FORMAT

    public static func parseFormat(_ text: String, path: String) throws -> SnapshotFormat {
        let lines = splitLines(text)
        guard let first = lines.first else {
            throw SnapshotError.malformedText(path: path, line: 1, reason: "empty FORMAT file")
        }
        let head = first.split(separator: " ")
        guard head.count == 2, head[0] == formatMagic, let version = Int(head[1]) else {
            throw SnapshotError.malformedText(path: path, line: 1,
                reason: "expected '\(formatMagic) <version>', found '\(first)'")
        }
        guard version == supportedVersion else {
            throw SnapshotError.unsupported(path: path, reason: "format version \(version) (this reader knows \(supportedVersion))")
        }
        var kernel: String?
        var pageSizeValue: Int?
        var pids: [Int32]?
        var capture: CaptureStability?
        var extra: [SnapshotField] = []
        for (i, line) in lines.enumerated().dropFirst() {
            let lineNo = i + 1
            if line.isEmpty { continue }
            let key = line.prefix { $0 != " " }
            let rest = String(line.dropFirst(key.count).trimmingBlanks())
            switch key {
            case "kernel":
                kernel = rest
            case "page_size":
                guard let v = Int(rest) else {
                    throw SnapshotError.malformedText(path: path, line: lineNo, reason: "page_size '\(rest)' is not a number")
                }
                guard v == SnapshotReader.pageSize else {
                    throw SnapshotError.unsupported(path: path, reason: "page_size \(v) (only 4096 is supported)")
                }
                pageSizeValue = v
            case "pids":
                var list: [Int32] = []
                for tok in rest.split(separator: " ") {
                    guard let p = Int32(tok), p > 0 else {
                        throw SnapshotError.malformedText(path: path, line: lineNo, reason: "pid '\(tok)' is not a positive number")
                    }
                    guard !list.contains(p) else {
                        throw SnapshotError.malformedText(path: path, line: lineNo, reason: "pid \(p) listed twice")
                    }
                    list.append(p)
                }
                pids = list
            case CaptureStability.key:
                capture = try CaptureStability.parse(rest, path: path, line: lineNo)
            default:
                extra.append(SnapshotField(name: String(key), value: rest, line: String(line)))
            }
        }
        guard let kernel else { throw SnapshotError.malformedText(path: path, line: lines.count, reason: "no 'kernel' line") }
        guard let pageSizeValue else { throw SnapshotError.malformedText(path: path, line: lines.count, reason: "no 'page_size' line") }
        guard let pids else { throw SnapshotError.malformedText(path: path, line: lines.count, reason: "no 'pids' line") }
        return SnapshotFormat(version: version, kernel: kernel, pageSize: pageSizeValue, pids: pids, capture: capture, extra: extra)
    }

    // MARK: kpageflags

    /// Decodes the kpageflags file: records of (pfn, flags, count), each a
    /// little-endian u64, strictly ascending by pfn.
    public static func parseKPageFlags(_ bytes: [UInt8], path: String) throws -> [KPageFlagsRecord] {
        let size = KPageFlagsRecord.byteSize
        if bytes.count % size != 0 {
            throw SnapshotError.malformedBinary(path: path, offset: bytes.count - bytes.count % size,
                reason: "file size \(bytes.count) is not a multiple of \(size) (a record is three u64); trailing \(bytes.count % size) bytes")
        }
        let n = bytes.count / size
        var out: [KPageFlagsRecord] = []
        out.reserveCapacity(n)
        try bytes.withUnsafeBytes { raw in
            var previous: UInt64? = nil
            for i in 0..<n {
                let o = i * size
                let pfn = loadLE64(raw, o)
                if let previous, pfn <= previous {
                    throw SnapshotError.malformedBinary(path: path, offset: o,
                        reason: "record \(i) has pfn 0x\(String(pfn, radix: 16)), not above the previous record's 0x\(String(previous, radix: 16)) (records must be sorted strictly ascending by pfn)")
                }
                previous = pfn
                let count = loadLE64(raw, o + 16)
                guard count <= KPageFlagsRecord.maxCount else {
                    throw SnapshotError.malformedBinary(path: path, offset: o + 16,
                        reason: "record \(i) (pfn 0x\(String(pfn, radix: 16))): kpagecount \(count) is above \(KPageFlagsRecord.maxCount), more than any page can be mapped")
                }
                out.append(KPageFlagsRecord(pfn: pfn, flags: KPageFlags(rawValue: loadLE64(raw, o + 8)), count: count))
            }
        }
        return out
    }

    // MARK: maps

    public static func parseMaps(_ text: String, path: String) throws -> [MapsLine] {
        var out: [MapsLine] = []
        var previousEnd: UInt64 = 0
        for (i, line) in splitLines(text).enumerated() {
            guard let m = parseMapsLine(line) else {
                throw SnapshotError.malformedText(path: path, line: i + 1, reason: "not a maps line: '\(line)'")
            }
            try validate(m, previousEnd: previousEnd, path: path, line: i + 1)
            previousEnd = m.end
            out.append(m)
        }
        return out
    }

    private static func validate(_ m: MapsLine, previousEnd: UInt64, path: String, line: Int) throws {
        if m.start >= m.end || m.start % Geometry.pageSize != 0 || m.end % Geometry.pageSize != 0 {
            throw SnapshotError.malformedText(path: path, line: line,
                reason: "VMA \(hex(m.start))-\(hex(m.end)) is empty or not page aligned")
        }
        if m.start < previousEnd {
            throw SnapshotError.malformedText(path: path, line: line,
                reason: "VMA \(hex(m.start))-\(hex(m.end)) overlaps or precedes the previous VMA (ends \(hex(previousEnd)))")
        }
    }

    /// Parses `start-end perms offset major:minor inode [name]`; nil when the
    /// line does not have that shape.
    public static func parseMapsLine<S: StringProtocol>(_ line: S) -> MapsLine? {
        let b = Array(line.utf8)
        var i = 0
        func hexField(until terminator: UInt8) -> UInt64? {
            var v: UInt64 = 0
            let begin = i
            while i < b.count, b[i] != terminator {
                guard let d = hexDigit(b[i]), v >> 60 == 0 else { return nil }
                v = v << 4 | UInt64(d)
                i += 1
            }
            guard i > begin, i < b.count else { return nil }
            i += 1 // terminator
            return v
        }
        guard let start = hexField(until: UInt8(ascii: "-")),
              let end = hexField(until: UInt8(ascii: " ")) else { return nil }
        guard i + 5 <= b.count, b[i + 4] == UInt8(ascii: " ") else { return nil }
        let perms = String(decoding: b[i..<i + 4], as: UTF8.self)
        i += 5
        guard let offset = hexField(until: UInt8(ascii: " ")),
              let major = hexField(until: UInt8(ascii: ":")),
              let minor = hexField(until: UInt8(ascii: " ")) else { return nil }
        var inode: UInt64 = 0
        let inodeStart = i
        while i < b.count, b[i] != UInt8(ascii: " ") {
            guard b[i] >= 48, b[i] <= 57 else { return nil }
            inode = inode &* 10 &+ UInt64(b[i] - 48)
            i += 1
        }
        guard i > inodeStart else { return nil }
        while i < b.count, b[i] == UInt8(ascii: " ") { i += 1 }
        let name = String(decoding: b[i...], as: UTF8.self)
        guard major <= UInt64(UInt32.max), minor <= UInt64(UInt32.max) else { return nil }
        return MapsLine(start: start, end: end, perms: perms, offset: offset, devMajor: UInt32(major),
                        devMinor: UInt32(minor), inode: inode, name: name, raw: String(line))
    }

    // MARK: smaps

    public static func parseSmaps(_ text: String, path: String) throws -> [SmapsBlock] {
        var out: [SmapsBlock] = []
        var current: SmapsBlock?
        var previousEnd: UInt64 = 0
        for (i, line) in splitLines(text).enumerated() {
            if let field = parseField(line) {
                guard current != nil else {
                    throw SnapshotError.malformedText(path: path, line: i + 1,
                        reason: "field line before the first VMA header: '\(line)'")
                }
                current!.fields.append(field)
            } else if let header = parseMapsLine(line) {
                try validate(header, previousEnd: previousEnd, path: path, line: i + 1)
                previousEnd = header.end
                if let c = current { out.append(c) }
                current = SmapsBlock(header: header, headerLine: i + 1, fields: [])
            } else {
                throw SnapshotError.malformedText(path: path, line: i + 1,
                    reason: "neither a VMA header nor a 'Name: value' line: '\(line)'")
            }
        }
        if let c = current { out.append(c) }
        return out
    }

    public static func parseSmapsRollup(_ text: String, path: String) throws -> SmapsRollup {
        let lines = splitLines(text)
        guard let first = lines.first, let header = parseMapsLine(first) else {
            throw SnapshotError.malformedText(path: path, line: 1, reason: "missing '[rollup]' header line")
        }
        var fields: [SnapshotField] = []
        for (i, line) in lines.enumerated().dropFirst() {
            guard let f = parseField(line) else {
                throw SnapshotError.malformedText(path: path, line: i + 1, reason: "not a 'Name: value' line: '\(line)'")
            }
            fields.append(f)
        }
        return SmapsRollup(header: header, fields: fields, text: text)
    }

    /// A `Name: value` line: the first blank-delimited token ends with a colon.
    static func parseField(_ line: Substring) -> SnapshotField? {
        guard let colon = line.firstIndex(of: ":") else { return nil }
        let name = line[..<colon]
        guard !name.isEmpty, !name.contains(" "), !name.contains("\t") else { return nil }
        let value = line[line.index(after: colon)...].trimmingBlanks()
        return SnapshotField(name: String(name), value: String(value), line: String(line))
    }

    /// maps and smaps must list the same VMAs in the same order, header text
    /// identical to the maps line.
    public static func checkAgreement(maps: [MapsLine], smaps: [SmapsBlock], mapsPath: String, smapsPath: String) throws {
        for i in 0..<min(maps.count, smaps.count) where maps[i].raw != smaps[i].header.raw {
            throw SnapshotError.mapsSmapsMismatch(mapsPath: mapsPath, smapsPath: smapsPath, mapsLine: i + 1,
                smapsLine: smaps[i].headerLine,
                reason: "VMA \(i): maps has '\(maps[i].raw)', smaps has '\(smaps[i].header.raw)'")
        }
        if maps.count != smaps.count {
            let i = min(maps.count, smaps.count)
            let smapsLine = i < smaps.count ? smaps[i].headerLine
                : (smaps.last.map { $0.headerLine + $0.fields.count + 1 } ?? 1)
            let reason = maps.count > smaps.count
                ? "maps has \(maps.count) VMAs, smaps \(smaps.count); first missing from smaps: '\(maps[i].raw)'"
                : "smaps has \(smaps.count) VMAs, maps \(maps.count); first missing from maps: '\(smaps[i].header.raw)'"
            throw SnapshotError.mapsSmapsMismatch(mapsPath: mapsPath, smapsPath: smapsPath, mapsLine: i + 1,
                                                  smapsLine: smapsLine, reason: reason)
        }
    }

    // MARK: numa_maps

    public static func parseNumaMaps(_ text: String, path: String) throws -> [NumaMapsLine] {
        var out: [NumaMapsLine] = []
        for (i, line) in splitLines(text).enumerated() {
            var tokens = line.split(separator: " ", omittingEmptySubsequences: true)[...]
            guard let addrTok = tokens.popFirst(), let start = UInt64(addrTok, radix: 16),
                  var policy = tokens.popFirst().map(String.init) else {
                throw SnapshotError.malformedText(path: path, line: i + 1, reason: "expected '<address> <policy> …': '\(line)'")
            }
            if policy == "weighted", let next = tokens.first, next.hasPrefix("interleave") {
                policy += " " + next
                tokens = tokens.dropFirst()
            }
            var file: String?
            var heap = false, stack = false, huge = false
            var fields: [NumaMapsField] = []
            for tok in tokens {
                switch tok {
                case "heap": heap = true
                case "stack": stack = true
                case "huge": huge = true
                default:
                    guard let eq = tok.firstIndex(of: "=") else {
                        throw SnapshotError.malformedText(path: path, line: i + 1, reason: "unexpected token '\(tok)'")
                    }
                    let key = String(tok[..<eq])
                    let value = String(tok[tok.index(after: eq)...])
                    if key == "file" { file = unescapeOctal(value) } else {
                        fields.append(NumaMapsField(key: key, value: value))
                    }
                }
            }
            out.append(NumaMapsLine(raw: String(line), start: start, policy: policy, file: file, isHeap: heap,
                                    isStack: stack, isHuge: huge, fields: fields))
        }
        return out
    }

    /// Undoes the kernel's `\ooo` escaping of paths.
    static func unescapeOctal(_ s: String) -> String {
        let b = Array(s.utf8)
        guard b.contains(UInt8(ascii: "\\")) else { return s }
        var out: [UInt8] = []
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 3 < b.count,
               b[(i + 1)..<(i + 4)].allSatisfy({ $0 >= 48 && $0 <= 55 }) {
                let v = (Int(b[i + 1] - 48) << 6) | (Int(b[i + 2] - 48) << 3) | Int(b[i + 3] - 48)
                if v < 256 {
                    out.append(UInt8(v))
                    i += 4
                    continue
                }
            }
            out.append(b[i])
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: pagemap

    /// Splits the captured pagemap into words; its length must be exactly the
    /// sum of the VMAs' page counts times 8.
    public static func parsePagemap(_ bytes: [UInt8], vmas: [MapsLine], path: String) throws
        -> (words: [PagemapWord], ranges: [Range<Int>]) {
        var ranges: [Range<Int>] = []
        ranges.reserveCapacity(vmas.count)
        var total = 0
        for v in vmas {
            ranges.append(total..<total + v.pageCount)
            total += v.pageCount
        }
        let expected = total * 8
        if bytes.count < expected {
            // Name the VMA whose words the file stops in.
            let wordsPresent = bytes.count / 8
            let vi = ranges.firstIndex { $0.upperBound > wordsPresent } ?? max(vmas.count - 1, 0)
            let v = vmas[vi]
            throw SnapshotError.malformedBinary(path: path, offset: bytes.count,
                reason: "pagemap is short: \(bytes.count) bytes, expected \(expected) (\(total) pages over \(vmas.count) VMAs); ends inside VMA \(vi) \(hex(v.start))-\(hex(v.end)) whose words span bytes \(ranges[vi].lowerBound * 8)..<\(ranges[vi].upperBound * 8)")
        }
        if bytes.count > expected {
            throw SnapshotError.malformedBinary(path: path, offset: expected,
                reason: "pagemap is long: \(bytes.count) bytes, expected \(expected) (\(total) pages over \(vmas.count) VMAs); \(bytes.count - expected) trailing bytes")
        }
        var words = [PagemapWord](repeating: PagemapWord(0), count: total)
        bytes.withUnsafeBytes { raw in
            for i in 0..<total { words[i] = PagemapWord(loadLE64(raw, i * 8)) }
        }
        return (words, ranges)
    }

    // MARK: helpers

    /// Lines without their newline; a final newline does not add an empty line.
    static func splitLines(_ text: String) -> [Substring] {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last == "" { lines.removeLast() }
        return lines
    }

    static func hex(_ v: UInt64) -> String { String(v, radix: 16) }
}

@inline(__always)
func hexDigit(_ c: UInt8) -> UInt8? {
    switch c {
    case 48...57: return c - 48
    case 97...102: return c - 87
    case 65...70: return c - 55
    default: return nil
    }
}
