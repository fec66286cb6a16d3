import Testing
@testable import MemoryModel

/// Calls over several VMAs that Linux 6.18 refuses part way: what came
/// before the refused VMA stays done (each met by LiveDifferentialFuzzTests).
@Suite struct PartialApplicationTests {
    let base: UInt64 = 0x1000_0000
    let page = Geometry.pageSize

    /// Seed 0x7E570002: MADV_DONTNEED zaps the VMAs before a locked one,
    /// then fails with EINVAL.
    @Test func dontNeedStopsAtALockedVMA() throws {
        let mm = try makeSmallSpace()
        try mm.mmap(start: base, end: base + 32 * page, access: [.read, .write])
        try mm.fault(base, base + 32 * page, write: true)
        try mm.mlock(base + 10 * page, base + 12 * page)
        #expect(throws: ModelError.wrongVMAKind(address: base + 10 * page, reason: "MADV_DONTNEED on a VM_LOCKED or VM_PFNMAP VMA")) {
            try mm.zap(base, base + 32 * page)
        }
        #expect((0..<10).allSatisfy { !isMapped(mm, base, $0) })
        #expect((10..<32).allSatisfy { isMapped(mm, base, $0) })
    }

    /// mlock over a PROT_NONE VMA: every VMA is locked, populating stops
    /// there, and the call fails (ENOMEM).
    @Test func mlockStopsPopulatingAtAProtNoneVMA() throws {
        let mm = try makeSmallSpace()
        try mm.mmap(start: base, end: base + 16 * page, access: [.read, .write])
        try mm.mprotect(base + 4 * page, base + 8 * page, access: [])
        #expect(throws: ModelError.faultFailed(address: base + 4 * page,
                                               reason: "a guard or poison marker or a PROT_NONE VMA met while populating for mlock")) {
            try mm.mlock(base, base + 16 * page)
        }
        #expect(mm.vmas(intersecting: base, base + 16 * page).allSatisfy { $0.flags.contains(.locked) })
        #expect((0..<4).allSatisfy { isMapped(mm, base, $0) })
        #expect((4..<16).allSatisfy { !isMapped(mm, base, $0) })
    }
}
