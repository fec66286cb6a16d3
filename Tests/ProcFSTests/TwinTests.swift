import Testing
import MemoryModel
import TestKit
import PageWalk
import Scenario
@testable import ProcFS

/// Twin identity: the range walker (batched and not) and the callback walker
/// print the same bytes, on random seeded scenarios with every entry kind
/// and on the default scenario.
@Suite struct TwinTests {
    static let base: UInt64 = 1 << 30
    static let window: UInt64 = 96 << 20

    /// Builds a random address space (plus a forked child) in a 96M window:
    /// anonymous (some MADV_HUGEPAGE, locked, mergeable, uffd-wp,
    /// interleaved), file private/shared, shmem, hugetlb, PFN maps, and
    /// operations producing every entry kind: zero pages, PMD THPs, mTHPs,
    /// swap, migration, device, hwpoison, guard and uffd-wp markers, KSM,
    /// lazyfree, mlock, COW sharing.
    static func scenario(_ arch: Architecture, seed: UInt64) throws -> [AddressSpace] {
        var rng = SeededRandom(seed: seed &* 0x9E37 &+ (arch == .arm64 ? 7 : 0))
        let g: Geometry = arch == .arm64 ? .arm64 : .x86_64
        let memory = try PhysicalMemory(budgetBytes: 1 << 30, nodes: 2, swapSlots: 1 << 16)
        let softDirty = arch == .x86_64 && Bool.random(using: &rng)
        let mm = try AddressSpace(geometry: g, memory: memory, options: AddressSpaceOptions(softDirty: softDirty, pid: 100))
        let file = memory.file(path: "/usr/lib/libtest so.1", device: DeviceNumber(major: 0xfd, minor: 1), inode: 4242)
        let data = memory.file(path: "/var/data/table.db", device: DeviceNumber(major: 8, minor: 3), inode: 77)
        let shm = memory.file(path: "/dev/shm/seg", device: DeviceNumber(major: 0, minor: 0x1a), inode: 9, isShmem: true)
        var at = base
        var fileOffset: UInt64 = 0
        let end = base + window
        while at < end {
            at += UInt64.random(in: 0...2, using: &rng) * mb2 + UInt64.random(in: 0...3, using: &rng) * page
            var size = UInt64.random(in: 1...4, using: &rng) * mb2 + UInt64.random(in: 0...40, using: &rng) * page
            let rw: VMFlags = [.read, .write]
            switch Int.random(in: 0..<12, using: &rng) {
            case 0, 1, 2:
                var extra: VMFlags = []
                if Bool.random(using: &rng) { extra.insert(.hugePage) }
                if Int.random(in: 0..<4, using: &rng) == 0 { extra.insert(.mergeable) }
                if Int.random(in: 0..<4, using: &rng) == 0 { extra.insert(.uffdWP) }
                if Int.random(in: 0..<6, using: &rng) == 0 { extra.insert(.noHugePage) }
                let policy: MemoryPolicy = Int.random(in: 0..<4, using: &rng) == 0 ? .interleave([0, 1]) : .default
                let name: String? = [nil, nil, "[heap]", "[anon:arena]"].randomElement(using: &rng)!
                try mm.mmap(start: at, end: min(at + size, end), access: rw, name: name, extraFlags: extra, policy: policy)
            case 3:
                try mm.mmap(start: at, end: min(at + size, end), access: [.read, .exec], kind: .file(file, offset: fileOffset))
                fileOffset += size
            case 4:
                try mm.mmap(start: at, end: min(at + size, end), access: rw, kind: .file(data, offset: 0))
            case 5:
                try mm.mmap(start: at, end: min(at + size, end), access: rw, shared: true, kind: .file(data, offset: page * 16))
            case 6:
                try mm.mmap(start: at, end: min(at + size, end), access: rw, shared: true, kind: .shmem(Bool.random(using: &rng) ? shm : nil, offset: 0))
            case 7:
                let hs: UInt64 = arch == .arm64 && Bool.random(using: &rng) ? 64 << 10 : mb2
                at = (at + hs - 1) & ~(hs - 1)
                size = (size + hs - 1) & ~(hs - 1)
                if at + size > end { at = end; continue }
                try mm.mmap(start: at, end: at + size, access: rw, shared: Bool.random(using: &rng),
                            kind: .hugetlb(pageSize: hs, file: nil))
            case 8:
                size = min(size, 64 * page)
                try mm.mmap(start: at, end: min(at + size, end), access: [.read], kind: .pfnMap(firstPFN: 0x1c000), name: "[vvar]")
            case 9:
                try mm.mmap(start: at, end: min(at + size, end), access: rw, name: "[stack]", extraFlags: [.locked])
            default:
                try mm.mmap(start: at, end: min(at + size, end), access: rw, name: "[anon:thp]", extraFlags: [.hugePage])
            }
            at = min(at + size, end)
        }
        func randomRange(_ vma: VMA, maxPages: UInt64 = 700) -> (UInt64, UInt64) {
            let s = vma.start + UInt64.random(in: 0..<(vma.size / page), using: &rng) * page
            return (s, min(vma.end, s + UInt64.random(in: 1...maxPages, using: &rng) * page))
        }
        for vma in mm.vmas {
            if vma.isPFNMap { try? mm.remapPFN(vma.start, vma.end); continue }
            if vma.isHugetlb {
                let hs = vma.hugePageSize
                let n = vma.size / hs
                let first = UInt64.random(in: 0..<n, using: &rng)
                try? mm.populateHugetlb(vma.start + first * hs, vma.start + min(n, first + 2) * hs)
                continue
            }
            for _ in 0..<Int.random(in: 1...5, using: &rng) {
                let (s, e) = randomRange(vma)
                switch Int.random(in: 0..<14, using: &rng) {
                case 0: try? mm.fault(s, e, write: false)
                case 1, 2: try? mm.fault(s, e, write: true)
                case 3: try? mm.populateTHP(vma.start, vma.end, write: Bool.random(using: &rng))
                case 4: try? mm.populateLargeFolios(s, e, order: [2, 4, 6].randomElement(using: &rng)!)
                case 5: try? mm.fault(s, e, write: true); try? mm.swapOut(s, e)
                case 6: try? mm.fault(s, e, write: true); try? mm.madviseFree(s, e)
                case 7: try? madviseGuardInstall(mm, s, min(e, s + 8 * page))
                case 8: try? mm.fault(s, e, write: true); try? mm.ksmMerge(s, e, distinct: 3)
                case 9: try? mm.fault(s, e, write: true); try? mm.startMigration(s, min(e, s + 16 * page))
                case 10: try? mm.fault(s, e, write: true); try? mm.makeDevicePrivate(s, min(e, s + 4 * page), writable: Bool.random(using: &rng))
                case 11: try? mm.fault(s, e, write: true); try? mm.poison(s)
                case 12: try? mm.fault(s, e, write: false); try? mm.userfaultWriteProtect(s, e)
                default: try? mm.populateTHP(vma.start, vma.end); try? mm.splitHugePMD(containing: (vma.start + mb2 - 1) & ~(mb2 - 1))
                }
            }
            if vma.flags.contains(.locked) { try? mm.mlock(vma.start, vma.end) }
            if Int.random(in: 0..<5, using: &rng) == 0 { let (s, e) = randomRange(vma, maxPages: 200); try? mm.zap(s, e) }
        }
        if softDirty && Bool.random(using: &rng) { try? mm.clearRefs(.softDirty) }
        if Bool.random(using: &rng) { try? mm.clearRefs(.all) }
        let child = try mm.fork(childPID: 101)
        // The child breaks COW on some pages; the parent keeps others shared.
        for vma in child.vmas where vma.isAnonymous && vma.flags.contains(.write) {
            if Bool.random(using: &rng) {
                let s = vma.start + UInt64.random(in: 0..<(vma.size / page), using: &rng) * page
                try? child.fault(s, min(vma.end, s + 32 * page), write: true)
            }
        }
        var spaces = [mm, child]
        if Bool.random(using: &rng) {
            let grandchild = try child.fork(childPID: 102)
            spaces.append(grandchild)
        }
        return spaces
    }

    static let seeds: [UInt64] = [1, 2, 3, 4, 5, 6]

    @Test(arguments: [Architecture.x86_64, .arm64], seeds)
    func randomScenariosAreTwinIdentical(_ arch: Architecture, _ seed: UInt64) throws {
        let spaces = try Self.scenario(arch, seed: seed)
        let window = Self.base..<(Self.base + Self.window)
        for mm in spaces {
            var outputs: [(String, ProducerOutput)] = []
            for (name, options) in twinConfigurations {
                outputs.append((name, try ProducerOutput.capture(mm, options, window: window, scans: scanQueries(window))))
            }
            for (name, out) in outputs.dropFirst() {
                let diff = outputs[0].1.firstDifference(out)
                #expect(diff == nil, "\(arch) seed \(seed) pid \(mm.options.pid): range batched vs \(name): \(diff ?? "")")
            }
            #expect(!outputs[0].1.smaps.isEmpty)
        }
    }

    @Test func defaultScenarioIsTwinIdentical() throws {
        let built = try ScenarioBuilder.buildDefault()
        for pid in [1000, 1001] {
            let mm = try #require(built.addressSpace(pid: Int32(pid)))
            let first = mm.vmas.first!.start, last = mm.vmas.last!.end
            // pagemap over the whole populated span would be 2^35 words: read
            // each VMA plus a page either side instead.
            var outs: [ProducerOutput] = []
            for (_, options) in twinConfigurations {
                var out = try ProducerOutput.capture(mm, options, window: first..<(first + 16 * page),
                                                     scans: scanQueries(first..<last))
                for vma in mm.vmas {
                    out.pagemap += try Pagemap.words(mm, (vma.start - page)..<(vma.end + page), privileged: true, options: options)
                }
                outs.append(out)
            }
            for o in outs.dropFirst() {
                let diff = outs[0].firstDifference(o)
                #expect(diff == nil, "pid \(pid): \(diff ?? "")")
            }
        }
    }
}
