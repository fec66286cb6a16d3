import Testing
import MemoryModel
import TestKit
import PageWalk
@testable import ProcFS

/// Hand-checked expectations: PSS rounding in PSS_SHIFT fixed point, the
/// maps header, VmFlags, numa_maps escaping, THPeligible and PAGEMAP_SCAN.
@Suite struct AccountingTests {
    static let base: UInt64 = 0x7f00_0000_0000

    /// Parent pid 1 with four anonymous VMAs, and six forked children that
    /// unmap some of them so that, in the parent,
    /// A (3 pages) has mapcount 2, B (3 pages) mapcount 3, C (7 pages)
    /// mapcount 7, and D (3 pages, swapped out afterwards) swap count 3.
    static func sharedSpace() throws -> (AddressSpace, [AddressSpace]) {
        let memory = try PhysicalMemory(budgetBytes: 64 << 20)
        let mm = try AddressSpace(geometry: .x86_64, memory: memory, options: AddressSpaceOptions(softDirty: false))
        let a = base, b = base + 0x10000, c = base + 0x20000, d = base + 0x30000
        for (s, n) in [(a, 3), (b, 3), (c, 7), (d, 3)] {
            try mm.mmap(start: s, end: s + UInt64(n) * page, access: [.read, .write])
            try mm.fault(s, s + UInt64(n) * page, write: true)
        }
        var children: [AddressSpace] = []
        for k in 1...6 {
            let child = try mm.fork(childPID: 1 + k)
            if k >= 2 { try child.zap(a, a + 3 * page) }
            if k >= 3 { try child.zap(b, b + 3 * page); try child.zap(d, d + 3 * page) }
            children.append(child)
        }
        try mm.swapOut(d, d + 3 * page)
        return (mm, children)
    }

    func field(_ text: Substring, _ name: String) -> UInt64? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            return UInt64(line.dropFirst(name.count + 1).split(separator: " ")[0])
        }
        return nil
    }

    @Test(arguments: twinConfigurations.map(\.1))
    func pssRoundsInFixedPoint(_ options: ProcOptions) throws {
        let (mm, children) = try Self.sharedSpace()
        defer { withExtendedLifetime(children) {} }
        let text = try Smaps.text(mm, options: options)
        let blocks = text.split(separator: "\n", omittingEmptySubsequences: false)
            .split { $0.hasPrefix("VmFlags") }.map { $0.joined(separator: "\n")[...] }
        // PAGE_SIZE << 12 = 16777216 per page, divided by the mapcount.
        // A: mapcount 2 -> 8388608 per page; 3 pages = 25165824; >> 12 = 6144 B -> 6 kB.
        #expect(field(blocks[0], "Pss") == 6)
        #expect(field(blocks[0], "Shared_Dirty") == 12)
        // B: mapcount 3 -> 16777216 / 3 = 5592405 (truncated); 3 pages = 16777215;
        //    >> 12 = 4095 B -> 3 kB, not 4: the shares of one page sum to just under it.
        #expect(field(blocks[1], "Pss") == 3)
        #expect(field(blocks[1], "Pss_Dirty") == 3)
        // C: mapcount 7 -> 16777216 / 7 = 2396745; 7 pages = 16777215 -> 4095 B -> 3 kB.
        #expect(field(blocks[2], "Pss") == 3)
        #expect(field(blocks[2], "Rss") == 28)
        // D: swapped out while mapped three times: swap count 3 ->
        //    SwapPss 5592405 per page; 3 pages = 16777215 -> 3 kB; Swap 12 kB.
        #expect(field(blocks[3], "Swap") == 12)
        #expect(field(blocks[3], "SwapPss") == 3)
        #expect(field(blocks[3], "Rss") == 0)
        // smaps_rollup adds the fixed-point values before shifting:
        // 25165824 + 16777215 + 16777215 = 58720254; >> 12 = 14335 B -> 13 kB
        // (the per-VMA lines sum to 6 + 3 + 3 = 12 kB).
        let rollup = try SmapsRollup.text(mm, options: options)[...]
        #expect(field(rollup, "Pss") == 13)
        #expect(field(rollup, "Pss_Anon") == 13)
        #expect(field(rollup, "SwapPss") == 3)
        let numa = try NumaMaps.text(mm, options: options).split(separator: "\n")
        #expect(numa[0].contains(" mapmax=2 "))
        #expect(numa[1].contains(" mapmax=3 "))
        #expect(numa[2].contains(" mapmax=7 "))
        #expect(numa[3] == "7f0000030000 default")
    }

    @Test func headersFlagsAndNumaEscapes() throws {
        let memory = try PhysicalMemory(budgetBytes: 64 << 20)
        let mm = try AddressSpace(geometry: .x86_64, memory: memory, options: AddressSpaceOptions(softDirty: false))
        let lib = memory.file(path: "/opt/my lib=1.so", device: DeviceNumber(major: 0xfd, minor: 1), inode: 1839474)
        try mm.mmap(start: 0x5555_5555_4000, end: 0x5555_5555_8000, access: [.read, .exec], kind: .file(lib, offset: 0x3000))
        try mm.mmap(start: 0x5555_5560_0000, end: 0x5555_5580_0000, access: [.read, .write], name: "[heap]", extraFlags: [.hugePage])
        try mm.mmap(start: 0x7fff_f000_0000, end: 0x7fff_f000_4000, access: [.read, .write])
        let smaps = try Smaps.text(mm).split(separator: "\n")
        let header = "555555554000-555555558000 r-xp 00003000 fd:01 1839474"
        #expect(smaps[0] == header + String(repeating: " ", count: 73 - header.count) + "/opt/my lib=1.so")
        #expect(smaps.contains("VmFlags: rd ex mr mw me "))
        #expect(smaps.contains("VmFlags: rd wr mr mw me ac hg "))
        #expect(smaps.contains("7ffff0000000-7ffff0004000 rw-p 00000000 00:00 0 "))
        #expect(smaps.contains("THPeligible:           1"))   // [heap]: 2M aligned, MADV_HUGEPAGE, madvise mode
        #expect(smaps.contains("Private_Hugetlb:       0 kB"))
        let numa = try NumaMaps.text(mm).split(separator: "\n")
        #expect(numa[0] == "555555554000 default file=/opt/my\\040lib\\0751.so")
        #expect(numa[1] == "555555600000 default heap")
        let rollup = try SmapsRollup.text(mm).split(separator: "\n")
        #expect(rollup[0] == "555555554000-7ffff0004000 ---p 00000000 00:00 0" + String(repeating: " ", count: 26) + "[rollup]")
    }

    @Test func thpEligibility() throws {
        let memory = try PhysicalMemory(budgetBytes: 64 << 20)
        let mm = try AddressSpace(geometry: .x86_64, memory: memory, options: AddressSpaceOptions(softDirty: false))
        let aligned = try mm.mmap(start: 0x4000_0000, end: 0x4040_0000, access: [.read, .write])
        let hinted = try mm.mmap(start: 0x5000_0000, end: 0x5040_0000, access: [.read, .write], extraFlags: [.hugePage])
        let small = try mm.mmap(start: 0x6000_1000, end: 0x6002_1000, access: [.read, .write], extraFlags: [.hugePage])
        let refused = try mm.mmap(start: 0x7000_0000, end: 0x7040_0000, access: [.read, .write], extraFlags: [.noHugePage])
        let shm = try mm.mmap(start: 0x8000_0000, end: 0x8040_0000, access: [.read, .write], shared: true)
        let g = mm.geometry
        var s = THPSettings()   // madvise, 2M inherit
        #expect(!VMAInfo.thpEligible(aligned, s, g))
        #expect(VMAInfo.thpEligible(hinted, s, g))
        #expect(!VMAInfo.thpEligible(small, s, g))       // no 2M block inside 128K
        #expect(!VMAInfo.thpEligible(shm, s, g))         // shmem_enabled never
        s.anonOrders[4] = .always                          // 64K: always
        #expect(VMAInfo.thpEligible(small, s, g))
        #expect(VMAInfo.thpEligible(aligned, s, g))
        #expect(!VMAInfo.thpEligible(refused, s, g))     // MADV_NOHUGEPAGE wins
        s = THPSettings(enabled: .always)
        #expect(VMAInfo.thpEligible(aligned, s, g))
        s = THPSettings(enabled: .never)
        #expect(!VMAInfo.thpEligible(hinted, s, g))
        s = THPSettings(shmemEnabled: .advise)
        #expect(!VMAInfo.thpEligible(shm, s, g))
    }

    @Test func pagemapScanOutputsAndLimits() throws {
        let memory = try PhysicalMemory(budgetBytes: 64 << 20)
        let mm = try AddressSpace(geometry: .x86_64, memory: memory, options: AddressSpaceOptions(softDirty: false))
        let s: UInt64 = 0x4000_0000
        try mm.mmap(start: s, end: s + mb2, access: [.read, .write])
        try mm.fault(s, s + 8 * page, write: true)            // present, written
        try mm.fault(s + 8 * page, s + 12 * page, write: false) // zero page
        try madviseGuardInstall(mm, s + 12 * page, s + 14 * page)
        typealias C = PagemapScan.Category
        for options in twinConfigurations.map(\.1) {
            let all = try PagemapScan.scan(mm, .init(start: s, end: s + mb2, returnMask: .all), options: options)
            #expect(all.regions == [
                .init(start: s, end: s + 8 * page, categories: [.present, .written]),
                .init(start: s + 8 * page, end: s + 12 * page, categories: [.present, .written, .pfnZero]),
                .init(start: s + 12 * page, end: s + 14 * page, categories: [.swapped, .written, .guardRegion]),
                .init(start: s + 14 * page, end: s + mb2, categories: []),
            ])
            #expect(all.value == 4 && all.walkEnd == s + mb2)
            // max_pages cuts inside the first run: walk_end is where it stopped.
            let cut = try PagemapScan.scan(mm, .init(start: s, end: s + mb2, maxPages: 5, categoryMask: [.present],
                                                     returnMask: [.present]), options: options)
            #expect(cut.regions == [.init(start: s, end: s + 5 * page, categories: [.present])])
            #expect(cut.walkEnd == s + 5 * page)
            // Exactly full: walk_end is the next matching page.
            let full = try PagemapScan.scan(mm, .init(start: s, end: s + mb2, maxPages: 8, categoryMask: [.present],
                                                      returnMask: [.present, .pfnZero]), options: options)
            #expect(full.regions == [.init(start: s, end: s + 8 * page, categories: [.present])])
            #expect(full.walkEnd == s + 8 * page)
            // One output slot: the walk stops at the second region.
            let one = try PagemapScan.scan(mm, .init(start: s, end: s + mb2, vecLen: 1, returnMask: .all), options: options)
            #expect(one.regions.count == 1 && one.walkEnd == s + 8 * page && one.value == 1)
            // The written-only fast path reports every PTE of a table that is
            // not uffd-wp protected, none ones included.
            let written = try PagemapScan.scan(mm, .init(start: s, end: s + mb2, categoryMask: [.written],
                                                         returnMask: [.written]), options: options)
            #expect(written.regions == [.init(start: s, end: s + mb2, categories: [.written])])
            #expect(throws: PagemapScan.ScanError.self) {
                try PagemapScan.scan(mm, .init(start: s + 1, end: s + mb2), options: options)
            }
            let perm = try PagemapScan.scan(mm, .init(start: s, end: s + mb2, flags: [.checkWPAsync]), options: options)
            #expect(perm.value == -1)   // -EPERM: no VMA registered for async write-protect
        }
    }
}
