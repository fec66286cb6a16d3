import Testing
import Foundation
import Glibc
@testable import MemoryModel
import PageWalk
import LiveKernel
@testable import ProcFS

/// mprotect(2) with the machine's kernel as the oracle.
@Suite(.serialized) struct LiveMprotectTests {
    /// A locked private file mapping, part of it made read-only, then part
    /// of the locked range given write again. With mlock the kernel breaks
    /// COW at once on every page that gains write (mprotect populates locked
    /// private memory for write), so they all become anonymous copies; with
    /// MLOCK_ONFAULT nothing is populated and the file pages stay. smaps,
    /// numa_maps and pagemap of the mapping must equal the model's. Found by
    /// the live fuzzer (seed 0x5EED8024: the model left 2 of 12 file pages).
    @Test(arguments: [false, true])
    func lockedPrivateFileGainingWrite(onFault: Bool) throws {
        guard getuid() == 0 else { try Test.cancel("needs root: /proc/kpageflags gives the pages' LRU state") }
        let f = try FencedMappings()
        let file = try f.file(32 * 4096, shared: false)
        let mirror = try Mirror()
        let fo = try mirror.file(of: file, kernel: try KernelView.smaps(), shmem: false)
        try mirror.mm.cachePages(of: fo, 0..<32)
        try mirror.map(file, kind: .file(fo, offset: 0))
        defer { _ = Glibc.munlock(file.pointer, file.size) }

        #expect(Glibc.mprotect(file.pointer + 15 * 4096, 2 * 4096, PROT_READ) == 0)
        let (r, rEnd) = mirror.pages(file, 15..<17)
        try mirror.mm.mprotect(r, rEnd, access: [.read])

        let (l, lEnd) = mirror.pages(file, 5..<24)
        if onFault {
            do { try f.live.mlockOnFault(file, offset: 5 * 4096, length: 19 * 4096) } catch { try Test.cancel("mlock2: \(error)") }
            try mirror.mm.mlock2(l, lEnd, onFault: true)
        } else {
            #expect(Glibc.mlock(file.pointer + 5 * 4096, 19 * 4096) == 0)
            try mirror.mm.mlock(l, lEnd)
        }

        #expect(Glibc.mprotect(file.pointer + 11 * 4096, 11 * 4096, PROT_READ | PROT_WRITE) == 0)
        let (w, wEnd) = mirror.pages(file, 11..<22)
        try mirror.mm.mprotect(w, wEnd, access: [.read, .write])

        let problems = try LiveComparison.mismatches(mirror, [file.start..<file.end])
        #expect(problems.isEmpty, "\(problems.prefix(3).joined(separator: "\n"))")
        // Independent of the model: mlock's write populate copied the 17
        // writable locked pages and mprotect the 2 read-only ones; with
        // MLOCK_ONFAULT nothing was touched.
        let anon = try Self.kernelAnonymousKB(file)
        #expect(anon == (onFault ? 0 : 19 * 4), "Anonymous: \(anon) kB")
    }

    /// The kernel's `Anonymous:` for the VMAs inside `m`, in kB.
    static func kernelAnonymousKB(_ m: LiveMapping) throws -> Int {
        try KernelView.smaps().filter { m.start..<m.end ~= $0.key }.values.reduce(0) { sum, block in
            let line = block.split(separator: "\n").first { $0.hasPrefix("Anonymous:") }
            return sum + (line.flatMap { Int($0.split(separator: " ", omittingEmptySubsequences: true)[1]) } ?? 0)
        }
    }
}
