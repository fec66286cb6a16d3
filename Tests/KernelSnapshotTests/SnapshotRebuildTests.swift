import Foundation
import Glibc
import Testing
import MemoryModel
import TestKit
import ProcFS
@testable import KernelSnapshot

/// Computes /proc/<pid>/pagemap words from a model address space, with the
/// kernel's rules (`pte_to_pagemap_entry()`, `pagemap_pmd_range()`,
/// `pagemap_hugetlb_range()`, `pagemap_pte_hole()` in fs/proc/task_mmu.c),
/// as root sees them (PFNs shown). An independent oracle for rebuild tests,
/// built on `AddressSpace.translate` and the memmap only.
enum ModelPagemap {
    static func word(_ space: AddressSpace, _ vma: VMA, _ address: UInt64) -> UInt64 {
        let layout = space.geometry.layout
        let memory = space.memory
        var flags: UInt64 = 0
        var frame: UInt64 = 0
        switch space.translate(address) {
        case .none:
            break
        case .present(let level, let raw, let pagePFN):
            frame = pagePFN
            flags |= PagemapBits.present
            if vma.isHugetlb {
                if let folio = memory.folio(containing: pagePFN) {
                    if !folio.isAnon { flags |= PagemapBits.file }
                    if folio.mapcount <= 1 { flags |= PagemapBits.exclusive }
                }
                if raw & layout.uffdWP != 0 { flags |= PagemapBits.uffdWP }
            } else {
                if raw & layout.softDirty != 0 { flags |= PagemapBits.softDirty }
                if raw & layout.uffdWP != 0 { flags |= PagemapBits.uffdWP }
                let page: Page?
                if level == .pte {
                    // vm_normal_page(): no page for special PTEs (zero page, PFN maps).
                    page = raw & layout.special != 0 || vma.isPFNMap ? nil : memory.page(pagePFN)
                } else {
                    page = memory.page(pagePFN)      // pmd_page()
                }
                if let page {
                    if !page.folio.isAnon { flags |= PagemapBits.file }
                    // 6.18 asks the PMD's first page for every page of a PMD
                    // leaf (`__folio_page_mapped_exclusively(folio, page)`
                    // with the head page), the PTE path asks each page.
                    let asked = level == .pte ? page.mapcount : page.folio.pageMapcount(Int(pagePFN - page.folio.pfn) & ~511)
                    if asked == 1 { flags |= PagemapBits.exclusive }
                }
            }
        case .softLeaf(_, _, let entry):
            if vma.isHugetlb {
                if entry.bits.contains(.uffdWP) { flags |= PagemapBits.uffdWP }
                if case .marker(let m) = entry.leaf, m.contains(.uffdWP) { flags |= PagemapBits.uffdWP }
                break
            }
            flags |= PagemapBits.swap
            if entry.bits.contains(.softDirty) { flags |= PagemapBits.softDirty }
            if entry.bits.contains(.uffdWP) { flags |= PagemapBits.uffdWP }
            let type: UInt64, offset: UInt64
            var pfn: UInt64? = nil
            switch entry.leaf {
            case .swap(let e): (type, offset) = (UInt64(e.type), e.offset)
            case .migration(let kind, let p, _, _): (type, offset, pfn) = (25 + UInt64(kind.rawValue), p, p)
            case .devicePrivate(let w, let p): (type, offset, pfn) = (w ? 28 : 29, p, p)
            case .deviceExclusive(let p): (type, offset, pfn) = (30, p, p)
            case .hwpoison(let p): (type, offset, pfn) = (24, p, p)
            case .marker(let m):
                (type, offset) = (31, m.rawValue)
                if m.contains(.uffdWP) { flags |= PagemapBits.uffdWP }
                if m.contains(.guardRegion) { flags |= PagemapBits.guardRegion }
            }
            frame = type | offset << 5
            if let pfn, let folio = memory.folio(containing: pfn), !folio.isAnon { flags |= PagemapBits.file }
        }
        if vma.flags.contains(.softDirty) { flags |= PagemapBits.softDirty }
        return (frame & PagemapBits.pfnMask) | flags
    }

    /// Regenerated words of VMA `index` of `rebuilt` against the captured
    /// ones: the mismatching pages (address, captured, regenerated).
    static func differences(_ rebuilt: RebuiltProcess, _ captured: ProcessSnapshot)
        -> [(vma: Int, address: UInt64, captured: PagemapWord, model: PagemapWord)] {
        var out: [(Int, UInt64, PagemapWord, PagemapWord)] = []
        for (i, m) in captured.maps.enumerated() {
            guard let vma = rebuilt.vmas[i] else { continue }
            let words = captured.pagemapWords(vma: i)
            let gate = vma.end > rebuilt.addressSpace.geometry.userAddressLimit
            for (k, w) in words.enumerated() {
                let a = m.start + UInt64(k) * 4096
                // The kernel's pagemap stops at TASK_SIZE: the capture pads the gate VMA with zeros.
                let model = gate ? PagemapWord(0) : PagemapWord(word(rebuilt.addressSpace, vma, a))
                if model != w { out.append((i, a, w, model)) }
            }
        }
        return out
    }
}

@Suite("Snapshot rebuild (fixture)", .enabled(if: TestSupport.haveFixture, "fixture python-idle not found"))
struct SnapshotRebuildTests {
    static let fixture = TestSupport.pythonIdle ?? ""

    @Test func fixtureRebuilds() throws {
        let snap = try SnapshotReader.read(directory: Self.fixture)
        let rebuilt = try SnapshotRebuilder.rebuild(snap)
        print(rebuilt.report)
        let r = rebuilt.report
        #expect(rebuilt.processes.count == 1)
        #expect(r.unplacedPFNs == 0)
        // Every VMA, the gate VMA ([vsyscall], --xp: vsyscall=xonly) with the
        // address space rather than among the mm's VMAs.
        let space = rebuilt.processes[0].addressSpace
        #expect(r.stats.vmas == snap.processes[0].maps.count)
        #expect(r.count(.gateVMASkipped) == 0)
        #expect(space.options.vsyscall == .xonly)
        #expect(rebuilt.processes[0].vmas.last! === space.gateVMA)
        #expect(space.vmas.count == snap.processes[0].maps.count - 1)
        #expect(space.mapsVMAs.map(\.start) == snap.processes[0].maps.map(\.start))
        #expect(r.count(.missingPageFlags) == 0)
        #expect(r.count(.pageNotMappable) == 0)
        #expect(r.count(.unexpressibleEntry) == 0)
        // The frames placed are exactly the recorded ones minus the zero page.
        #expect(r.stats.frames == snap.kpageflags.count - 1)
        #expect(r.stats.zeroPageMappings == 1)
        #expect(rebuilt.memory.zeroPage.pfn == snap.kpageflags.first { $0.flags.contains(.zeroPage) }?.pfn)
        // No soft-dirty on this kernel.
        #expect(rebuilt.processes[0].addressSpace.options.softDirty == false)
        // RSS matches the capture's status.
        let p = snap.processes[0]
        let c = rebuilt.processes[0].addressSpace.counterSnapshot
        if let anon = p.status("RssAnon"), let file = p.status("RssFile") {
            #expect("\(c.anon * 4) kB" == anon)
            #expect("\(c.file * 4) kB" == file)
        }
    }

    @Test func everyVMAHasTheCapturedFlags() throws {
        let snap = try SnapshotReader.read(directory: Self.fixture)
        let rebuilt = try SnapshotRebuilder.rebuild(snap)
        let p = snap.processes[0]
        let rp = rebuilt.processes[0]
        #expect(rp.addressSpace.mapsVMAs.count == p.maps.count)
        var checked = 0
        for (i, m) in p.maps.enumerated() {
            let vma = try #require(rp.vmas[i])
            #expect(vma.start == m.start && vma.end == m.end)
            #expect(vma.permissions == m.perms, "\(m.raw)")
            var expected: VMFlags = []
            for mn in p.smaps[i].vmFlags { expected.insert(try #require(SnapshotRebuilder.vmFlagMnemonics[mn], "\(mn)")) }
            #expect(vma.flags == expected, "\(m.raw)")
            if let file = vma.file {
                #expect(file.path == m.name)
                #expect(file.inode == m.inode)
                #expect(file.device.major == m.devMajor && file.device.minor == m.devMinor)
                #expect(vma.backing.pageOffset * 4096 == m.offset)
            } else {
                #expect(m.inode == 0)
                #expect(vma.name == (m.name.isEmpty ? nil : m.name))
            }
            #expect(vma.protectionKey == p.smaps[i].protectionKey ?? 0)
            checked += 1
        }
        #expect(checked == 105)
        #expect(rp.addressSpace.gateVMA?.name == "[vsyscall]")
        #expect(!rp.addressSpace.vmas.contains { $0.name == "[vsyscall]" })
    }

    @Test func pagemapWordsRegenerateExactly() throws {
        let snap = try SnapshotReader.read(directory: Self.fixture)
        let rebuilt = try SnapshotRebuilder.rebuild(snap)
        let diffs = ModelPagemap.differences(rebuilt.processes[0], snap.processes[0])
        let total = snap.processes[0].pagemap.count
        print("fixture pagemap: \(total - diffs.count)/\(total) words equal")
        for d in diffs.prefix(10) { print("  0x\(String(d.address, radix: 16)): captured \(d.captured), model \(d.model)") }
        #expect(diffs.isEmpty)
    }

    @Test func externalMappingsAreRepresented() throws {
        let snap = try SnapshotReader.read(directory: Self.fixture)
        let on = try SnapshotRebuilder.rebuild(snap)
        // File pages of shared libraries are mapped by other processes.
        let shared = snap.kpageflags.filter { $0.count >= 2 }.count
        #expect(on.report.stats.externallyMappedPages == shared)
        #expect(on.report.count(.externalMappings) == shared)
        #expect(on.report.count(.mapcountBelowRebuilt) == 0)
        // Without representing them, exclusive bits of those pages would be wrong… but
        // they are mapped more than once in the kernel, so pagemap shows them shared
        // either way only when the extra mapcount is there.
        let off = try SnapshotRebuilder.rebuild(snap, options: .init(representExternalMappings: false))
        #expect(off.report.stats.externalMappings == 0)
        let diffs = ModelPagemap.differences(off.processes[0], snap.processes[0])
        #expect(diffs.count == snap.processes[0].pagemap.filter { $0.isPresent && !$0.isExclusive && $0.pfn.map { snap.record(pfn: $0)?.count ?? 0 } ?? 0 >= 2 }.count)
    }

    @Test func missingRecordIsAWarning() throws {
        let snap = try SnapshotReader.read(directory: Self.fixture)
        let p = snap.processes[0]
        // Drop the record of one mapped anonymous page.
        let victimWord = try #require(p.pagemap.first { w in
            w.pfn.flatMap { snap.record(pfn: $0) }.map { $0.flags.contains(.anon) && !$0.flags.isCompound } ?? false
        })
        let victim = try #require(victimWord.pfn)
        let dir = TestSupport.tempDirectory("rebuild-missing")
        defer { TestSupport.remove(dir) }
        try copyTree(Self.fixture, to: dir + "/snap")
        let kept = snap.kpageflags.filter { $0.pfn != victim }
        var bytes: [UInt8] = []
        for r in kept {
            for v in [r.pfn, r.flags.rawValue, r.count] { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        }
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/snap/kpageflags"))
        let rebuilt = try SnapshotRebuilder.rebuild(directory: dir + "/snap")
        let w = rebuilt.report.warnings(.missingPageFlags)
        #expect(w.count == 1)
        #expect(w.first?.count == 1)
        #expect(w.first?.example.contains(String(victim, radix: 16)) == true)
        #expect(rebuilt.report.unplacedPFNs == 1)
        let diffs = ModelPagemap.differences(rebuilt.processes[0], snap.processes[0])
        #expect(diffs.count == 1)
        #expect(diffs.first?.captured.pfn == victim)
        #expect(diffs.first?.model == PagemapWord(0))
    }

    // MARK: typed errors

    func writableCopy(_ tag: String) throws -> String {
        let dir = TestSupport.tempDirectory(tag)
        try copyTree(Self.fixture, to: dir + "/snap")
        return dir
    }

    @Test func truncatedKPageFlagsIsATypedError() throws {
        let dir = try writableCopy("rebuild-trunc")
        defer { TestSupport.remove(dir) }
        let path = dir + "/snap/kpageflags"
        let size = try #require(TestSupport.fileSize(path))
        #expect(truncate(path, off_t(size - 5)) == 0)
        let e = #expect(throws: SnapshotError.self) { try SnapshotRebuilder.rebuild(directory: dir + "/snap") }
        #expect(e?.path == path)
        #expect(e?.offset == (size - 5) / 24 * 24)
    }

    @Test func truncatedPagemapIsATypedError() throws {
        let dir = try writableCopy("rebuild-trunc-pm")
        defer { TestSupport.remove(dir) }
        let path = dir + "/snap/proc/4196/pagemap"
        let size = try #require(TestSupport.fileSize(path))
        #expect(truncate(path, off_t(size - 8 * 100)) == 0)
        let e = #expect(throws: SnapshotError.self) { try SnapshotRebuilder.rebuild(directory: dir + "/snap") }
        #expect(e?.path == path)
        #expect(e?.offset == size - 800)
    }

    @Test func unsortedKPageFlagsIsATypedError() throws {
        let dir = try writableCopy("rebuild-unsorted")
        defer { TestSupport.remove(dir) }
        let path = dir + "/snap/kpageflags"
        var data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        // Swap records 10 and 11.
        let a = Array(data[240..<264]), b = Array(data[264..<288])
        data.replaceSubrange(240..<264, with: b)
        data.replaceSubrange(264..<288, with: a)
        try Data(data).write(to: URL(fileURLWithPath: path))
        let e = #expect(throws: SnapshotError.self) { try SnapshotRebuilder.rebuild(directory: dir + "/snap") }
        #expect(e?.path == path)
        #expect(e?.offset == 264)
    }

    @Test func rebuildLevelChecksOnInMemorySnapshots() throws {
        let snap = try SnapshotReader.read(directory: Self.fixture)
        // Unsorted records handed in directly (not through the reader).
        var unsorted = snap
        unsorted.kpageflags.swapAt(3, 4)
        let e1 = #expect(throws: SnapshotError.self) { try SnapshotRebuilder.rebuild(unsorted) }
        #expect(e1?.offset == 4 * 24)
        #expect(e1?.path.hasSuffix("/kpageflags") == true)
        // A compound tail without its head.
        var orphan = snap
        orphan.kpageflags[7].flags.insert(.compoundTail)
        let e2 = #expect(throws: SnapshotError.self) { try SnapshotRebuilder.rebuild(orphan) }
        #expect(e2?.offset == 7 * 24)
        // A frame in the model's page-table range.
        var high = snap
        high.kpageflags.append(KPageFlagsRecord(pfn: PhysicalMemory.tableBasePFN, flags: [], count: 0))
        let e3 = #expect(throws: SnapshotError.self) { try SnapshotRebuilder.rebuild(high) }
        #expect(e3?.offset == (high.kpageflags.count - 1) * 24)
        // VmFlags that disagree with the permissions.
        var badFlags = snap
        var block = badFlags.processes[0].smaps[0]
        let fi = try #require(block.fields.firstIndex { $0.name == "VmFlags" })
        block.fields[fi] = SnapshotField(name: "VmFlags", value: "rd wr mr mw me", line: "VmFlags: rd wr mr mw me ")
        badFlags.processes[0].smaps[0] = block
        let e4 = #expect(throws: SnapshotError.self) { try SnapshotRebuilder.rebuild(badFlags) }
        #expect(e4?.line == block.headerLine + fi + 1)
        #expect(e4?.path.hasSuffix("/smaps") == true)
    }

    /// The fixture with its gate VMA line and smaps block changed.
    static func withGate(_ snap: Snapshot, perms: String, vmFlags: String, start: UInt64 = VsyscallMode.gateStart) -> Snapshot {
        var s = snap
        var p = s.processes[0]
        let i = p.maps.count - 1
        var m = p.maps[i]
        m.perms = perms
        m.start = start
        m.raw = String(start, radix: 16) + m.raw.drop { $0 != "-" }.prefix(17) + " " + perms + m.raw.dropFirst(38)
        p.maps[i] = m
        var block = p.smaps[i]
        block.header = m
        let fi = block.fields.firstIndex { $0.name == "VmFlags" }!
        block.fields[fi] = SnapshotField(name: "VmFlags", value: vmFlags, line: "VmFlags: \(vmFlags) ")
        p.smaps[i] = block
        s.processes[0] = p
        return s
    }

    /// The gate VMA follows the captured mode (--xp xonly, r-xp emulate) and
    /// is printed last in smaps with the kernel's zero counters; dropping it
    /// on request warns; a gate line no vsyscall= mode prints is a typed
    /// error naming the file and line.
    @Test func gateVMAFollowsTheCapturedMode() throws {
        let snap = try SnapshotReader.read(directory: Self.fixture)
        let p = snap.processes[0]
        let gateIndex = p.maps.count - 1
        #expect(p.maps[gateIndex].perms == "--xp" && p.smaps[gateIndex].vmFlags == ["ex"])

        let emulate = Self.withGate(snap, perms: "r-xp", vmFlags: "rd ex")
        let rebuilt = try SnapshotRebuilder.rebuild(emulate)
        let space = rebuilt.processes[0].addressSpace
        #expect(space.options.vsyscall == .emulate)
        #expect(space.gateVMA?.permissions == "r-xp")
        let opts = ProcOptions(protectionKeys: p.smaps[0].protectionKey != nil)
        let smaps = try SnapshotReader.parseSmaps(try Smaps.text(space, options: opts), path: "model smaps")
        let kernelGate = emulate.processes[0].smaps[gateIndex]
        #expect(smaps.last?.text == kernelGate.text)

        let dropped = try SnapshotRebuilder.rebuild(snap, options: .init(includeGateVMA: false))
        #expect(dropped.report.count(.gateVMASkipped) == 1)
        #expect(dropped.processes[0].addressSpace.gateVMA == nil)
        #expect(dropped.processes[0].vmas.last! == nil)
        let droppedSmaps = try SnapshotReader.parseSmaps(try Smaps.text(dropped.processes[0].addressSpace, options: opts),
                                                         path: "model smaps")
        #expect(droppedSmaps.count == p.smaps.count - 1)

        let gateLine = gateIndex + 1
        for bad in [Self.withGate(snap, perms: "rwxp", vmFlags: "rd wr ex"),
                    Self.withGate(snap, perms: "--xp", vmFlags: "rd ex"),
                    Self.withGate(snap, perms: "--xp", vmFlags: "ex", start: VsyscallMode.gateStart - 0x1000)] {
            let e = #expect(throws: SnapshotError.self) { try SnapshotRebuilder.rebuild(bad) }
            #expect(e?.path.hasSuffix("/maps") == true || e?.path.hasSuffix("/smaps") == true, "\(String(describing: e))")
            #expect(e?.line == gateLine || e?.line == p.smaps[gateIndex].headerLine, "\(String(describing: e))")
        }
    }
}

/// The rebuilt process as a client sees it: the same names as a built
/// scenario's, and typed errors.
@Suite struct RebuiltProcessAPITests {
    @Test(.enabled(if: TestSupport.haveFixture, "fixture Tests/Fixtures/snapshots/python-idle is absent"))
    func nameAndAddressSpace() throws {
        let rebuilt = try SnapshotRebuilder.rebuild(directory: try #require(TestSupport.pythonIdle))
        let p = try #require(rebuilt.process(pid: 4196))
        #expect(p.name == "python3")
        #expect(p.addressSpace.options.pid == 4196)
    }

    @Test func errorsAreTyped() {
        let missing = "/nonexistent-snapshot-\(getpid())"
        let result: Result<RebuiltSnapshot, SnapshotError> = Result { () throws(SnapshotError) in
            try SnapshotRebuilder.rebuild(directory: missing)
        }
        guard case .failure(let e) = result else { Issue.record("rebuilt a missing directory"); return }
        #expect(e == .fileMissing(path: missing))
    }
}
