import Foundation
import Testing
import KernelSnapshot
import MemoryModel
import PageWalk
import ProcFS
import Scenario

/// Every command on the embedded default scenario, its output checked
/// against the same producers run in-process.
@Suite("ptwalk on the default scenario", .enabled(if: Ptwalk.available, "ptwalk executable not found next to the test bundle"))
struct DefaultScenarioTests {
    static let built = try! ScenarioBuilder.buildDefault()
    static func mm(_ pid: Int32 = 1000) -> AddressSpace { built.addressSpace(pid: pid)! }

    @Test(arguments: [1000, 1001])
    func procTextEqualsTheProducers(pid: Int) throws {
        let mm = Self.mm(Int32(pid))
        let expected: [(String, String)] = [
            ("smaps", try Smaps.text(mm)),
            ("smaps_rollup", try SmapsRollup.text(mm)),
            ("numa_maps", try NumaMaps.text(mm)),
        ]
        for (command, text) in expected {
            let r = try Ptwalk.run([command, "--pid", String(pid)])
            #expect(r.status == 0, "\(r.command): \(r.stderr)")
            #expect(r.stderr.isEmpty)
            #expect(Ptwalk.maskAnonInodes(r.text) == Ptwalk.maskAnonInodes(text), "\(r.command) differs from \(command) in-process")
        }
    }

    @Test func defaultPidIsTheFirstProcessAndWalkerOptionsDoNotChangeOutput() throws {
        let plain = try Ptwalk.run(["smaps"])
        let explicit = try Ptwalk.run(["--pid", "1000", "smaps"])         // source option before the command
        let callback = try Ptwalk.run(["smaps", "--walker", "callback"])
        let unbatched = try Ptwalk.run(["smaps", "--no-batch"])
        #expect(plain.status == 0 && !plain.stdout.isEmpty)
        #expect(plain.stdout == explicit.stdout)
        #expect(plain.stdout == callback.stdout)
        #expect(plain.stdout == unbatched.stdout)
        let pkeys = try Ptwalk.run(["smaps", "--pkeys"])
        // One per VMA and one for the gate VMA, which smaps prints last.
        #expect(pkeys.lines.filter { $0.hasPrefix("ProtectionKey:") }.count == Self.mm().vmas.count + 1)
    }

    /// The [vsyscall] block as Linux 6.18 prints it under vsyscall=xonly
    /// (x86-64's default), with ProtectionKey (a host with pkeys): copied
    /// from the kernel's /proc/self/smaps.
    static let kernelGateBlock = [
        "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n",
        "Size:                  4 kB\n",
        "KernelPageSize:        4 kB\n",
        "MMUPageSize:           4 kB\n",
        "Rss:                   0 kB\n",
        "Pss:                   0 kB\n",
        "Pss_Dirty:             0 kB\n",
        "Shared_Clean:          0 kB\n",
        "Shared_Dirty:          0 kB\n",
        "Private_Clean:         0 kB\n",
        "Private_Dirty:         0 kB\n",
        "Referenced:            0 kB\n",
        "Anonymous:             0 kB\n",
        "KSM:                   0 kB\n",
        "LazyFree:              0 kB\n",
        "AnonHugePages:         0 kB\n",
        "ShmemPmdMapped:        0 kB\n",
        "FilePmdMapped:         0 kB\n",
        "Shared_Hugetlb:        0 kB\n",
        "Private_Hugetlb:       0 kB\n",
        "Swap:                  0 kB\n",
        "SwapPss:               0 kB\n",
        "Locked:                0 kB\n",
        "THPeligible:           0\n",
        "ProtectionKey:         0\n",
        "VmFlags: ex \n",
    ].joined()

    /// The default scenario is x86_64 without a "vsyscall" key: xonly, so
    /// every process ends smaps and maps with the gate VMA, which
    /// numa_maps leaves out and smaps_rollup neither counts nor ends at:
    /// its range is the first declared VMA's start to the stack's end.
    @Test(arguments: [1000, 1001])
    func gateVMAWhereTheKernelPrintsIt(pid: Int) throws {
        let smaps = try Ptwalk.run(["smaps", "--pkeys", "--pid", String(pid)])
        #expect(smaps.status == 0, "\(smaps.stderr)")
        #expect(smaps.text.hasSuffix(Self.kernelGateBlock))
        #expect(smaps.text.components(separatedBy: "[vsyscall]").count == 2)
        let plain = try Ptwalk.run(["smaps", "--pid", String(pid)])
        #expect(plain.text.hasSuffix(Self.kernelGateBlock.replacingOccurrences(of: "ProtectionKey:         0\n", with: "")))

        let rollup = try Ptwalk.run(["smaps_rollup", "--pid", String(pid)])
        #expect(rollup.lines.first == "555555554000-7ffffffff000 ---p 00000000 00:00 0                          [rollup]")
        // Every counter is the sum over the mm's VMAs (the gate VMA's are zero).
        func kB(_ line: some StringProtocol) -> Int { Int(line.split(separator: " ")[1])! }
        let rssSum = plain.text.split(separator: "\n").filter { $0.hasPrefix("Rss:") }.reduce(0) { $0 + kB($1) }
        #expect(rollup.lines.first { $0.hasPrefix("Rss:") }.map(kB) == rssSum)

        let numa = try Ptwalk.run(["numa_maps", "--pid", String(pid)])
        #expect(numa.lines.count == Self.mm(Int32(pid)).vmas.count)
        #expect(!numa.text.contains("ffffffffff600000"))
    }

    @Test func pagemapIsEveryVMAInMapsOrder() throws {
        let mm = Self.mm()
        var words: [UInt64] = []
        for vma in mm.vmas { words += try Pagemap.words(mm, vma.start..<vma.end, privileged: true) }
        // Then the gate VMA's page: beyond TASK_SIZE, which the kernel's
        // pagemap never reaches (a read there ends the file), written as zero.
        #expect(try Pagemap.words(mm, 0xffff_ffff_ff60_0000..<0xffff_ffff_ff60_1000, privileged: true).isEmpty)
        words.append(0)
        let r = try Ptwalk.run(["pagemap"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.count == (mm.vmas.reduce(0) { $0 + Int($1.size >> 12) } + 1) * 8)
        #expect(r.stdout == Ptwalk.bytes(words))

        // Unprivileged: no PFNs, no swap entries, flags kept.
        var hidden: [UInt64] = []
        for vma in mm.vmas { hidden += try Pagemap.words(mm, vma.start..<vma.end, privileged: false) }
        hidden.append(0)
        let u = try Ptwalk.run(["pagemap", "--unprivileged"])
        #expect(u.stdout == Ptwalk.bytes(hidden))
        #expect(hidden.contains { $0 >> 63 == 1 } && !hidden.contains { $0 >> 63 == 1 && $0 & PagemapBits.pfnMask != 0 })
    }

    @Test func pagemapHexDecodesEachPage() throws {
        let r = try Ptwalk.run(["pagemap", "--hex", "--range", "0x7ffff5c3e000-0x7ffff5c42000"])
        #expect(r.status == 0, "\(r.stderr)")
        let words = try Pagemap.words(Self.mm(), 0x7ffff5c3e000..<0x7ffff5c42000, privileged: true)
        #expect(r.lines.count == 4)
        for (line, (i, word)) in zip(r.lines, words.enumerated()) {
            let f = line.split(separator: " ")
            #expect(f[0] == "0x" + String(repeating: "0", count: 4) + String(0x7ffff5c3e000 + UInt64(i) * 4096, radix: 16))
            #expect(UInt64(f[1].dropFirst(2), radix: 16) == word)
        }
        // Two present anon pages, then two swapped ones (swapout of 0x7ffff5c40000).
        #expect(r.lines[0].contains("present pfn=0x"))
        #expect(r.lines[2].contains("swap type=0 offset=0x"))
        // The whole default process: one line per page of every VMA.
        let all = try Ptwalk.run(["pagemap", "--hex"])
        #expect(all.lines.count == Self.mm().vmas.reduce(0) { $0 + Int($1.size >> 12) } + 1)
        #expect(all.lines.last == "0xffffffffff600000 0x0000000000000000 none")
        #expect(all.lines.contains { $0.hasSuffix(" guard") || $0.contains(" guard ") })
    }

    func walkLines(_ mm: AddressSpace, _ range: Range<UInt64>, _ options: RangeWalkOptions) throws -> [String] {
        try mm.withMmapReadLock { lock in try mm.walk(range, lock: lock, options: options).map { $0.description } }
    }

    @Test func walkPrintsTheRangeWalkersEntries() throws {
        let mm = Self.mm()
        let limit = mm.geometry.userAddressLimit
        let r = try Ptwalk.run(["walk"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.lines.map(String.init) == (try walkLines(mm, 0..<limit, RangeWalkOptions())))

        let unbatched = try Ptwalk.run(["walk", "--no-batch"])
        #expect(unbatched.lines.map(String.init) == (try walkLines(mm, 0..<limit, RangeWalkOptions(batching: false))))
        #expect(unbatched.lines.count > r.lines.count)
        #expect(unbatched.lines.allSatisfy { $0.contains(" x1 ") })

        let heap: Range<UInt64> = 0x555555b3e000..<0x555556000000
        let holes = try Ptwalk.run(["walk", "--holes", "--range", "0x555555af0000-0x555556000000"])
        #expect(holes.lines.map(String.init) == (try walkLines(mm, 0x555555af0000..<0x555556000000, RangeWalkOptions(reportHoles: true))))
        #expect(holes.lines.contains { $0.contains("hole depth") })
        #expect(holes.lines.contains { $0.contains(" pmd x1 folio") })          // the heap's PMD THP
        #expect(holes.lines.allSatisfy { line in
            let start = UInt64(line.prefix { $0 != "-" }.dropFirst(2), radix: 16)!
            return start >= 0x555555af0000 && start < heap.upperBound
        })

        let pfn = try Ptwalk.run(["walk", "--range", "0x7ffff7fc0000-0x7ffff7fc4000", "--pfnmap", "walk"])
        #expect(pfn.lines.count == 4 && pfn.lines.allSatisfy { $0.contains(" pfn 0x1c3a") })
        let skipped = try Ptwalk.run(["walk", "--range", "0x7ffff7fc0000-0x7ffff7fc4000"])
        #expect(skipped.status == 0 && skipped.stdout.isEmpty)
    }

    @Test(arguments: [["--arch", "x86_64"], ["--arch", "x86_64", "--levels", "5"], ["--arch", "arm64"],
                      ["--arch", "x86_64", "--kasan", "off"]])
    func ptdumpEqualsTheProducer(_ args: [String]) throws {
        let arm = args.contains("arm64")
        let layout = arm ? KernelLayout.arm64
            : try KernelLayout.x86_64(levels: args.contains("5") ? 5 : 4, kasan: !args.contains("off"))
        let kernel = try layout.build(on: PhysicalMemory(budgetBytes: 64 << 20))
        let expected = try PTDump.text(kernel: kernel)
        let r = try Ptwalk.run(["ptdump"] + args)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.text == expected)
        #expect(r.text.hasPrefix(arm ? "---[ Linear Mapping start ]---" : "---[ User Space ]---"))
        let callback = try Ptwalk.run(["ptdump", "--walker", "callback"] + args)
        #expect(callback.stdout == r.stdout)
    }

    @Test func ptdumpCheckWX() throws {
        let x86 = try Ptwalk.run(["ptdump", "--check-wx"])
        #expect(x86.status == 0)
        #expect(x86.text == "x86/mm: Checked W+X mappings: passed, no W+X pages found.\n")
        let arm = try Ptwalk.run(["ptdump", "--check-wx", "--arch", "arm64"])
        #expect(arm.text == "Checked W+X mappings: passed, no W+X pages found\n")
        let plain = try Ptwalk.run(["ptdump"])
        #expect(plain.lines.first == "---[ User Space ]---")
    }

    @Test func scenarioPrintDefaultRoundTrips() throws {
        let r = try Ptwalk.run(["scenario", "--print-default"])
        #expect(r.status == 0)
        #expect(r.text == DefaultScenario.json + "\n")
        let dir = Ptwalk.tempDirectory("default")
        defer { Ptwalk.remove(dir) }
        try Data(r.stdout).write(to: URL(fileURLWithPath: dir + "/default.json"))
        let fromFile = try Ptwalk.run(["--scenario", dir + "/default.json", "smaps", "--pid", "1001"])
        let embedded = try Ptwalk.run(["smaps", "--pid", "1001"])
        #expect(fromFile.status == 0 && fromFile.stdout == embedded.stdout)
        let check = try Ptwalk.run(["scenario", "--check", dir + "/default.json"])
        #expect(check.status == 0)
        #expect(check.lines.count == 3 && check.lines[1].hasPrefix("  pid 1000 python3: 18 VMAs"))
    }
}
