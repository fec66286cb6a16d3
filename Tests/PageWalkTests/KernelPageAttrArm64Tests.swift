import Testing
import MemoryModel
@testable import PageWalk

/// arm64's `pageattr_ops` (`__change_memory_common()` under
/// `set_memory_*()`, arch/arm64/mm/pageattr.c) on both walkers, on the
/// model's arm64 kernel tables of `KernelPageAttrTests`: a 1G PUD block at
/// `base`, a 2M PMD block after it, four PTEs after that.
@Suite struct KernelPageAttrArm64Tests {
    let t = KernelPageAttrTests()
    let layout = Geometry.arm64.layout
    var pudAt: UInt64 { KernelPageAttrTests.base }
    var pmdAt: UInt64 { pudAt + gb1 }
    var ptesAt: UInt64 { pmdAt + mb2 }

    @Test func blockLeavesWholeAndPTEsAreRewritten() throws {
        let before = try t.kernelSpace(.arm64)
        let (mm, r) = try t.twin(.arm64) { mm, w in
            try KernelPageAttr.arm64ChangeMemory(mm, pmdAt, size: mb2 + 2 * page, .readOnly(layout), walker: w)
        }
        // The PMD block and PTEs 0 and 1; the flush over the range.
        #expect(r.changed == 3 && r.blockLeaves == [pmdAt])
        #expect(r.tlbFlushes == [pmdAt..<ptesAt + 2 * page])
        for a in [pmdAt, ptesAt, ptesAt + page] {
            // RDONLY set, DBM (PTE_WRITE) cleared, nothing else.
            #expect(t.raw(mm, a) == (t.raw(before, a) & ~layout.write) | layout.readOnly)
            #expect(t.raw(mm, a) != t.raw(before, a))
        }
        for a in [pudAt, ptesAt + 2 * page, ptesAt + 3 * page] { #expect(t.raw(mm, a) == t.raw(before, a)) }
        // The 1G PUD block whole, made executable (it was not).
        let (mm2, nx) = try t.twin(.arm64) { mm, w in
            try KernelPageAttr.arm64ChangeMemory(mm, pudAt, size: gb1, .executable(layout), walker: w)
        }
        #expect(nx.changed == 1 && nx.blockLeaves == [pudAt])
        #expect(t.raw(before, pudAt) & layout.noExecute != 0)
        #expect(t.raw(mm2, pudAt) == t.raw(before, pudAt) & ~layout.noExecute)
        let (mm3, _) = try t.twin(.arm64) { mm, w in
            _ = try KernelPageAttr.arm64ChangeMemory(mm, pmdAt, size: mb2 + 4 * page, .readOnly(layout), walker: w)
            return try KernelPageAttr.arm64ChangeMemory(mm, pmdAt, size: mb2 + 4 * page, .readWrite(layout), walker: w)
        }
        #expect(try t.words(mm3) == (try t.words(before)))
    }

    @Test func aBlockCoveredInPartIsRefused() throws {
        for w in WalkerKind.allCases {
            let mm = try t.kernelSpace(.arm64)
            let before = try t.words(mm)
            // From inside the PMD block: -EINVAL at once, nothing rewritten.
            #expect(throws: KernelPageAttrError.partialBlock(address: pmdAt + page)) {
                try KernelPageAttr.arm64ChangeMemory(mm, pmdAt + page, size: 4 * page, .readOnly(layout), walker: w)
            }
            #expect(try t.words(mm) == before)
            // The PTEs first, then the PUD block's first half: the PTEs are
            // not in it; a range ending inside the PUD block stops there.
            #expect(throws: KernelPageAttrError.partialBlock(address: pudAt)) {
                try KernelPageAttr.arm64ChangeMemory(mm, pudAt, size: mb2, .readOnly(layout), walker: w)
            }
            #expect(try t.words(mm) == before)
            #expect(KernelPageAttrError.partialBlock(address: 0).errno == -22)
        }
    }

    @Test func onlyArm64TablesAndNoLockTaken() throws {
        let x86 = try t.kernelSpace(.x86_64)
        #expect(throws: KernelPageAttrError.notArm64(.x86_64)) {
            try KernelPageAttr.arm64ChangeMemory(x86, pudAt, size: page, .readOnly(x86.geometry.layout))
        }
        // The callback walk asserts no lock: it runs with none held.
        let mm = try t.kernelSpace(.arm64)
        var result = KernelPageAttrResult()
        _ = try walkKernelPageTableRangeLockless(mm, ptesAt, ptesAt + page,
                                                 ops: KernelPageAttr.walkOps(.arm64Masks(.readOnly(layout))), private: &result)
        #expect(result.changed == 1)
        #expect(throws: PageWalkError.self) {
            var r = KernelPageAttrResult()
            _ = try walkKernelPageTableRange(mm, ptesAt, ptesAt + page, ops: KernelPageAttr.walkOps(.arm64Masks(.readOnly(layout))),
                                             private: &r)
        }
    }
}
