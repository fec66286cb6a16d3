#if canImport(Glibc)
import Glibc
#endif
import Foundation
import MemoryModel
import ProcFS

/// What this machine's kernel and CPU do that changes the bytes of
/// `/proc/PID/*`, learned once from the running kernel.
///
/// Every live comparison (tests and the benchmark's kernel row) asks this
/// one type instead of assuming the machine it was written on: machines of
/// the pool differ in CPU features (protection keys, 5-level paging) and in
/// kernel settings (THP modes, vsyscall, soft-dirty, NUMA nodes).
public struct HostFacts: Sendable {
    /// The architecture the kernel runs on, nil when the model has no twin.
    public var architecture: Architecture?
    /// `arch_pkeys_enabled()`: smaps prints `ProtectionKey:` in every entry.
    public var printsProtectionKey: Bool
    /// `CONFIG_MEM_SOFT_DIRTY`: new VMAs carry `sd` in VmFlags.
    public var softDirty: Bool
    /// `transparent_hugepage/use_zero_page`: read faults of THP-enabled
    /// ranges map the huge zero page.
    public var useHugeZeroPage: Bool
    /// The THP knobs that decide `THPeligible:`.
    public var thp: THPSettings
    /// `transparent_hugepage/defrag`, the selected word; nil without THP.
    public var thpDefrag: String?
    /// The sizes (KiB) that have a per-size anonymous `enabled` knob.
    public var mthpSizesKB: [Int]
    /// The NUMA nodes online (`/sys/devices/system/node/online`).
    public var numaNodes: Int
    /// 5-level paging in use (`la57` stays in cpuinfo only when enabled).
    public var fiveLevelPaging: Bool
    /// The kernel's `vsyscall=` mode, as the gate VMA shows it in maps
    /// (none on a kernel without one, and on arm64).
    public var vsyscall: VsyscallMode
    /// `MADV_GUARD_INSTALL` is known to this kernel (Linux 6.13 and later).
    public var guardRegions: Bool
    /// Guard installation marks the VMA `VM_MAYBE_GUARD` (smaps `gu`), as
    /// Linux 6.18 does and earlier guard-region kernels do not.
    public var marksMaybeGuard: Bool

    /// The host as it is now. Cheap enough to call per test; the knobs are
    /// reread so that a test that changed one sees its own setting.
    public static func current() -> HostFacts {
        let smaps = (try? LiveMappings.selfSmaps()) ?? ""
        let cpuFlags = cpuinfoFlags((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "")
        let maps = (try? LiveMappings.selfMaps()) ?? ""
        let sizes = mthpSizes()
        let zeroPage = (try? LiveMappings.readSetting(path: "\(LiveMappings.thpDirectory)/use_zero_page")) == "1"
        let online = (try? LiveMappings.readSetting(path: "/sys/devices/system/node/online")) ?? "0"
        let guards = probeGuardRegions()
        return HostFacts(architecture: hostArchitecture(),
                         printsProtectionKey: printsProtectionKey(smaps: smaps),
                         softDirty: marksSoftDirty(smaps: smaps),
                         useHugeZeroPage: zeroPage,
                         thp: thpSettings(sizesKB: sizes),
                         thpDefrag: try? LiveMappings.readSetting(path: "\(LiveMappings.thpDirectory)/defrag"),
                         mthpSizesKB: sizes,
                         numaNodes: nodeCount(online: online),
                         fiveLevelPaging: cpuFlags.contains("la57"),
                         vsyscall: vsyscallMode(maps: maps),
                         guardRegions: guards.installs, marksMaybeGuard: guards.marks)
    }

    /// `options` with the host's protection-key and THP behaviour, so that a
    /// producer prints what this kernel prints.
    public func procOptions(_ options: ProcOptions = ProcOptions()) -> ProcOptions {
        var o = options
        o.protectionKeys = printsProtectionKey
        o.thp = thp
        return o
    }

    /// The model geometry of this host's page tables, nil when the model has
    /// none (then a mirror test skips, saying why).
    public var geometry: Geometry? {
        switch architecture {
        case .x86_64: return fiveLevelPaging ? .x86_64FiveLevel : .x86_64
        case .arm64: return .arm64
        case nil: return nil
        }
    }

    /// One line naming every fact, for test output and benchmark notes.
    public var summary: String {
        "arch \(architecture.map(\.rawValue) ?? "unknown"), pkeys \(printsProtectionKey ? "yes" : "no"), "
            + "soft-dirty \(softDirty ? "yes" : "no"), THP \(thp.enabled.rawValue)/defrag \(thpDefrag ?? "-"), "
            + "mTHP sizes \(mthpSizesKB.map { "\($0)K" }.joined(separator: ",")), huge zero page \(useHugeZeroPage ? "on" : "off"), "
            + "NUMA nodes \(numaNodes), \(fiveLevelPaging ? "5" : "4")-level paging, vsyscall \(vsyscall.rawValue), "
            + "guard regions \(guardRegions ? (marksMaybeGuard ? "yes (gu)" : "yes (no gu)") : "no")"
    }
}

// MARK: A known THP baseline

extension HostFacts {
    /// The THP knobs live mirror tests assume: the kernel's defaults
    /// (`enabled` and `defrag` madvise, 2M `inherit`, every other size and
    /// all shmem `never`), so that the kernel backs a range with the folio
    /// sizes the test asks for and no other.
    public var hasTHPBaseline: Bool {
        thp.enabled == .madvise && thpDefrag == "madvise" && thp.shmemEnabled == .never
            && thp.anonOrders.allSatisfy { order, mode in order == 9 ? mode == .inherit : mode == .never }
    }

    /// Pins the baseline through `live` when root (restored at its
    /// tear-down); nil when the host is at the baseline afterwards, or why
    /// not: the knobs cannot be set here, or differ and changing them needs
    /// root. A live test that assumes the baseline cancels with that reason.
    public static func pinTHPBaselineIfPossible(_ live: LiveMappings) throws -> String? {
        guard getuid() == 0 else {
            return current().hasTHPBaseline ? nil
                : "THP knobs differ from the baseline and changing them needs root: \(current().summary)"
        }
        do { try pinTHPBaseline(live) } catch let e as LiveMappingError {
            guard case .unavailable = e else { throw e }
            return "THP knobs cannot be pinned to the baseline on this host: \(e)"
        }
        return nil
    }

    /// Sets the baseline through `live`, which restores every knob it
    /// changed at tear-down.
    public static func pinTHPBaseline(_ live: LiveMappings) throws {
        let dir = LiveMappings.thpDirectory
        try live.setSetting(path: dir + "/enabled", value: "madvise")
        try live.setSetting(path: dir + "/defrag", value: "madvise")
        try live.setSetting(path: dir + "/shmem_enabled", value: "never")
        for kb in mthpSizes() {
            try live.setMTHP(sizeKB: kb, kb == LiveMappings.pmdSize >> 10 ? "inherit" : "never")
        }
        let pmdKB = LiveMappings.pmdSize >> 10
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        for name in names where name.hasPrefix("hugepages-") {
            let path = "\(dir)/\(name)/shmem_enabled"
            guard FileManager.default.fileExists(atPath: path) else { continue }
            try live.setSetting(path: path, value: name == "hugepages-\(pmdKB)kB" ? "inherit" : "never")
        }
    }
}

// MARK: Reading the facts from kernel text

extension HostFacts {
    /// Whether smaps text has a `ProtectionKey:` line (the kernel prints it
    /// in every entry or in none).
    public static func printsProtectionKey(smaps: String) -> Bool {
        smaps.split(separator: "\n").contains { $0.hasPrefix("ProtectionKey:") }
    }

    /// Whether any smaps entry carries the `sd` VmFlags mnemonic, which only a
    /// kernel built with soft-dirty tracking prints (every new VMA has it).
    public static func marksSoftDirty(smaps: String) -> Bool {
        smaps.split(separator: "\n").contains { line in
            line.hasPrefix("VmFlags:") && line.split(separator: " ").dropFirst().contains("sd")
        }
    }

    /// The gate VMA's mode from maps text: its permissions tell xonly from
    /// emulate; no `[vsyscall]` line means none.
    public static func vsyscallMode(maps: String) -> VsyscallMode {
        guard let line = maps.split(separator: "\n").first(where: { $0.hasSuffix("[vsyscall]") }) else { return .none }
        let perms = line.split(separator: " ").dropFirst().first ?? ""
        return VsyscallMode(gatePermissions: perms) ?? .xonly    // the kernel prints no other permissions
    }

    /// The `flags` words of the first CPU in cpuinfo text.
    public static func cpuinfoFlags(_ cpuinfo: String) -> Set<String> {
        guard let line = cpuinfo.split(separator: "\n").first(where: {
            $0.hasPrefix("flags") || $0.hasPrefix("Features")
        }), let colon = line.firstIndex(of: ":") else { return [] }
        return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
    }

    /// The number of nodes in a sysfs node list (`0`, `0-3`, `0,2-3`).
    public static func nodeCount(online: String) -> Int {
        var n = 0
        for part in online.split(separator: ",") {
            let ends = part.split(separator: "-").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            if ends.count == 2, ends[1] >= ends[0] { n += ends[1] - ends[0] + 1 } else if ends.count == 1 { n += 1 }
        }
        return max(n, 1)
    }

    /// Installs a guard marker on a scratch page (EINVAL: the kernel
    /// predates guard regions), then reads the page's VmFlags for `gu`.
    static func probeGuardRegions() -> (installs: Bool, marks: Bool) {
        let size = LiveMappings.pageSize
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              p != MAP_FAILED else { return (false, false) }
        defer { munmap(p, size) }
        guard Glibc.madvise(p, size, LiveMappings.Advice.guardInstall.rawValue) == 0 else { return (false, false) }
        let address = UInt64(UInt(bitPattern: p))
        var inside = false
        for line in ((try? LiveMappings.selfSmaps()) ?? "").split(separator: "\n") {
            if let dash = line.firstIndex(of: "-"), let space = line.firstIndex(of: " "), dash < space,
               let lo = UInt64(line[..<dash], radix: 16), let hi = UInt64(line[line.index(after: dash)..<space], radix: 16) {
                inside = lo <= address && address < hi
            } else if inside, line.hasPrefix("VmFlags:") {
                return (true, line.split(separator: " ").contains("gu"))
            }
        }
        return (true, false)
    }

    static func hostArchitecture() -> Architecture? {
        var u = utsname()
        guard uname(&u) == 0 else { return nil }
        let machine = withUnsafeBytes(of: u.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        switch machine {
        case "x86_64": return .x86_64
        case "aarch64", "arm64": return .arm64
        default: return nil
        }
    }

    /// The per-size directories with an anonymous `enabled` knob, in KiB.
    static func mthpSizes() -> [Int] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: LiveMappings.thpDirectory)) ?? []
        return names.compactMap { name -> Int? in
            guard name.hasPrefix("hugepages-"), name.hasSuffix("kB"),
                  let kb = Int(name.dropFirst("hugepages-".count).dropLast(2)),
                  FileManager.default.fileExists(atPath: LiveMappings.mthpEnabledPath(sizeKB: kb)) else { return nil }
            return kb
        }.sorted()
    }

    /// The THP knobs as they are now, every existing size included.
    static func thpSettings(sizesKB: [Int]) -> THPSettings {
        var s = THPSettings()
        if let v = try? LiveMappings.readSetting(path: "\(LiveMappings.thpDirectory)/enabled"), let m = THPMode(rawValue: v) {
            s.enabled = m
        } else {
            s.enabled = .never
        }
        s.readOnlyFileTHP = readOnlyFileTHP
        s.anonOrders = [:]
        let pageKB = LiveMappings.pageSize >> 10
        for kb in sizesKB where kb > pageKB && kb % pageKB == 0 {
            let order = (kb / pageKB).trailingZeroBitCount
            if let v = try? LiveMappings.readSetting(path: LiveMappings.mthpEnabledPath(sizeKB: kb)),
               let m = THPOrderMode(rawValue: v) { s.anonOrders[order] = m }
        }
        if let v = try? LiveMappings.readSetting(path: "\(LiveMappings.thpDirectory)/shmem_enabled"),
           let m = ShmemHugeMode(rawValue: v) { s.shmemEnabled = m }
        return s
    }

    /// `CONFIG_READ_ONLY_THP_FOR_FS` of the running kernel, read once (zcat
    /// is a process that maps libc: reading it during a capture would
    /// change the counts being captured).
    public static let readOnlyFileTHP = kernelConfig("CONFIG_READ_ONLY_THP_FOR_FS") == "y"

    /// A `CONFIG_X` value from /proc/config.gz, nil when the kernel does not
    /// show its configuration.
    public static func kernelConfig(_ key: String) -> String? {
        guard access("/proc/config.gz", R_OK) == 0, let zcat = LiveMappings.findTool("zcat") else { return nil }
        let (ok, out) = LiveMappings.run(zcat, ["/proc/config.gz"])
        guard ok else { return nil }
        for line in out.split(separator: "\n") where line.hasPrefix(key + "=") {
            return String(line.dropFirst(key.count + 1))
        }
        return nil
    }

    /// The absolute path of `tool` on PATH (or the usual sbin folders), nil
    /// when it is not installed.
    public static func tool(_ name: String) -> String? {
        LiveMappings.findTool(name)
    }
}
