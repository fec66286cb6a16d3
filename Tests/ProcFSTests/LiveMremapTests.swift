import Testing
import Foundation
import Glibc
@testable import MemoryModel
import PageWalk
import LiveKernel
@testable import ProcFS

/// mremap(2) moves with the machine's kernel as the oracle: pages written,
/// read-only and guarded, moved across VMA boundaries onto another mapping
/// and back; smaps, numa_maps and pagemap of both places must equal the
/// model's after each move.
@Suite(.serialized) struct LiveMremapTests {
    static let page = 4096

    /// A written anonymous mapping with a read-only middle and a guard page
    /// (three VMAs in the moved range) moved over a second mapping, which
    /// MREMAP_FIXED unmaps first; then moved back, where the parts merge
    /// with what they left.
    @Test func moveAcrossVMAsAndBack() throws {
        guard getuid() == 0 else { try Test.cancel("needs root: /proc/kpageflags gives the pages' LRU state") }
        guard HostFacts.current().guardRegions else { try Test.cancel("this kernel has no guard regions") }
        let f = try FencedMappings()
        let m = try f.anonymous(32 * Self.page)
        let target = try f.anonymous(32 * Self.page)
        let mirror = try Mirror()
        try mirror.map(m)
        try mirror.map(target)
        f.touch(m, write: true)
        try mirror.mm.fault(m.start, m.end, write: true)
        let (ro, roEnd) = mirror.pages(m, 8..<12)
        #expect(Glibc.mprotect(m.pointer + 8 * Self.page, 4 * Self.page, PROT_READ) == 0)
        try mirror.mm.mprotect(ro, roEnd, access: [.read])
        let (g, gEnd) = mirror.pages(m, 14..<15)
        #expect(Glibc.madvise(m.pointer + 14 * Self.page, Self.page, LiveMappings.Advice.guardInstall.rawValue) == 0)
        try madviseGuardInstall(mirror.mm, g, gEnd)

        let (a, b) = mirror.pages(m, 4..<20)
        let length = Int(b - a)
        let destination = target.pointer + 8 * Self.page
        #expect(LiveMappings.mremapMove(m.pointer + 4 * Self.page, length, to: destination) == 0)
        let to = UInt64(UInt(bitPattern: destination))
        try mirror.mm.mremapMove(a, b, to: to)
        var problems = try LiveComparison.mismatches(mirror, [m.start..<m.end, target.start..<target.end])
        #expect(problems.isEmpty, "after the move away:\n\(problems.prefix(3).joined(separator: "\n"))")

        #expect(LiveMappings.mremapMove(destination, length, to: m.pointer + 4 * Self.page) == 0)
        try mirror.mm.mremapMove(to, to + UInt64(length), to: a)
        problems = try LiveComparison.mismatches(mirror, [m.start..<m.end])
        #expect(problems.isEmpty, "after the move back:\n\(problems.prefix(3).joined(separator: "\n"))")
        // The read-only part and the guarded part merged back: three VMAs.
        #expect(mirror.mm.vmas(intersecting: m.start, m.end).count == 3)
        // The hole the pages left in the target is reserved again before the
        // fence's tear-down unmaps it.
        _ = Glibc.mmap(destination, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0)
    }

    /// The kernel refuses a destination overlapping the source (EINVAL),
    /// and so does the model, changing nothing.
    @Test func overlappingDestinationIsRefused() throws {
        let f = try FencedMappings()
        let m = try f.anonymous(16 * Self.page)
        let mirror = try Mirror()
        try mirror.map(m)
        let e = LiveMappings.mremapMove(m.pointer, 8 * Self.page, to: m.pointer + 4 * Self.page)
        #expect(e == EINVAL)
        #expect(throws: ModelError.self) { try mirror.mm.mremapMove(m.start, m.start + 8 * 4096, to: m.start + 4 * 4096) }
        #expect(try LiveComparison.mismatches(mirror, [m.start..<m.end]).isEmpty)
    }
}
