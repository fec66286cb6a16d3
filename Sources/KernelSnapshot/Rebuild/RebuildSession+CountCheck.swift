import MemoryModel

/// Whether a VMA's captured smaps can be reached from the captured counts.
///
/// smaps splits each mapped page into shared (page mapcount ≥ 2) or private
/// and adds PAGE_SIZE / mapcount to PSS; kpagecount is that mapcount. So
/// the pages a VMA maps, with their kpagecount words, fix Shared_Clean +
/// Shared_Dirty, Private_Clean + Private_Dirty and Pss. When they do not,
/// the counts changed between the smaps read and the kpagecount read: the
/// warning names the VMA, the field and what the capture recorded about
/// its stability (`CaptureStability`). Pss is judged only in VMAs whose
/// pages no process outside the snapshot maps: those processes start and
/// exit during any capture, stopped or not, and each moves the PSS of
/// every page it maps without moving the shared/private split.
extension RebuildSession {
    /// smaps' PSS fixed point (the kernel's PSS_SHIFT).
    private static let pssShift = 12

    func checkCountsAgainstSmaps(_ plan: [PlannedEntry], _ p: ProcessSnapshot, _ i: Int) {
        let block = p.smaps[i]
        guard let rssKB = block.kilobytes("Rss"), let pssKB = block.kilobytes("Pss"),
              let sharedCleanKB = block.kilobytes("Shared_Clean"), let sharedDirtyKB = block.kilobytes("Shared_Dirty"),
              let privateCleanKB = block.kilobytes("Private_Clean"), let privateDirtyKB = block.kilobytes("Private_Dirty")
        else { return }
        let recs = snap.kpageflags
        var shared = 0, privatePages = 0, outsideMapped = 0
        var pss: UInt64 = 0
        let mappers = capturedMappers()
        let pageShifted = Geometry.pageSize << Self.pssShift
        func account(_ record: Int) {
            let count = recs[record].count
            if count > UInt64(mappers[record]) { outsideMapped += 1 }
            if count >= 2 { shared += 1; pss += pageShifted / count } else { privatePages += 1; pss += pageShifted }
        }
        for e in plan {
            switch e {
            case .pte(let t):
                guard let fi = t.folio else { continue }
                let c = folios[fi]
                account(c.first + Int(t.pfn - c.pfn))
            case .pmd(_, let fi, _, _):
                let c = folios[fi]
                guard c.pfn != hugeZeroPFN else { continue }
                for k in 0..<c.pageCount { account(c.first + k) }
            default:
                continue
            }
        }
        let kbPerPage = Geometry.pageSize / 1024
        // Pages the rebuild could not place leave Rss unexplained for other
        // reasons (warned elsewhere); the split is only judged when Rss is met.
        guard UInt64(shared + privatePages) * kbPerPage == rssKB else { return }
        let fromCounts = Int((pss >> UInt64(Self.pssShift)) / 1024)
        var contradictions: [(field: String, smaps: UInt64, counts: UInt64)] = []
        if UInt64(shared) * kbPerPage != sharedCleanKB + sharedDirtyKB {
            contradictions.append(("Shared_Clean+Shared_Dirty", sharedCleanKB + sharedDirtyKB, UInt64(shared) * kbPerPage))
        }
        if UInt64(privatePages) * kbPerPage != privateCleanKB + privateDirtyKB {
            contradictions.append(("Private_Clean+Private_Dirty", privateCleanKB + privateDirtyKB, UInt64(privatePages) * kbPerPage))
        }
        if outsideMapped == 0 && UInt64(fromCounts) != pssKB {
            contradictions.append(("Pss", pssKB, UInt64(fromCounts)))
        }
        guard !contradictions.isEmpty else { return }
        let vma = p.maps[i]
        for c in contradictions {
            warnings.add(.countsContradictSmaps, pid: p.pid,
                         detail: "VMA 0x\(rhex(vma.start))-0x\(rhex(vma.end)) \(c.field): smaps \(c.smaps) kB, kpagecount gives \(c.counts) kB; \(stabilityVerdict)",
                         example: vma.raw)
        }
    }

    /// Record index → present pagemap words naming its PFN, over every captured process.
    private func capturedMappers() -> [Int] {
        if let mappersOfRecord { return mappersOfRecord }
        var n = [Int](repeating: 0, count: snap.kpageflags.count)
        for p in snap.processes {
            for w in p.pagemap where w.isPresent {
                if let pfn = w.pfn, let ri = snap.recordIndex(pfn: pfn) { n[ri] += 1 }
            }
        }
        mappersOfRecord = n
        return n
    }

    /// What the snapshot says about why its counts may contradict smaps.
    var stabilityVerdict: String {
        guard let capture = snap.format.capture else {
            return "the counts contradict smaps: the capture may have been unstable (the snapshot has no capture record)"
        }
        if !capture.stable { return "capture unstable after \(capture.attempts) attempts" }
        return "the capture recorded agreeing kpagecount readings (attempt \(capture.attempts)\(capture.stopped ? "" : ", targets running"))"
    }
}
