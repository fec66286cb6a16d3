import Testing
@testable import MemoryModel

/// When VMAs merge and what they keep, as Linux 6.18 does it (each case was
/// met by LiveDifferentialFuzzTests on the live kernel).
@Suite struct VMAMergeTests {
    let base: UInt64 = 0x1000_0000
    let page = Geometry.pageSize

    @Test func aNewMappingMergesWithItsNeighbours() throws {
        let mm = try makeSmallSpace()
        try mm.mmap(start: base, end: base + 4 * page, access: [.read, .write])
        try mm.mmap(start: base + 8 * page, end: base + 12 * page, access: [.read, .write])
        let vma = try mm.mmap(start: base + 4 * page, end: base + 8 * page, access: [.read, .write])
        #expect(vma.range == base..<(base + 12 * page))
        #expect(mm.vmas(intersecting: base, base + 12 * page).count == 1)
    }

    @Test func differentAnonVMAsDoNotMerge() throws {
        let mm = try makeSmallSpace()
        try mm.mmap(start: base, end: base + 8 * page, access: [.read, .write])
        try mm.mmap(start: base + 8 * page, end: base + 16 * page, access: [.read, .write, .exec])
        try mm.fault(base, base + page, write: true)                 // two anon_vmas
        try mm.fault(base + 8 * page, base + 9 * page, write: true)
        try mm.mprotect(base + 8 * page, base + 16 * page, access: [.read, .write])
        #expect(mm.vmas(intersecting: base, base + 16 * page).count == 2)
        // Without an anon_vma on one side they merge, keeping the one there is.
        try mm.mmap(start: base + 16 * page, end: base + 24 * page, access: [.read, .write, .exec])
        try mm.mprotect(base + 16 * page, base + 24 * page, access: [.read, .write])
        #expect(mm.vmas(intersecting: base, base + 24 * page).count == 2)
        #expect(mm.vma(containing: base + 8 * page)?.range == (base + 8 * page)..<(base + 24 * page))
        // A fork child's copies get anon_vmas of their own.
        let child = try mm.fork(childPID: 2)
        #expect(child.vma(containing: base)?.anonVMAIdentity != mm.vma(containing: base)?.anonVMAIdentity)
    }

    @Test func mprotectWithoutWriteUnaccountsANeverFaultedVMA() throws {
        let mm = try makeSmallSpace()
        try mm.mmap(start: base, end: base + 8 * page, access: [.read, .write])
        try mm.mmap(start: base + 16 * page, end: base + 24 * page, access: [.read, .write])
        #expect(mm.vma(containing: base)?.flags.contains(.account) == true)
        try mm.fault(base + 16 * page, base + 17 * page, write: true)
        try mm.mprotect(base, base + 8 * page, access: [])
        try mm.mprotect(base + 16 * page, base + 24 * page, access: [.read])
        #expect(mm.vma(containing: base)?.flags.contains(.account) == false)
        #expect(mm.vma(containing: base + 16 * page)?.flags.contains(.account) == true)   // has an anon_vma
        try mm.mprotect(base, base + 8 * page, access: [.read, .write])
        #expect(mm.vma(containing: base)?.flags.contains(.account) == true)               // charged again
    }

    /// mlock changes the flags, merging, before it populates: the second
    /// range's write faults find the merged VMA's anon_vma (checked live,
    /// seed 0x7E580009).
    @Test func mlockMergesBeforeItPopulates() throws {
        let mm = try makeSmallSpace()
        let file = mm.memory.file(path: "/data", device: DeviceNumber(major: 8, minor: 1), inode: 7)
        try mm.mmap(start: base, end: base + 32 * page, access: [.read, .write], kind: .file(file, offset: 0))
        try mm.mlock(base + 4 * page, base + 20 * page)
        try mm.mlock(base + 16 * page, base + 28 * page)
        #expect(mm.vma(containing: base + 4 * page)?.range == (base + 4 * page)..<(base + 28 * page))
        #expect(mm.counterSnapshot.anon == 24)
    }
}
