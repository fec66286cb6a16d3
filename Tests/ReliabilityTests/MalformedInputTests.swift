import Testing
import Foundation
import MemoryModel
import TestKit
import Scenario
import KernelSnapshot

/// Mutated scenario files and corrupted snapshots: each gives a typed error
/// or a valid result — never a crash, never a hang (every case runs under a
/// timeout). `PAGEWALK_MALFORMED_CASES=N` runs more cases, and
/// `PAGEWALK_MALFORMED_SEED=S` changes the seed.
@Suite struct MalformedScenarioTests {
    static var cases: Int { Knobs.int("PAGEWALK_MALFORMED_CASES") ?? 400 }
    static var seed: UInt64 { Knobs.uint("PAGEWALK_MALFORMED_SEED") ?? 0xBAD5EED }

    static let small: [String] = [
        #"{"version":1,"architecture":"x86_64","levels":4,"memoryBudget":"16M","processes":[{"pid":1,"name":"a","vmas":[{"start":"0x400000","size":"2M","perms":"rw-p","kind":"anon"}],"ops":[{"op":"fault","start":"0x400000","size":"64K","write":true},{"op":"swapout","start":"0x400000","size":"16K"}]}]}"#,
        #"{"version":1,"architecture":"arm64","levels":3,"numaNodes":2,"memoryBudget":"64M","processes":[{"pid":7,"name":"b","vmas":[{"start":"0x40000000","size":"4M","perms":"rw-p","kind":"anon","flags":["hugepage"]},{"start":"0x50000000","size":"2M","perms":"rw-p","kind":"hugetlb","hugePageSize":"64K"}],"ops":[{"op":"thp","start":"0x40000000","size":"2M"},{"op":"hugetlb","start":"0x50000000","size":"128K"},{"op":"fork","child":8}]},{"pid":8,"name":"b","parent":7,"ops":[{"op":"fault","start":"0x40000000","size":"8K","write":true}]}]}"#,
        #"{"version":1,"architecture":"x86_64","levels":5,"memoryBudget":"8M","processes":[{"pid":2,"name":"c","vmas":[{"start":"0x10000","end":"0x30000","perms":"r--p","kind":"file","file":{"path":"/lib/x","dev":"08:01","inode":5,"offset":"0x0"}},{"start":"0x100000","size":"16K","perms":"r--p","kind":"pfnmap","flags":["io"]}],"ops":[{"op":"fault","start":"0x10000","size":"8K"},{"op":"remap_pfn","start":"0x100000","size":"16K","pfn":"0x1000"},{"op":"guard_install","start":"0x20000","size":"4K"}]}]}"#,
    ]

    /// The tokens a random edit may put in place of another.
    static let replacements = [
        "0", "-1", "1e308", "18446744073709551615", "18446744073709551616", "\"0xffffffffffffffff\"", "\"0x1001\"",
        "\"1P\"", "\"16E\"", "\"0x7ffffffff000\"", "null", "true", "[]", "{}", "\"\"", "\"rw-p\"", "\"hugetlb\"",
        "\"anon\"", "\"fork\"", "2147483648", "\"4096K\"", "\"\\u0000\"", "\"\\ud800\"", "9999999999999999999999",
    ]

    enum Outcome: Sendable { case parsed, built, error(String) }

    /// Parses (and, for a modest document, builds) `text` under a timeout.
    static func attempt(_ bytes: [UInt8]) -> Outcome? {
        withTimeout(20) {
            do {
                let doc = try ScenarioDocument.parse(Data(bytes))
                // Valid documents are built when small enough to build quickly;
                // the validator has bounded what they populate by memoryBudget.
                guard doc.memoryBudget <= 256 << 20 else { return .parsed }
                _ = try ScenarioBuilder.build(doc)
                return .built
            } catch {
                return .error("\(error)")   // ScenarioError: the only thing parse/build throw
            }
        }
    }

    static func mutate(_ text: String, _ rng: inout SeededRandom) -> [UInt8] {
        var b = Array(text.utf8)
        switch Int.random(in: 0..<7, using: &rng) {
        case 0:     // bit flips
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let i = Int.random(in: 0..<b.count, using: &rng)
                b[i] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
            }
        case 1:     // truncation
            b = Array(b.prefix(Int.random(in: 0..<b.count, using: &rng)))
        case 2, 3:  // a token replaced (numbers, strings, literals)
            let tokens = tokenRanges(b)
            if let r = tokens.randomElement(using: &rng) {
                b.replaceSubrange(r, with: Array(replacements.randomElement(using: &rng)!.utf8))
            }
        case 4:     // a token duplicated or deleted
            let tokens = tokenRanges(b)
            if let r = tokens.randomElement(using: &rng) {
                if Bool.random(using: &rng) { b.removeSubrange(r) } else { b.insert(contentsOf: Array(b[r]) + Array(",".utf8), at: r.lowerBound) }
            }
        case 5:     // an overlapping VMA: a VMA start moved into the previous one
            let s = String(decoding: b, as: UTF8.self)
            var out = s
            if let r = s.range(of: "\"start\": \"0x7ffff6000000\"") ?? s.range(of: "\"start\":\"0x50000000\"") {
                out.replaceSubrange(r, with: "\"start\": \"0x7ffff5d00000\"")
            } else if let r = s.range(of: "\"size\"") {
                out.replaceSubrange(r, with: "\"end\": \"0x1000\", \"size\"")
            }
            b = Array(out.utf8)
        default:    // huge sizes
            let s = String(decoding: b, as: UTF8.self)
            var out = s
            for key in ["\"size\": \"", "\"size\":\""] {
                if let r = out.range(of: key) {
                    let huge = ["1T", "16E", "256G", "0x7ffffffff000", "99999999999999999999"].randomElement(using: &rng)!
                    if let end = out[r.upperBound...].firstIndex(of: "\"") { out.replaceSubrange(r.upperBound..<end, with: huge) }
                    break
                }
            }
            if let r = out.range(of: "\"memoryBudget\": \"64M\"") { out.replaceSubrange(r, with: "\"memoryBudget\": \"1P\"") }
            b = Array(out.utf8)
        }
        return b
    }

    /// Byte ranges of JSON tokens (strings, numbers, literals).
    static func tokenRanges(_ b: [UInt8]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var i = 0
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\"") {
                var j = i + 1
                while j < b.count && b[j] != UInt8(ascii: "\"") { j += b[j] == UInt8(ascii: "\\") ? 2 : 1 }
                out.append(i..<min(b.count, j + 1))
                i = j + 1
            } else if (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "-") || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) {
                var j = i
                while j < b.count && ![UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: ":")].contains(b[j]) { j += 1 }
                out.append(i..<j)
                i = j
            } else {
                i += 1
            }
        }
        return out
    }

    @Test func mutatedScenariosGiveTypedErrorsOrValidResults() throws {
        var rng = SeededRandom(seed: Self.seed)
        let bases = [DefaultScenario.json] + Self.small
        // The bases themselves are valid and build.
        for (i, base) in bases.enumerated() {
            guard case .built? = Self.attempt(Array(base.utf8)) else { Issue.record("base scenario \(i) does not build"); return }
        }
        var tally: [String: Int] = [:]
        let started = Date()
        for n in 0..<Self.cases {
            let base = bases[n % bases.count]
            let bytes = Self.mutate(base, &rng)
            let t0 = Date()
            guard let outcome = Self.attempt(bytes) else {
                Issue.record("case \(n) hung (> 20 s): \(String(decoding: bytes.prefix(400), as: UTF8.self))")
                return
            }
            if Date().timeIntervalSince(t0) > 5 { Issue.record("case \(n) took \(Date().timeIntervalSince(t0)) s") }
            switch outcome {
            case .parsed: tally["valid (not built)", default: 0] += 1
            case .built: tally["valid, built", default: 0] += 1
            case .error(let e):
                tally[String(e.prefix { $0 != ":" && $0 != "(" }.prefix(40)), default: 0] += 1
                #expect(!e.isEmpty)
            }
        }
        print("[malformed scenarios] \(Self.cases) cases in \(String(format: "%.1f", Date().timeIntervalSince(started))) s: " +
              tally.sorted { $0.value > $1.value }.prefix(8).map { "\($0.key) \($0.value)" }.joined(separator: ", "))
    }

    /// The validator refuses, by name, what is plainly wrong.
    @Test(arguments: [
        (#"{"version":1,"architecture":"x86_64","processes":[{"pid":1,"name":"a","vmas":[{"start":"0x400000","size":"2M","perms":"rw-p","kind":"anon"},{"start":"0x500000","size":"2M","perms":"rw-p","kind":"anon"}]}]}"#, "overlappingVMAs"),
        (#"{"version":1,"architecture":"x86_64","processes":[{"pid":1,"name":"a","vmas":[{"start":"0x400000","size":"16E","perms":"rw-p","kind":"anon"}]}]}"#, ""),
        (#"{"version":1,"architecture":"x86_64","processes":[{"pid":1,"name":"a","vmas":[{"start":"0xfffffffffffff000","size":"4K","perms":"rw-p","kind":"anon"}]}]}"#, "beyondAddressSpace"),
        (#"{"version":1,"architecture":"x86_64","processes":[{"pid":1,"name":"a","vmas":[{"start":"0x400001","size":"4K","perms":"rw-p","kind":"anon"}]}]}"#, "unalignedAddress"),
        (#"{"version":1,"architecture":"x86_64","processes":[{"pid":1,"name":"a","vmas":[{"start":"0x400000","end":"0x400000","perms":"rw-p","kind":"anon"}]}]}"#, "emptyRange"),
        (#"{"version":1,"architecture":"x86_64","memoryBudget":"1M","processes":[{"pid":1,"name":"a","vmas":[{"start":"0x400000","size":"64M","perms":"rw-p","kind":"anon"}],"ops":[{"op":"fault","start":"0x400000","size":"64M","write":true}]}]}"#, "budgetExceeded"),
        (#"{"version":1,"architecture":"x86_64","processes":[{"pid":1,"name":"a","vmas":[{"start":"0x400000","size":"4K","perms":"rw-p","kind":"anon"}],"ops":[{"op":"fault","start":"0x800000","size":"4K"}]}]}"#, "outsideVMAs"),
    ])
    func plainlyWrongScenariosAreRefusedByName(_ json: String, _ expected: String) {
        do {
            _ = try ScenarioDocument.parse(json)
            Issue.record("accepted: \(json)")
        } catch {
            let name = Mirror(reflecting: error).children.first?.label ?? "\(error)"
            if !expected.isEmpty { #expect(name == expected, "\(error)") }
            #expect(!error.description.isEmpty)
        }
    }
}

/// Corrupted copies of the python-idle fixture snapshot: read and rebuild
/// give a typed `SnapshotError` (or a valid rebuild), each under a timeout.
@Suite struct CorruptSnapshotFuzzTests {
    static let fixture = fixtureSnapshot("python-idle")
    static var cases: Int { Knobs.int("PAGEWALK_SNAPSHOT_CASES") ?? 60 }

    /// The fixture's files, read once: relative path → bytes.
    static func load(_ dir: String) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        let fm = FileManager.default
        guard let e = fm.enumerator(atPath: dir) else { return out }
        for case let rel as String in e {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: dir + "/" + rel, isDirectory: &isDir), !isDir.boolValue else { continue }
            out[rel] = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/" + rel)))
        }
        return out
    }

    static func write(_ files: [String: [UInt8]], to dir: String) throws {
        let fm = FileManager.default
        try? fm.removeItem(atPath: dir)
        for (rel, bytes) in files {
            let path = dir + "/" + rel
            try fm.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        }
    }

    enum Outcome: Sendable { case rebuilt, snapshotError(String), otherError(String) }

    static func attempt(_ dir: String) -> Outcome? {
        withTimeout(30) {
            do {
                let snap = try SnapshotReader.read(directory: dir)
                _ = try SnapshotRebuilder.rebuild(snap)
                return .rebuilt
            } catch let e as SnapshotError {
                return .snapshotError(e.description)
            } catch {
                return .otherError("\(type(of: error)): \(error)")
            }
        }
    }

    static func lines(_ b: [UInt8]) -> [[UInt8]] { b.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map(Array.init) }
    static func join(_ l: [[UInt8]]) -> [UInt8] { Array(l.joined(separator: [UInt8(ascii: "\n")])) }

    /// One corruption of one file; returns its description.
    static func corrupt(_ files: inout [String: [UInt8]], _ rng: inout SeededRandom) -> String {
        let names = files.keys.sorted()
        let textFiles = names.filter { !$0.hasSuffix("pagemap") && !$0.hasSuffix("kpageflags") && !$0.hasSuffix("cmdline") }
        let pid = names.first { $0.hasSuffix("/maps") }.map { ($0 as NSString).deletingLastPathComponent } ?? "proc/0"
        switch Int.random(in: 0..<11, using: &rng) {
        case 0:
            let f = names.randomElement(using: &rng)!
            let n = Int.random(in: 0..<max(1, files[f]!.count), using: &rng)
            files[f] = Array(files[f]!.prefix(n))
            return "\(f) truncated to \(n) bytes"
        case 1:
            let f = names.randomElement(using: &rng)!
            guard !files[f]!.isEmpty else { return "nothing" }
            var d = ""
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                let i = Int.random(in: 0..<files[f]!.count, using: &rng)
                let bit = UInt8.random(in: 0..<8, using: &rng)
                files[f]![i] ^= 1 << bit
                d += " \(i):\(bit)"
            }
            return "\(f) bits flipped at\(d)"
        case 2:
            let f = ["kpageflags", pid + "/pagemap"].randomElement(using: &rng)!
            guard files[f] != nil else { return "nothing" }   // removed by an earlier corruption
            let extra = Int.random(in: 1...23, using: &rng)
            if Bool.random(using: &rng) { files[f]! += [UInt8](repeating: 0xA5, count: extra) }
            else { files[f] = Array(files[f]!.dropLast(extra)) }
            return "\(f) record size off by \(extra)"
        case 3:
            let f = textFiles.randomElement(using: &rng)!
            var l = lines(files[f]!)
            guard l.count > 2 else { return "nothing" }
            let i = Int.random(in: 0..<(l.count - 1), using: &rng), j = Int.random(in: 0..<(l.count - 1), using: &rng)
            l.swapAt(i, j)
            files[f] = join(l)
            return "\(f) lines \(i) and \(j) swapped"
        case 4:
            // Overlapping VMAs: a maps line's start moved below the previous
            // end, in maps and in the matching smaps header alike.
            guard let mapsBytes = files[pid + "/maps"], let smapsBytes = files[pid + "/smaps"] else { return "nothing" }
            var maps = lines(mapsBytes)
            var smaps = lines(smapsBytes)
            guard maps.count > 2 else { return "nothing" }
            let i = Int.random(in: 1..<(maps.count - 1), using: &rng)
            let old = String(decoding: maps[i], as: UTF8.self)
            let prev = String(decoding: maps[i - 1], as: UTF8.self)
            guard let dash = old.firstIndex(of: "-"), let pdash = prev.firstIndex(of: "-"),
                  let pstart = UInt64(prev[..<pdash], radix: 16) else { return "nothing" }
            let newStart = String(pstart + 0x1000, radix: 16)
            let new = newStart + old[dash...]
            maps[i] = Array(new.utf8)
            if let k = smaps.firstIndex(where: { $0 == Array(old.utf8) }) { smaps[k] = Array(new.utf8) }
            files[pid + "/maps"] = join(maps)
            files[pid + "/smaps"] = join(smaps)
            return "maps line \(i + 1) overlaps the previous VMA"
        case 5:
            // Huge values: an address near 2^64, a size of 2^50 kB.
            let f = [pid + "/maps", pid + "/smaps", pid + "/numa_maps", pid + "/smaps_rollup"].randomElement(using: &rng)!
            guard files[f] != nil else { return "nothing" }
            var l = lines(files[f]!)
            let i = Int.random(in: 0..<l.count, using: &rng)
            var s = String(decoding: l[i], as: UTF8.self)
            if let r = s.range(of: #"[0-9a-f]{8,}"#, options: .regularExpression) { s.replaceSubrange(r, with: "fffffffffffff000") }
            else if let r = s.range(of: #"[0-9]+ kB"#, options: .regularExpression) { s.replaceSubrange(r, with: "1125899906842624 kB") }
            else if let r = s.range(of: #"=[0-9]+"#, options: .regularExpression) { s.replaceSubrange(r, with: "=99999999999999999999") }
            l[i] = Array(s.utf8)
            files[f] = join(l)
            return "\(f) line \(i + 1) given a huge value"
        case 6:
            // pagemap words with wild PFNs / swap offsets.
            let f = pid + "/pagemap"
            let count = (files[f]?.count ?? 0) / 8
            guard count > 0 else { return "nothing" }
            for _ in 0..<Int.random(in: 1...16, using: &rng) {
                let i = Int.random(in: 0..<count, using: &rng) * 8
                let w: UInt64 = [1 << 63 | (1 << 55 - 1), 1 << 62 | (1 << 50 - 1) << 5 | 31, 1 << 63 | 0x1, 1 << 62 | 1 << 63 | 7, UInt64.random(in: 0...UInt64.max, using: &rng)]
                    .randomElement(using: &rng)!
                for k in 0..<8 { files[f]![i + k] = UInt8(truncatingIfNeeded: w >> (8 * UInt64(k))) }
            }
            return "\(f) words replaced"
        case 7:
            // kpageflags records with wild flags (compound heads without tails, huge, …).
            let f = "kpageflags"
            let count = (files[f]?.count ?? 0) / 24
            guard count > 0 else { return "nothing" }
            for _ in 0..<Int.random(in: 1...16, using: &rng) {
                let i = Int.random(in: 0..<count, using: &rng) * 24 + [8, 16].randomElement(using: &rng)!
                let w = UInt64.random(in: 0...UInt64.max, using: &rng) & [0xffff_ffff_ffff_ffff, 1 << 15 | 1 << 17 | 1 << 22, 0x7fff_ffff].randomElement(using: &rng)!
                for k in 0..<8 { files[f]![i + k] = UInt8(truncatingIfNeeded: w >> (8 * UInt64(k))) }
            }
            return "kpageflags flags/counts replaced"
        case 8:
            // Extreme binary words: 0, 2^63 + k, 2^64 - 1, huge PFNs and swap
            // offsets, into any field of a kpageflags record or a pagemap word.
            let f = ["kpageflags", pid + "/pagemap"].randomElement(using: &rng)!
            let count = (files[f]?.count ?? 0) / 8
            guard count > 0 else { return "nothing" }
            let k = UInt64.random(in: 0...7, using: &rng)
            let w: UInt64 = [0, 1 << 63 + k, UInt64.max, UInt64.max - k, PagemapBits.present | PagemapBits.pfnMask - k,
                             PagemapBits.swap | (PagemapBits.pfnMask & ~PagemapBits.swapTypeMask) | k,
                             PagemapBits.swap | 1 << 40 | k, 1 << 54 | k].randomElement(using: &rng)!
            let i = Int.random(in: 0..<count, using: &rng) * 8
            for b in 0..<8 { files[f]![i + b] = UInt8(truncatingIfNeeded: w >> (8 * UInt64(b))) }
            return "\(f) word \(i / 8) set to 0x\(String(w, radix: 16))"
        case 9:
            // Extreme text numbers: any size, negative, empty, in place of a
            // number of maps, smaps, smaps_rollup, numa_maps, status or FORMAT.
            let f = textFiles.randomElement(using: &rng)!
            var l = lines(files[f]!)
            guard !l.isEmpty else { return "nothing" }
            let i = Int.random(in: 0..<l.count, using: &rng)
            var s = String(decoding: l[i], as: UTF8.self)
            let value = ["", "-1", "-9223372036854775808", "18446744073709551616", "99999999999999999999999999",
                         "0x", "-0", String(repeating: "9", count: 40)].randomElement(using: &rng)!
            guard let r = s.range(of: #"[0-9a-f]+"#, options: .regularExpression) else { return "nothing" }
            s.replaceSubrange(r, with: value)
            l[i] = Array(s.utf8)
            files[f] = join(l)
            return "\(f) line \(i + 1): a number replaced by '\(value)'"
        default:
            let f = names.randomElement(using: &rng)!
            files[f] = nil
            return "\(f) removed"
        }
    }

    @Test(.enabled(if: CorruptSnapshotFuzzTests.fixture != nil, "fixture Tests/Fixtures/snapshots/python-idle is absent"))
    func corruptedSnapshotsGiveTypedErrors() throws {
        let src = try #require(Self.fixture)
        let original = try Self.load(src)
        let tmp = NSTemporaryDirectory() + "pagewalk-corrupt-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        // The fixture itself rebuilds.
        try Self.write(original, to: tmp)
        guard case .rebuilt? = Self.attempt(tmp) else { Issue.record("the fixture does not rebuild"); return }
        var rng = SeededRandom(seed: Knobs.uint("PAGEWALK_SNAPSHOT_SEED") ?? 0xC0FFEE)
        var tally: [String: Int] = [:]
        let started = Date()
        for n in 0..<Self.cases {
            var files = original
            var what: [String] = []
            for _ in 0..<(n % 4 == 3 ? 2 : 1) { what.append(Self.corrupt(&files, &rng)) }
            try Self.write(files, to: tmp)
            guard let outcome = Self.attempt(tmp) else {
                Issue.record("case \(n) hung (> 30 s): \(what.joined(separator: "; "))")
                return
            }
            switch outcome {
            case .rebuilt: tally["rebuilt", default: 0] += 1
            case .snapshotError(let e):
                tally[String(e.prefix(while: { $0 != " " }).prefix(30)), default: 0] += 1
                #expect(e.contains(tmp) || e.contains("pfn") || !e.isEmpty)
            case .otherError(let e):
                Issue.record("case \(n) (\(what.joined(separator: "; "))): untyped error \(e)")
            }
        }
        print("[corrupt snapshots] \(Self.cases) cases in \(String(format: "%.1f", Date().timeIntervalSince(started))) s: " +
              tally.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
    }
}
