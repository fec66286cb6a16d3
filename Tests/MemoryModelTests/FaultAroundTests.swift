import Testing
@testable import MemoryModel

/// Fault-around as Linux 6.18 does it with the default fault_around_bytes
/// (64 KiB), checked on the live kernel by LiveDifferentialFuzzTests: a read
/// fault on a file VMA maps the cached pages of the 16-page aligned window
/// around it, clipped to the VMA, and nothing that is not cached.
@Suite struct FaultAroundTests {
    let base: UInt64 = 0x4000_0000      // PMD-aligned: PTE index = page index
    let page = Geometry.pageSize

    func makeSpace(_ g: Geometry = .x86_64, options: AddressSpaceOptions = .init()) throws -> (AddressSpace, FileObject) {
        let mm = try makeSmallSpace(g, options: options)
        return (mm, mm.memory.file(path: "/data", device: DeviceNumber(major: 8, minor: 1), inode: 12))
    }

    func mapped(_ mm: AddressSpace, _ pages: Range<Int>) -> [Int] { pages.filter { isMapped(mm, base, $0) } }

    @Test func aReadFaultMapsTheCachedWindowAroundIt() throws {
        let (mm, file) = try makeSpace()
        try mm.cachePages(of: file, 0..<40)
        try mm.mmap(start: base, end: base + 48 * page, access: [.read], kind: .file(file, offset: 0))
        try mm.fault(base + 20 * page, base + 21 * page, write: false)
        #expect(mapped(mm, 0..<48) == Array(16..<32))
        guard case .present(_, let raw, _) = mm.translate(base + 17 * page) else { Issue.record("not mapped"); return }
        #expect(PTE(rawValue: raw, architecture: .x86_64).isYoung)       // x86 prefaults young
        #expect(mm.counterSnapshot.file == 16)
        // Only cached pages: 40..<48 are not, so a fault at 41 maps 32..<40 and itself.
        try mm.fault(base + 41 * page, base + 42 * page, write: false)
        #expect(mapped(mm, 32..<48) == Array(32..<40) + [41])
    }

    @Test func theWindowStaysInsideTheVMA() throws {
        let (mm, file) = try makeSpace()
        try mm.cachePages(of: file, 0..<64)
        // The VMA starts at PTE index 5 (file page 0) and ends at index 12.
        try mm.mmap(start: base + 5 * page, end: base + 12 * page, access: [.read], kind: .file(file, offset: 0))
        try mm.fault(base + 7 * page, base + 8 * page, write: false)
        #expect(mapped(mm, 0..<16) == Array(5..<12))
    }

    @Test func writesUffdAndOnePageWindowsDoWithout() throws {
        let (mm, file) = try makeSpace(options: AddressSpaceOptions(faultAroundBytes: 4096))
        try mm.cachePages(of: file, 0..<32)
        try mm.mmap(start: base, end: base + 32 * page, access: [.read, .write], kind: .file(file, offset: 0))
        try mm.fault(base + 3 * page, base + 4 * page, write: false)
        #expect(mapped(mm, 0..<32) == [3])
        let (mm2, file2) = try makeSpace()
        try mm2.cachePages(of: file2, 0..<32)
        try mm2.mmap(start: base, end: base + 32 * page, access: [.read, .write], kind: .file(file2, offset: 0))
        try mm2.fault(base + 3 * page, base + 4 * page, write: true)      // do_cow_fault(): no fault-around
        #expect(mapped(mm2, 0..<32) == [3])
    }

    @Test func arm64PrefaultsOld() throws {
        let (mm, file) = try makeSpace(.arm64)
        try mm.cachePages(of: file, 0..<16)
        try mm.mmap(start: base, end: base + 16 * page, access: [.read], kind: .file(file, offset: 0))
        try mm.fault(base + 2 * page, base + 3 * page, write: false)
        #expect(mapped(mm, 0..<16) == Array(0..<16))
        guard case .present(_, let faulted, _) = mm.translate(base + 2 * page),
              case .present(_, let around, _) = mm.translate(base + 9 * page) else { Issue.record("not mapped"); return }
        #expect(PTE(rawValue: faulted, architecture: .arm64).isYoung)
        #expect(!PTE(rawValue: around, architecture: .arm64).isYoung)    // arch_wants_old_prefaulted_pte()
    }
}
