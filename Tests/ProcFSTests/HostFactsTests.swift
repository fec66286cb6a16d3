import Testing
import Foundation
import Glibc
import MemoryModel
import ProcFS
import LiveKernel

/// The host-facts helper on fixed kernel text, so that both branches of
/// every fact are checked whatever machine runs the suite.
@Suite struct HostFactsTests {
    static let entryWithKey = """
        7f0000000000-7f0000001000 rw-p 00000000 00:00 0 
        Size:                  4 kB
        THPeligible:           0
        ProtectionKey:         0
        VmFlags: rd wr mr mw me ac sd 
        """
    static let entryWithoutKey = """
        7f0000000000-7f0000001000 rw-p 00000000 00:00 0 
        Size:                  4 kB
        THPeligible:           0
        VmFlags: rd wr mr mw me ac 
        """

    @Test func protectionKeyLineIsDetected() {
        #expect(HostFacts.printsProtectionKey(smaps: Self.entryWithKey))
        #expect(!HostFacts.printsProtectionKey(smaps: Self.entryWithoutKey))
        #expect(!HostFacts.printsProtectionKey(smaps: ""))
    }

    /// The options a live comparison gets print the line exactly when the
    /// host does, and a producer then prints it.
    @Test(arguments: [true, false])
    func optionsFollowTheHost(pkeys: Bool) throws {
        var facts = HostFacts.current()
        facts.printsProtectionKey = pkeys
        let o = facts.procOptions(ProcOptions(walker: .callback, batching: false))
        #expect(o.protectionKeys == pkeys)
        #expect(o.walker == .callback && !o.batching, "the caller's other options are kept")
        let memory = try PhysicalMemory(budgetBytes: 1 << 24, nodes: 1, swapSlots: 16)
        let mm = try AddressSpace(geometry: .x86_64, memory: memory)
        try mm.mmap(start: 0x7f00_0000_0000, end: 0x7f00_0000_1000, access: [.read, .write], kind: .anonymous)
        let text = try Smaps.text(mm, options: o)
        #expect(HostFacts.printsProtectionKey(smaps: text) == pkeys)
    }

    @Test func softDirtyFromVmFlags() {
        #expect(HostFacts.marksSoftDirty(smaps: Self.entryWithKey))
        #expect(!HostFacts.marksSoftDirty(smaps: Self.entryWithoutKey))
        #expect(!HostFacts.marksSoftDirty(smaps: "VmFlags: rd wr sdx\n"), "a whole mnemonic, not a prefix")
    }

    @Test func vsyscallModeFromMaps() {
        let xonly = "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n"
        let emulate = "ffffffffff600000-ffffffffff601000 r-xp 00000000 00:00 0                  [vsyscall]\n"
        #expect(HostFacts.vsyscallMode(maps: xonly) == .xonly)
        #expect(HostFacts.vsyscallMode(maps: emulate) == .emulate)
        #expect(HostFacts.vsyscallMode(maps: "7ffd0000-7ffd2000 r-xp 00000000 00:00 0  [vdso]\n") == .none)
    }

    @Test func cpuFlagsAndNodeLists() {
        let cpuinfo = "processor\t: 0\nflags\t\t: fpu vme pku ospke la57\n\nprocessor\t: 1\nflags\t\t: fpu\n"
        let flags = HostFacts.cpuinfoFlags(cpuinfo)
        #expect(flags.contains("pku") && flags.contains("la57") && !flags.contains("fp"))
        #expect(HostFacts.cpuinfoFlags("Features\t: fp asimd\n") == ["fp", "asimd"])
        #expect(HostFacts.nodeCount(online: "0") == 1)
        #expect(HostFacts.nodeCount(online: "0-3") == 4)
        #expect(HostFacts.nodeCount(online: "0,2-3\n") == 3)
    }

    /// The facts of the machine running the suite, printed so that a
    /// failing run on another host says what that host was, and checked
    /// against a second source the kernel offers for the same fact.
    @Test func thisHost() throws {
        let facts = HostFacts.current()
        print("HOST \(facts.summary)")
        // x86: arch_pkeys_enabled() is the OSPKE feature cpuinfo lists.
        if facts.architecture == .x86_64 {
            let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
            #expect(facts.printsProtectionKey == HostFacts.cpuinfoFlags(cpuinfo).contains("ospke"))
        }
        // The online node list against the node directories sysfs shows.
        let nodes = ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/devices/system/node")) ?? [])
            .filter { $0.hasPrefix("node") && Int($0.dropFirst(4)) != nil }
        if !nodes.isEmpty { #expect(facts.numaNodes == nodes.count, "\(nodes)") }
    }
}

/// The adaptations the live mirror makes for hosts unlike this one.
@Suite(.serialized) struct HostAdaptationTests {
    /// Several NUMA nodes: the per-node counts collapse to their sum, and the
    /// rest of the line is kept as it was.
    @Test func numaNodeCountsSum() {
        let two = "7f0000000000 default anon=8 dirty=8 N0=3 N1=5 kernelpagesize_kB=4\n"
        let one = "7f0000000000 default anon=8 dirty=8 N0=8 kernelpagesize_kB=4\n"
        #expect(KernelView.summingNodes(two) == "7f0000000000 default anon=8 dirty=8 N*=8 kernelpagesize_kB=4\n")
        #expect(KernelView.summingNodes(two) == KernelView.summingNodes(one))
        #expect(KernelView.summingNodes("7f0000000000 default N0=2 N1=1\n") != KernelView.summingNodes(one))
        #expect(KernelView.summingNodes("7f0000000000 default file=/x\n") == "7f0000000000 default file=/x\n")
    }

    /// The THP baseline is reached and every knob comes back afterwards.
    @Test func thpBaselinePinsAndRestores() throws {
        guard getuid() == 0 else { try Test.cancel("needs root to write the THP knobs") }
        let dir = LiveMappings.thpDirectory
        let paths = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
            .flatMap { ["\(dir)/\($0)/enabled", "\(dir)/\($0)/shmem_enabled"] }
            + ["\(dir)/enabled", "\(dir)/defrag", "\(dir)/shmem_enabled"]
        let before = Dictionary(uniqueKeysWithValues: paths.compactMap { p in (try? LiveMappings.readSetting(path: p)).map { (p, $0) } })
        let live = LiveMappings()
        do { try HostFacts.pinTHPBaseline(live) } catch let e as LiveMappingError {
            guard case .unavailable = e else { throw e }
            try Test.cancel("THP knobs cannot be pinned on this host: \(e)")
        }
        #expect(HostFacts.current().hasTHPBaseline, "\(HostFacts.current().summary)")
        #expect(live.tearDown().isEmpty)
        for (p, v) in before { #expect((try? LiveMappings.readSetting(path: p)) == v, "\(p) not restored") }
    }
}
