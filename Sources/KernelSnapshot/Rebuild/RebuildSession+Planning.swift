import MemoryModel

// Pagemap words and kpageflags records turned into the entries to place:
// PTEs, PMD leaves, hugetlb leaves and swap or migration entries, with the
// bits the capture does not show inferred.
extension RebuildSession {
    func planVMA(_ p: ProcessSnapshot, _ i: Int, _ vma: VMA) throws -> [PlannedEntry] {
        let m = p.maps[i]
        let words = p.pagemapWords(vma: i)
        let base = p.vmaPageRanges[i].lowerBound
        let block = p.smaps[i]
        var plan: [PlannedEntry] = []
        plan.reserveCapacity(words.count)
        let vmaSoftDirty = vma.flags.contains(.softDirty)
        // PMD budgets by kind (nil: unlimited).
        var anonPMDs: Int? = nil, shmemPMDs: Int? = nil, filePMDs: Int? = nil
        if options.pmdMappingsFromSmaps {
            anonPMDs = block.kilobytes("AnonHugePages").map { Int($0 / 2048) }
            shmemPMDs = block.kilobytes("ShmemPmdMapped").map { Int($0 / 2048) }
            filePMDs = block.kilobytes("FilePmdMapped").map { Int($0 / 2048) }
        }
        var k = 0
        while k < words.count {
            let w = words[words.startIndex + k]
            let address = m.start + UInt64(k) * Geometry.pageSize
            let wordIndex = base + k
            if w.rawValue == 0 || (vmaSoftDirty && w.rawValue == PagemapBits.softDirty) { k += 1; continue }
            if w.isPresent {
                let pfn = w.pfn ?? 0
                if vma.isHugetlb {
                    k += try planHugetlb(p, vma, words, k, address, wordIndex, &plan)
                    continue
                }
                if let run = pmdCandidate(vma, words, k, address, pfn) {
                    let f = folios[run]
                    var allowed = true
                    if f.pfn != hugeZeroPFN {
                        let isShmemFolio = !f.isAnon && f.head.contains(.swapBacked)
                        func take(_ budget: inout Int?) -> Bool {
                            guard let b = budget else { return true }
                            if b > 0 { budget = b - 1; return true }
                            return false
                        }
                        allowed = f.isAnon ? take(&anonPMDs) : isShmemFolio ? take(&shmemPMDs) : take(&filePMDs)
                    }
                    if allowed {
                        var a = baseAttributes(vma, w)
                        inferWriteDirty(&a, vma, f, page: 0, folioIndex: run)
                        plan.append(.pmd(address: address, folio: run, attrs: a, word: wordIndex))
                        k += 512
                        continue
                    }
                }
                if let pte = planPTE(p, vma, w, address, pfn, wordIndex) { plan.append(.pte(pte)) }
                k += 1
                continue
            }
            if w.isSwapped {
                if let leaf = softLeaf(p, vma, w, address) {
                    plan.append(.softLeaf(address: address, leaf, word: wordIndex))
                }
                k += 1
                continue
            }
            warnings.add(.unexpressibleEntry, pid: p.pid, detail: "non-present word with flags only (\(w))",
                         example: "0x\(rhex(address))")
            k += 1
        }
        return plan
    }

    /// The bits every leaf of `vma` gets, plus what the word shows.
    func baseAttributes(_ vma: VMA, _ w: PagemapWord) -> LeafAttributes {
        var a: LeafAttributes = [.user, .young]
        if vma.flags.contains(.exec) { a.insert(.executable) }
        if vma.flags.isDisjoint(with: [.read, .write, .exec]) { a.insert(.protNone) }
        if w.isSoftDirty && softDirty { a.insert(.softDirty) }
        if w.isUffdWP { a.insert(.uffdWP) }
        return a
    }

    /// Writable and dirty bits by the rules in the type's documentation.
    func inferWriteDirty(_ a: inout LeafAttributes, _ vma: VMA, _ f: CapturedFolio, page: Int, folioIndex: Int) {
        let k = f.head
        let uffd = a.contains(.uffdWP)
        if f.isAnon {
            let ksm = k.contains(.ksm)
            let exclusive = k.contains(.mappedToDisk)
            if vma.flags.contains(.write) && exclusive && !ksm && !uffd { a.insert(.writable) }
            let lazyfree = !k.contains(.swapBacked)
            let cleanInSwapCache = k.contains(.swapCache) && !k.contains(.dirty)
            if !lazyfree && !ksm && !cleanInSwapCache { a.insert(.dirty) }
        } else {
            let shmem = k.contains(.swapBacked)
            if vma.isShared && vma.flags.contains(.write) && (shmem || k.contains(.dirty)) && !uffd { a.insert(.writable) }
            if k.contains(.dirty) && a.contains(.writable) { a.insert(.dirty) }
        }
    }

    /// The folio index when `words[k...]` is a PMD-mappable run.
    func pmdCandidate(_ vma: VMA, _ words: ArraySlice<PagemapWord>, _ k: Int, _ address: UInt64, _ pfn: UInt64) -> Int? {
        guard address % (2 << 20) == 0, address + (2 << 20) <= vma.end, pfn % 512 == 0,
              let fi = folioIndex(pfn) else { return nil }
        let f = folios[fi]
        guard f.order == 9, f.pfn == pfn, !f.isHugetlb, f.isMappable, !vma.isPFNMap else { return nil }
        let first = words[words.startIndex + k]
        let same = PagemapBits.softDirty | PagemapBits.uffdWP
        for j in 0..<512 {
            let w = words[words.startIndex + k + j]
            guard w.isPresent, w.pfn == pfn + UInt64(j), w.rawValue & same == first.rawValue & same else { return nil }
        }
        return fi
    }

    func planPTE(_ p: ProcessSnapshot, _ vma: VMA, _ w: PagemapWord, _ address: UInt64, _ pfn: UInt64, _ word: Int) -> PlannedPTE? {
        var a = baseAttributes(vma, w)
        if pfn == memory.zeroPage.pfn || vma.isPFNMap {
            a.insert(.special)
            if vma.isPFNMap && vma.isShared && vma.flags.contains(.write) { a.insert(.writable) }
            if vma.isPFNMap, let fi = folioIndex(pfn), !folios[fi].isMappable {
                // Device or reserved memory behind a PFN mapping: fine, no page.
            }
            return PlannedPTE(address: address, pfn: pfn, attrs: a, folio: nil, word: word, shared: false,
                              folioDirty: false, folioReferenced: false, idle: false)
        }
        guard let ri = recordIndex(pfn) else {
            warnings.add(.missingPageFlags, pid: p.pid, detail: "mapped PFN without a kpageflags record (not placed)",
                         example: "pfn 0x\(rhex(pfn)) at 0x\(rhex(address))")
            unplaced.insert(pfn)
            stats.unplacedEntries += 1
            return nil
        }
        let fi = folioOfRecord[ri]
        let f = folios[fi]
        guard f.isMappable, !f.isHugetlb else {
            warnings.add(.pageNotMappable, pid: p.pid,
                         detail: f.isHugetlb ? "hugetlb page in a non-hugetlb VMA (not placed)" : "page no longer mappable at kpageflags time (not placed)",
                         example: "pfn 0x\(rhex(pfn)) [\(f.head)] at 0x\(rhex(address))")
            unplaced.insert(pfn)
            stats.unplacedEntries += 1
            return nil
        }
        if f.isAnon == w.isFileOrSharedAnon {
            warnings.add(.anonFlagMismatch, pid: p.pid, detail: "pagemap file bit vs kpageflags ANON",
                         example: "pfn 0x\(rhex(pfn)) at 0x\(rhex(address))")
        }
        let rec = snap.kpageflags[ri]
        if w.isExclusive != (rec.count == 1) {
            // The page changed between the pagemap and kpagecount reads; the
            // mapcount will follow pagemap (see checkMapcounts).
            exclusiveFromPagemap[ri] = w.isExclusive
            warnings.add(.exclusiveBitMismatch, pid: p.pid,
                         detail: "pagemap exclusive bit vs kpagecount (capture raced; mapcount follows pagemap)",
                         example: "pfn 0x\(rhex(pfn)) count \(rec.count) at 0x\(rhex(address))")
        }
        inferWriteDirty(&a, vma, f, page: Int(pfn - f.pfn), folioIndex: fi)
        return PlannedPTE(address: address, pfn: pfn, attrs: a, folio: fi, word: word, shared: !w.isExclusive,
                          folioDirty: f.head.contains(.dirty), folioReferenced: f.head.contains(.referenced),
                          idle: f.head.contains(.idle))
    }

    /// Plans one huge page of a hugetlb VMA; returns the words consumed.
    func planHugetlb(_ p: ProcessSnapshot, _ vma: VMA, _ words: ArraySlice<PagemapWord>, _ k: Int, _ address: UInt64,
                     _ word: Int, _ plan: inout [PlannedEntry]) throws -> Int {
        let size = vma.hugePageSize
        let pages = Int(size / Geometry.pageSize)
        let headAddress = address & ~(size - 1)
        let consumed = pages - Int((address - headAddress) / Geometry.pageSize)
        let w = words[words.startIndex + k]
        let pfn = (w.pfn ?? 0) - UInt64((address - headAddress) / Geometry.pageSize)
        guard address == headAddress, let fi = folioIndex(pfn), folios[fi].pfn == pfn, folios[fi].isHugetlb,
              folios[fi].pageCount == pages else {
            warnings.add(.unexpressibleEntry, pid: p.pid, detail: "hugetlb entry that is not one whole captured huge page",
                         example: "0x\(rhex(address)) pfn 0x\(rhex(w.pfn ?? 0))")
            if let x = w.pfn { unplaced.insert(x) }
            stats.unplacedEntries += 1
            return max(consumed, 1)
        }
        var a = baseAttributes(vma, w)
        a.remove(.softDirty)
        let f = folios[fi]
        if vma.flags.contains(.write) && (vma.isShared || f.head.contains(.mappedToDisk)) && !a.contains(.uffdWP) {
            a.formUnion([.writable, .dirty])
        }
        plan.append(.hugetlb(address: address, folio: fi, attrs: a, word: word))
        return pages
    }

    /// The softleaf a swap-format word describes, nil (warned) when the model cannot hold it.
    func softLeaf(_ p: ProcessSnapshot, _ vma: VMA, _ w: PagemapWord, _ address: UInt64) -> SoftLeafEntry? {
        let type = Int(w.rawValue & 0x1f)
        let offset = w.swapOffset ?? 0
        var bits: SwapPTEBits = []
        if w.isSoftDirty && softDirty && !vma.flags.contains(.softDirty) { bits.insert(.softDirty) }
        if w.isSoftDirty && softDirty && vma.flags.contains(.softDirty) { bits.insert(.softDirty) }
        if vma.isHugetlb {
            warnings.add(.unexpressibleEntry, pid: p.pid, detail: "non-present hugetlb entry", example: "0x\(rhex(address)) \(w)")
            return nil
        }
        switch type {
        case 0..<24:
            if w.isUffdWP { bits.insert(.uffdWP) }
            if swapHolders[UInt64(type) << 50 | offset] == 1 && vma.isPrivate { bits.insert(.exclusive) }
            guard type == 0 else {
                warnings.add(.unexpressibleEntry, pid: p.pid, detail: "swap type \(type) (the model has one device, type 0)",
                             example: "0x\(rhex(address)) \(w)")
                return nil
            }
            return SoftLeafEntry(.swap(SwapEntry(type: 0, offset: offset)), bits: bits)
        case 24:
            return SoftLeafEntry(.hwpoison(pfn: offset), bits: bits)
        case 25...27:
            if w.isUffdWP { bits.insert(.uffdWP) }
            guard folioIndex(offset) != nil else {
                warnings.add(.missingPageFlags, pid: p.pid, detail: "migration entry for a PFN without a record (not placed)",
                             example: "0x\(rhex(address)) pfn 0x\(rhex(offset))")
                unplaced.insert(offset)
                return nil
            }
            let kind: MigrationKind = type == 25 ? .read : type == 26 ? .readExclusive : .write
            return SoftLeafEntry(.migration(kind, pfn: offset, young: false, dirty: false), bits: bits)
        case 31:
            let marker = PTEMarker(rawValue: offset)
            guard !marker.isEmpty, PTEMarker.all.isSuperset(of: marker) else {
                warnings.add(.unexpressibleEntry, pid: p.pid, detail: "unknown PTE marker bits", example: "0x\(rhex(address)) \(w)")
                return nil
            }
            return SoftLeafEntry(.marker(marker))
        default:
            warnings.add(.unexpressibleEntry, pid: p.pid, detail: "device swap-format entry (type \(type))",
                         example: "0x\(rhex(address)) \(w)")
            return nil
        }
    }
}
