// Decoding: JSON values -> scenario value types, checking everything that can
// be checked on one value at a time (types, unknown keys, names, alignment,
// address-space limits). Cross-value rules (overlaps, op coverage, fork
// graph, budgets) live in ScenarioValidator.swift.

import Foundation
import MemoryModel

// MARK: - Paths

enum JSONPath {
    static func key(_ base: String, _ key: String) -> String {
        base.isEmpty ? key : base + "." + key
    }

    static func index(_ base: String, _ index: Int) -> String {
        base + "[\(index)]"
    }
}

// MARK: - Objects

/// An object being decoded: rejects unknown and duplicate keys up front, in
/// document order, so a typo is reported as what it is rather than as the
/// missing field it was meant to be.
struct ObjectReader {
    let path: String
    private var members: [String: JSONValue] = [:]

    init(_ value: JSONValue, path: String, allowed: [String]) throws(ScenarioError) {
        self.path = path
        guard case .object(let list) = value else {
            throw .wrongType(path: path, expected: "object", found: value.typeName)
        }
        for member in list {
            let memberPath = JSONPath.key(path, member.key)
            guard allowed.contains(member.key) else {
                throw .unknownKey(path: memberPath, allowed: allowed)
            }
            guard members[member.key] == nil else { throw .duplicateKey(path: memberPath) }
            members[member.key] = member.value
        }
    }

    func path(_ key: String) -> String { JSONPath.key(path, key) }

    /// The value, or nil when the key is absent or null.
    func optional(_ key: String) -> JSONValue? {
        guard let value = members[key] else { return nil }
        if case .null = value { return nil }
        return value
    }

    func has(_ key: String) -> Bool { optional(key) != nil }

    func required(_ key: String) throws(ScenarioError) -> JSONValue {
        guard let value = members[key] else { throw .missingField(path: path(key)) }
        return value
    }
}

// MARK: - Scalars

enum Scalar {
    static func string(_ value: JSONValue, _ path: String) throws(ScenarioError) -> String {
        guard case .string(let s) = value else {
            throw .wrongType(path: path, expected: "string", found: value.typeName)
        }
        return s
    }

    static func bool(_ value: JSONValue, _ path: String) throws(ScenarioError) -> Bool {
        guard case .bool(let b) = value else {
            throw .wrongType(path: path, expected: "boolean", found: value.typeName)
        }
        return b
    }

    static func array(_ value: JSONValue, _ path: String) throws(ScenarioError) -> [JSONValue] {
        guard case .array(let a) = value else {
            throw .wrongType(path: path, expected: "array", found: value.typeName)
        }
        return a
    }

    /// A JSON integer within `range`.
    static func int(_ value: JSONValue, _ path: String, in range: ClosedRange<Int>) throws(ScenarioError) -> Int {
        guard case .number(let text, let isInteger) = value, isInteger else {
            throw .wrongType(path: path, expected: "integer", found: value.typeName)
        }
        guard let n = Int(text), range.contains(n) else {
            throw .invalidValue(path: path, reason: "\(text) is out of range (\(range.lowerBound)...\(range.upperBound))")
        }
        return n
    }

    /// A non-negative integer given as a JSON integer or a string: decimal,
    /// `0x` hex, `_` separators allowed; with `allowSuffix`, a binary
    /// K/M/G/T suffix (optionally followed by `B` or `iB`).
    static func quantity(
        _ value: JSONValue, _ path: String, allowSuffix: Bool, what: String
    ) throws(ScenarioError) -> UInt64 {
        switch value {
        case .number(let text, let isInteger):
            guard isInteger else {
                throw .wrongType(path: path, expected: what, found: "non-integer number \(text)")
            }
            if text.hasPrefix("-") {
                throw .invalidValue(path: path, reason: "\(text) is negative")
            }
            guard let n = UInt64(text) else {
                throw .invalidValue(path: path, reason: "\(text) does not fit in 64 bits")
            }
            return n
        case .string(let text):
            guard let n = parseQuantity(text, allowSuffix: allowSuffix) else {
                let hint = allowSuffix
                    ? "expected a byte count like 4096, \"0x1000\", \"4K\", \"2M\", \"1G\""
                    : "expected an address like \"0x7f0000000000\" or an integer"
                throw .invalidValue(path: path, reason: "cannot read \(quoted(text)): \(hint)")
            }
            return n
        default:
            throw .wrongType(path: path, expected: what, found: value.typeName)
        }
    }

    static func parseQuantity(_ raw: String, allowSuffix: Bool) -> UInt64? {
        var text = Substring(raw.filter { $0 != "_" })
        guard !text.isEmpty, raw.first != "_", raw.last != "_" else { return nil }
        if text.hasPrefix("0x") || text.hasPrefix("0X") {
            let digits = text.dropFirst(2)
            guard !digits.isEmpty, digits.allSatisfy(\.isHexDigit) else { return nil }
            return UInt64(digits, radix: 16)
        }
        var multiplier: UInt64 = 1
        if allowSuffix {
            for unit in ["iB", "B"] where text.hasSuffix(unit) {
                text = text.dropLast(unit.count)
                break
            }
            if let last = text.last {
                switch last {
                case "K", "k": multiplier = 1 << 10
                case "M", "m": multiplier = 1 << 20
                case "G", "g": multiplier = 1 << 30
                case "T", "t": multiplier = 1 << 40
                default: break
                }
                if multiplier != 1 { text = text.dropLast() }
            }
        }
        guard !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }), let n = UInt64(text) else {
            return nil
        }
        let (product, overflow) = n.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }

    /// One name from a closed set.
    static func name<T: RawRepresentable & CaseIterable>(
        _ value: JSONValue, _ path: String, as type: T.Type
    ) throws(ScenarioError) -> T where T.RawValue == String {
        let text = try string(value, path)
        guard let result = T(rawValue: text) else {
            throw .unknownValue(path: path, value: text, allowed: T.allCases.map(\.rawValue))
        }
        return result
    }
}

// MARK: - Ranges

/// Where the end of a decoded range came from, so later errors about the end
/// point at the key the author wrote (`end` or `size`).
struct RangeSource: Sendable {
    var startPath: String
    var endPath: String
}

enum RangeDecoder {
    /// Reads `start` plus exactly one of `end` / `size` from `object`, page
    /// aligned, non-empty, below `limit`.
    static func decode(_ object: ObjectReader, limit: UInt64) throws(ScenarioError) -> (AddressRange, RangeSource) {
        let page = ScenarioDocument.pageSize
        let startPath = object.path("start")
        let start = try Scalar.quantity(
            object.required("start"), startPath, allowSuffix: false, what: "address (hex string or integer)")
        if start % page != 0 { throw .unalignedAddress(path: startPath, address: start, alignment: page) }

        let end: UInt64
        let endPath: String
        switch (object.optional("end"), object.optional("size")) {
        case (.some, .some):
            throw .invalidValue(path: object.path, reason: "give either end or size, not both")
        case (nil, nil):
            throw .missingField(path: object.path("end"))
        case (let endValue?, nil):
            endPath = object.path("end")
            end = try Scalar.quantity(endValue, endPath, allowSuffix: false, what: "address (hex string or integer)")
            if end % page != 0 { throw .unalignedAddress(path: endPath, address: end, alignment: page) }
        case (nil, let sizeValue?):
            endPath = object.path("size")
            let size = try Scalar.quantity(
                sizeValue, endPath, allowSuffix: true, what: "size (integer or string like \"2M\")")
            if size % page != 0 { throw .unalignedAddress(path: endPath, address: size, alignment: page) }
            let (sum, overflow) = start.addingReportingOverflow(size)
            if overflow { throw .beyondAddressSpace(path: endPath, address: UInt64.max, limit: limit) }
            end = sum
        }
        if start >= end { throw .emptyRange(path: endPath, start: start, end: end) }
        if end > limit { throw .beyondAddressSpace(path: endPath, address: end, limit: limit) }
        return (AddressRange(start: start, end: end), RangeSource(startPath: startPath, endPath: endPath))
    }
}

// MARK: - Document

/// The decoded document plus the source positions the validator needs.
struct DecodedScenario {
    var document: ScenarioDocument
    /// Per process, per op: where its range came from (nil for ops without
    /// a range).
    var opSources: [[RangeSource?]]
    /// Per process: whether `vmas` was written (and non-empty).
    var declaresVMAs: [Bool]
}

enum ScenarioDecoder {
    static let documentKeys = ["version", "architecture", "levels", "numaNodes", "memoryBudget", "swapSlots", "vsyscall",
                               "processes"]
    static let processKeys = ["pid", "name", "parent", "vmas", "ops"]
    static let vmaKeys = ["start", "end", "size", "perms", "kind", "file", "name", "hugePageSize", "flags", "policy", "pkey"]
    static let fileKeys = ["path", "dev", "inode", "offset"]
    /// Linux PID_MAX_LIMIT.
    static let maximumPID = 4_194_304
    /// Linux MAX_NUMNODES with NODES_SHIFT = 10.
    static let maximumNUMANodes = 1024

    static func decode(_ root: JSONValue) throws(ScenarioError) -> DecodedScenario {
        let object = try ObjectReader(root, path: "", allowed: documentKeys)

        let version = try Scalar.int(object.required("version"), "version", in: Int.min ... Int.max)
        guard version == ScenarioDocument.currentVersion else {
            throw .invalidValue(
                path: "version",
                reason: "unsupported version \(version) (this reader understands version \(ScenarioDocument.currentVersion))")
        }
        let architecture = try Scalar.name(
            object.required("architecture"), "architecture", as: ScenarioDocument.Architecture.self)

        var levels = 4
        if let value = object.optional("levels") {
            levels = try Scalar.int(value, "levels", in: Int.min ... Int.max)
            guard (2 ... 5).contains(levels) else {
                throw .invalidValue(path: "levels", reason: "levels must be 2, 3, 4 or 5, not \(levels)")
            }
            guard architecture.supportedLevels.contains(levels) else {
                throw .unsupportedOnArchitecture(path: "levels", value: "\(levels) levels", architecture: architecture)
            }
        }
        var numaNodes = 1
        if let value = object.optional("numaNodes") {
            numaNodes = try Scalar.int(value, "numaNodes", in: 1 ... maximumNUMANodes)
        }
        var memoryBudget = ScenarioDocument.defaultMemoryBudget
        if let value = object.optional("memoryBudget") {
            memoryBudget = try Scalar.quantity(
                value, "memoryBudget", allowSuffix: true, what: "size (integer or string like \"512M\")")
        }
        var swapSlots = ScenarioDocument.defaultSwapSlots
        if let value = object.optional("swapSlots") {
            swapSlots = try Scalar.quantity(value, "swapSlots", allowSuffix: false, what: "integer")
        }
        var vsyscall = architecture.defaultVsyscall
        if let value = object.optional("vsyscall") {
            vsyscall = try Scalar.name(value, "vsyscall", as: VsyscallMode.self)
            guard vsyscall.isSupported(on: architecture.model) else {
                throw .unsupportedOnArchitecture(path: "vsyscall", value: "vsyscall \(vsyscall)", architecture: architecture)
            }
        }

        var document = ScenarioDocument(
            version: version, architecture: architecture, levels: levels, numaNodes: numaNodes,
            memoryBudget: memoryBudget, swapSlots: swapSlots, vsyscall: vsyscall, processes: [])
        var opSources: [[RangeSource?]] = []
        var declaresVMAs: [Bool] = []

        let processes = try Scalar.array(object.required("processes"), "processes")
        for (index, value) in processes.enumerated() {
            let path = JSONPath.index("processes", index)
            let (process, sources, hasVMAs) = try decodeProcess(value, path: path, document: document)
            document.processes.append(process)
            opSources.append(sources)
            declaresVMAs.append(hasVMAs)
        }
        return DecodedScenario(document: document, opSources: opSources, declaresVMAs: declaresVMAs)
    }

    // MARK: Process

    static func decodeProcess(
        _ value: JSONValue, path: String, document: ScenarioDocument
    ) throws(ScenarioError) -> (ProcessSpec, [RangeSource?], Bool) {
        let object = try ObjectReader(value, path: path, allowed: processKeys)
        let pid = try Scalar.int(object.required("pid"), object.path("pid"), in: 1 ... maximumPID)
        let name = try Scalar.string(object.required("name"), object.path("name"))
        if name.isEmpty || name.contains(where: { $0.isNewline }) {
            throw .invalidValue(path: object.path("name"), reason: "a process name must be non-empty and on one line")
        }
        var parent: Int?
        if let value = object.optional("parent") {
            parent = try Scalar.int(value, object.path("parent"), in: 1 ... maximumPID)
        }

        var vmas: [VMASpec] = []
        if let value = object.optional("vmas") {
            let list = try Scalar.array(value, object.path("vmas"))
            for (index, element) in list.enumerated() {
                vmas.append(try decodeVMA(element, path: JSONPath.index(object.path("vmas"), index), document: document))
            }
        }

        var ops: [OperationSpec] = []
        var sources: [RangeSource?] = []
        if let value = object.optional("ops") {
            let list = try Scalar.array(value, object.path("ops"))
            for (index, element) in list.enumerated() {
                let (op, source) = try decodeOperation(
                    element, path: JSONPath.index(object.path("ops"), index), document: document)
                ops.append(op)
                sources.append(source)
            }
        }
        return (ProcessSpec(pid: pid, name: name, parent: parent, vmas: vmas, ops: ops), sources, !vmas.isEmpty)
    }

    // MARK: VMA

    static func decodeVMA(_ value: JSONValue, path: String, document: ScenarioDocument) throws(ScenarioError) -> VMASpec {
        let object = try ObjectReader(value, path: path, allowed: vmaKeys)
        let architecture = document.architecture
        let (range, source) = try RangeDecoder.decode(object, limit: document.userAddressLimit)

        let permsPath = object.path("perms")
        let permsText = try Scalar.string(object.required("perms"), permsPath)
        guard let perms = VMASpec.Permissions(permsText) else {
            throw .invalidValue(
                path: permsPath,
                reason: "cannot read perms \(quoted(permsText)): expected 4 characters like \"rw-p\" (r|-, w|-, x|-, p|s)")
        }
        let kind = try Scalar.name(object.required("kind"), object.path("kind"), as: VMASpec.Kind.self)
        if kind == .anon && perms.shared {
            throw .invalidValue(
                path: permsPath,
                reason: "a shared anonymous mapping is shmem in Linux: use kind \"shmem\" for \(permsText)")
        }

        var file: VMASpec.FileMapping?
        if let value = object.optional("file") {
            file = try decodeFile(value, path: object.path("file"))
            if kind == .anon {
                throw .invalidValue(
                    path: object.path("file"), reason: "an anon VMA has no file: use kind \"file\" or \"shmem\"")
            }
        } else if kind == .file {
            throw .missingField(path: object.path("file"))
        }

        var name: String?
        if let value = object.optional("name") {
            let namePath = object.path("name")
            let text = try Scalar.string(value, namePath)
            if text.isEmpty || text.contains(where: { $0.isNewline }) {
                throw .invalidValue(path: namePath, reason: "a VMA name must be non-empty and on one line")
            }
            if text.hasPrefix("[") != text.hasSuffix("]") || text == "[" {
                throw .invalidValue(path: namePath, reason: "a bracketed VMA name must look like [heap] or [anon:name]")
            }
            if text.hasPrefix("[anon:") && kind != .anon {
                throw .invalidValue(path: namePath, reason: "[anon:...] names are for anon VMAs (shmem uses [anon_shmem:...])")
            }
            if text.hasPrefix("[anon_shmem:") && kind != .shmem {
                throw .invalidValue(path: namePath, reason: "[anon_shmem:...] names are for shmem VMAs")
            }
            if file != nil {
                throw .invalidValue(
                    path: namePath, reason: "a VMA shows either its file or a name, not both (remove name or file)")
            }
            name = text
        }

        var hugePageSize: VMASpec.HugePageSize?
        let hugePath = object.path("hugePageSize")
        if let value = object.optional("hugePageSize") {
            guard kind == .hugetlb else {
                throw .invalidValue(path: hugePath, reason: "hugePageSize applies only to kind \"hugetlb\"")
            }
            hugePageSize = try Scalar.name(value, hugePath, as: VMASpec.HugePageSize.self)
        } else if kind == .hugetlb {
            hugePageSize = .size2M
        }
        if let size = hugePageSize {
            guard size.isSupported(on: architecture) else {
                throw .unsupportedOnArchitecture(path: hugePath, value: "\(size.rawValue) huge pages", architecture: architecture)
            }
            if size == .size1G && document.levels < 3 {
                throw .invalidValue(path: hugePath, reason: "1G huge pages need a PUD level; not available with 2 levels")
            }
            if range.start % size.bytes != 0 {
                throw .unalignedAddress(path: source.startPath, address: range.start, alignment: size.bytes)
            }
            if range.end % size.bytes != 0 {
                throw .unalignedAddress(path: source.endPath, address: range.end, alignment: size.bytes)
            }
        }
        if let offset = file?.offset {
            let (_, overflow) = offset.addingReportingOverflow(range.size)
            if overflow {
                throw .invalidValue(path: object.path("file.offset"), reason: "offset plus VMA size overflows 64 bits")
            }
        }

        var flags: Set<VMASpec.Flag> = []
        if let value = object.optional("flags") {
            let flagsPath = object.path("flags")
            for (index, element) in try Scalar.array(value, flagsPath).enumerated() {
                let flagPath = JSONPath.index(flagsPath, index)
                let flag = try Scalar.name(element, flagPath, as: VMASpec.Flag.self)
                guard flags.insert(flag).inserted else {
                    throw .invalidValue(path: flagPath, reason: "flag \(quoted(flag.rawValue)) is listed twice")
                }
            }
            try checkFlags(flags, kind: kind, path: flagsPath)
        }

        var policy = VMASpec.Policy.default
        if let value = object.optional("policy") {
            policy = try decodePolicy(value, path: object.path("policy"), numaNodes: document.numaNodes)
        }

        var pkey = 0
        if let value = object.optional("pkey") {
            pkey = try Scalar.int(value, object.path("pkey"), in: 0 ... architecture.maxProtectionKey)
        }

        return VMASpec(
            start: range.start, end: range.end, perms: perms, kind: kind, file: file, name: name,
            hugePageSize: hugePageSize, flags: flags, policy: policy, pkey: pkey)
    }

    static func checkFlags(_ flags: Set<VMASpec.Flag>, kind: VMASpec.Kind, path: String) throws(ScenarioError) {
        if flags.contains(.hugepage) && flags.contains(.nohugepage) {
            throw .invalidValue(path: path, reason: "hugepage and nohugepage exclude each other")
        }
        if flags.contains(.seqread) && flags.contains(.randread) {
            throw .invalidValue(path: path, reason: "seqread and randread exclude each other")
        }
        if flags.contains(.lockonfault) && !flags.contains(.locked) {
            throw .invalidValue(path: path, reason: "lockonfault is only set together with locked")
        }
        let special = kind == .pfnmap || kind == .mixedmap || flags.contains(.io) || flags.contains(.dontexpand)
        if flags.contains(.locked) && (special || kind == .hugetlb) {
            throw .invalidValue(
                path: path, reason: "the kernel never sets locked (VM_LOCKED) on hugetlb or VM_SPECIAL (pfnmap, mixedmap, io, dontexpand) VMAs")
        }
    }

    static func decodeFile(_ value: JSONValue, path: String) throws(ScenarioError) -> VMASpec.FileMapping {
        let object = try ObjectReader(value, path: path, allowed: fileKeys)
        let filePath = try Scalar.string(object.required("path"), object.path("path"))
        if filePath.isEmpty || filePath.contains(where: { $0.isNewline }) {
            throw .invalidValue(path: object.path("path"), reason: "a file path must be non-empty and on one line")
        }
        var device = VMASpec.DeviceNumber.none
        if let value = object.optional("dev") {
            let text = try Scalar.string(value, object.path("dev"))
            guard let parsed = parseDevice(text) else {
                throw .invalidValue(
                    path: object.path("dev"),
                    reason: "cannot read device \(quoted(text)): expected hex major:minor like \"fd:01\"")
            }
            device = parsed
        }
        var inode: UInt64 = 0
        if let value = object.optional("inode") {
            inode = try Scalar.quantity(value, object.path("inode"), allowSuffix: false, what: "integer")
        }
        var offset: UInt64 = 0
        if let value = object.optional("offset") {
            offset = try Scalar.quantity(
                value, object.path("offset"), allowSuffix: true, what: "byte offset (integer or string)")
            if offset % ScenarioDocument.pageSize != 0 {
                throw .unalignedAddress(path: object.path("offset"), address: offset, alignment: ScenarioDocument.pageSize)
            }
        }
        return VMASpec.FileMapping(path: filePath, device: device, inode: inode, offset: offset)
    }

    /// `fd:01`: hex major (12 bits) and minor (20 bits).
    static func parseDevice(_ text: String) -> VMASpec.DeviceNumber? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2,
              parts.allSatisfy({ !$0.isEmpty && $0.count <= 5 && $0.allSatisfy(\.isHexDigit) }),
              let major = UInt32(parts[0], radix: 16), let minor = UInt32(parts[1], radix: 16),
              major < 1 << 12, minor < 1 << 20
        else { return nil }
        return VMASpec.DeviceNumber(major: major, minor: minor)
    }

    static let policyForms = ["default", "local", "bind:<nodes>", "interleave:<nodes>", "prefer:<node>"]

    static func decodePolicy(_ value: JSONValue, path: String, numaNodes: Int) throws(ScenarioError) -> VMASpec.Policy {
        let text = try Scalar.string(value, path)
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        let mode = String(parts[0])
        let argument = parts.count > 1 ? String(parts[1]) : nil

        func nodes(_ argument: String?) throws(ScenarioError) -> [Int] {
            guard let argument, let list = parseNodeList(argument) else {
                throw .invalidValue(
                    path: path, reason: "cannot read the node list of \(quoted(text)): expected nodes like 0, 0-1 or 0,2-3")
            }
            if let bad = list.first(where: { $0 >= numaNodes }) {
                throw .invalidValue(path: path, reason: "node \(bad) does not exist (numaNodes is \(numaNodes))")
            }
            return list
        }

        switch mode {
        case "default", "local":
            if argument != nil {
                throw .invalidValue(path: path, reason: "policy \(mode) takes no node list")
            }
            return mode == "local" ? .local : .default
        case "bind":
            return .bind(try nodes(argument))
        case "interleave":
            return .interleave(try nodes(argument))
        case "prefer":
            let list = try nodes(argument)
            guard list.count == 1 else {
                throw .invalidValue(path: path, reason: "prefer takes exactly one node")
            }
            return .preferred(list[0])
        default:
            throw .unknownValue(path: path, value: text, allowed: policyForms)
        }
    }

    /// `0`, `0-3`, `0,2-3`: sorted distinct ids, nil when malformed.
    static func parseNodeList(_ text: String) -> [Int]? {
        var nodes = Set<Int>()
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard (1 ... 2).contains(bounds.count),
                  bounds.allSatisfy({ !$0.isEmpty && $0.count <= 4 && $0.allSatisfy { $0.isASCII && $0.isNumber } }),
                  let low = Int(bounds[0]), let high = Int(bounds[bounds.count - 1]), low <= high
            else { return nil }
            for node in low ... high { nodes.insert(node) }
        }
        return nodes.isEmpty ? nil : nodes.sorted()
    }

    // MARK: Operations

    /// Keys each op accepts besides "op" (ranges: start plus end or size).
    static func operationKeys(_ kind: OperationSpec.Kind) -> [String] {
        let range = ["start", "end", "size"]
        switch kind {
        case .fault, .touch: return range + ["write"]
        case .mthp: return range + ["order"]
        case .migrate: return range + ["node"]
        case .devicePrivate: return range + ["writable"]
        case .remapPFN: return range + ["pfn"]
        case .mprotect: return range + ["perms"]
        case .ksm: return range + ["distinct"]
        case .split, .hwpoison: return ["address"]
        case .fork: return ["child"]
        case .clearRefs: return ["kind"]
        case .thp, .hugetlb, .zap, .collapse, .swapout, .swapin, .migrationEntries, .deviceExclusive,
             .uffdWP, .guardInstall, .guardRemove, .mlock, .munlock, .mlock2OnFault, .madvFree, .madvCold, .madvPageout,
             .madvWillNeed, .munmap:
            return range
        }
    }

    static func decodeOperation(
        _ value: JSONValue, path: String, document: ScenarioDocument
    ) throws(ScenarioError) -> (OperationSpec, RangeSource?) {
        guard case .object(let members) = value else {
            throw .wrongType(path: path, expected: "object", found: value.typeName)
        }
        // The op name decides which keys are allowed, so read it first.
        guard let opValue = members.first(where: { $0.key == "op" })?.value else {
            throw .missingField(path: JSONPath.key(path, "op"))
        }
        let kind = try Scalar.name(opValue, JSONPath.key(path, "op"), as: OperationSpec.Kind.self)
        let object = try ObjectReader(value, path: path, allowed: ["op"] + operationKeys(kind))
        let limit = document.userAddressLimit
        let page = ScenarioDocument.pageSize

        var range = AddressRange(start: 0, end: 0)
        var source: RangeSource?
        if operationKeys(kind).contains("start") {
            (range, source) = try RangeDecoder.decode(object, limit: limit)
        }

        func flag(_ key: String) throws(ScenarioError) -> Bool {
            guard let value = object.optional(key) else { return false }
            return try Scalar.bool(value, object.path(key))
        }
        func address(_ key: String) throws(ScenarioError) -> UInt64 {
            let p = object.path(key)
            let a = try Scalar.quantity(object.required(key), p, allowSuffix: false, what: "address (hex string or integer)")
            if a % page != 0 { throw .unalignedAddress(path: p, address: a, alignment: page) }
            if a >= limit { throw .beyondAddressSpace(path: p, address: a, limit: limit) }
            return a
        }

        let op: OperationSpec
        switch kind {
        case .fault: op = .fault(range, write: try flag("write"))
        case .touch: op = .touch(range, write: try flag("write"))
        case .thp: op = .thp(range)
        case .mthp:
            op = .mthp(range, order: try Scalar.int(object.required("order"), object.path("order"), in: 2 ... 8))
        case .hugetlb: op = .hugetlb(range)
        case .zap: op = .zap(range)
        case .split: op = .split(address: try address("address"))
        case .collapse: op = .collapse(range)
        case .swapout: op = .swapout(range)
        case .swapin: op = .swapin(range)
        case .migrate:
            let node = try Scalar.int(object.required("node"), object.path("node"), in: 0 ... Int.max)
            if node >= document.numaNodes {
                throw .invalidValue(path: object.path("node"), reason: "node \(node) does not exist (numaNodes is \(document.numaNodes))")
            }
            op = .migrate(range, node: node)
        case .migrationEntries: op = .migrationEntries(range)
        case .devicePrivate: op = .devicePrivate(range, writable: try flag("writable"))
        case .deviceExclusive: op = .deviceExclusive(range)
        case .hwpoison: op = .hwpoison(address: try address("address"))
        case .uffdWP: op = .uffdWP(range)
        case .guardInstall: op = .guardInstall(range)
        case .guardRemove: op = .guardRemove(range)
        case .remapPFN:
            let pfnPath = object.path("pfn")
            let pfn = try Scalar.quantity(object.required("pfn"), pfnPath, allowSuffix: false, what: "page frame number")
            let frames = document.architecture.physicalFrameLimit
            let (last, overflow) = pfn.addingReportingOverflow(range.pageCount)
            if overflow || last > frames {
                throw .invalidValue(
                    path: pfnPath,
                    reason: "pfn \(hex(pfn)) plus \(range.pageCount) pages is beyond the physical address space (\(hex(frames)) frames)")
            }
            op = .remapPFN(range, pfn: pfn)
        case .fork:
            op = .fork(child: try Scalar.int(object.required("child"), object.path("child"), in: 1 ... maximumPID))
        case .mprotect:
            let permsPath = object.path("perms")
            let text = try Scalar.string(object.required("perms"), permsPath)
            guard let perms = VMASpec.Permissions(text) else {
                throw .invalidValue(
                    path: permsPath,
                    reason: "cannot read perms \(quoted(text)): expected 4 characters like \"r--p\" (r|-, w|-, x|-, p|s)")
            }
            op = .mprotect(range, perms: perms)
        case .mlock: op = .mlock(range)
        case .munlock: op = .munlock(range)
        case .mlock2OnFault: op = .mlock2OnFault(range)
        case .madvFree: op = .madvFree(range)
        case .madvCold: op = .madvCold(range)
        case .madvPageout: op = .madvPageout(range)
        case .madvWillNeed: op = .madvWillNeed(range)
        case .ksm:
            let distinctPath = object.path("distinct")
            let distinct = try Scalar.int(object.required("distinct"), distinctPath, in: 1 ... Int.max)
            if UInt64(distinct) > range.pageCount {
                throw .invalidValue(
                    path: distinctPath,
                    reason: "\(distinct) distinct KSM pages cannot come from a range of \(range.pageCount) pages")
            }
            op = .ksm(range, distinct: distinct)
        case .clearRefs:
            op = .clearRefs(try Scalar.name(object.required("kind"), object.path("kind"), as: OperationSpec.ClearRefsKind.self))
        case .munmap: op = .munmap(range)
        }
        return (op, source)
    }
}
