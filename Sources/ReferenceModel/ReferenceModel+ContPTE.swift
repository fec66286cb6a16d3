import MemoryModel

/// The reference's arm64 contiguous PTEs, the page-granular counterpart of
/// `AddressSpace+ContPTE.swift`: a set of folded 64K blocks per process.
/// A folded block has one young and one dirty state, which every page of it
/// shows; so access-bit changes apply to the whole block and keep it
/// folded, any other change to a page of it unfolds it, and an operation
/// that wrote a block's last page folds the block when its 16 pages map
/// one large folio in order with the same attributes but for young and
/// dirty.
extension ReferenceModel {
    static let contBlockPages = EntryLayout.contPTEs
    static var contBlockSize: UInt64 { UInt64(contBlockPages) << Geometry.pageShift }

    /// Whether blocks fold here (arm64 with `foldContiguousPTEs`).
    var foldsContPTEs: Bool { geometry.architecture == .arm64 && options.foldContiguousPTEs }

    func contBlockBase(_ a: UInt64) -> UInt64 { a & ~(ReferenceModel.contBlockSize - 1) }

    func pagesOfBlock(_ b: UInt64) -> [UInt64] {
        (0..<ReferenceModel.contBlockPages).map { b + UInt64($0) << Geometry.pageShift }
    }

    /// Page `a` is about to change to `s` by an entry write.
    func noteContPTEWrite(_ p: ReferenceProcess, _ a: UInt64, _ s: ExpectedPage?, tryFold: Bool) {
        guard foldsContPTEs else { return }
        let b = contBlockBase(a)
        // The block's pages all show its young and dirty state already, so
        // unfolding keeps every page as it is.
        p.foldedBlocks.remove(b)
        let last = b + ReferenceModel.contBlockSize - Geometry.pageSize
        if tryFold && a == last, case .present = s { p.foldCandidates.insert(b) }
    }

    /// The last page of `a`'s block is rewritten unchanged (mprotect's
    /// commit of every entry): the block may fold.
    func noteUnchangedRewrite(_ p: ReferenceProcess, _ a: UInt64) {
        guard foldsContPTEs, a == contBlockBase(a) + ReferenceModel.contBlockSize - Geometry.pageSize,
              case .present? = p.pages[a] else { return }
        p.foldCandidates.insert(contBlockBase(a))
    }

    /// An access-bit change to present page `a` (young and dirty only):
    /// the whole block when it is folded, which stays folded.
    func updateAccess(_ p: ReferenceProcess, _ a: UInt64, _ change: (inout LeafAttributes) -> Void) {
        let b = contBlockBase(a)
        let targets = foldsContPTEs && p.foldedBlocks.contains(b) ? pagesOfBlock(b) : [a]
        for x in targets {
            guard case .present(var pp)? = p.pages[x] else { continue }
            change(&pp.attrs)
            p.pages[x] = .present(pp)   // same target: the derived counts stay
        }
    }

    /// Folds the candidate blocks of every process that qualify.
    func foldContPTECandidates() {
        for p in processes where !p.foldCandidates.isEmpty {
            let candidates = p.foldCandidates
            p.foldCandidates = []
            guard p.alive else { continue }
            for b in candidates where !p.foldedBlocks.contains(b) && canFold(p, b) { fold(p, b) }
        }
    }

    /// The 16 pages map pages 16k … 16k+15 of one folio of 16 or more
    /// pages by PTEs, none special, in accessible VMAs with the same
    /// executable bit, with the same attributes but for young and dirty.
    func canFold(_ p: ReferenceProcess, _ b: UInt64) -> Bool {
        var folio: ReferenceFolioID?, firstPage = 0
        var attrs: LeafAttributes = []
        var exec = false
        for (k, a) in pagesOfBlock(b).enumerated() {
            guard case .present(let pp)? = p.pages[a], pp.level == .pte, !pp.entire,
                  !pp.attrs.contains(.special), case .folio(let f, let i) = pp.target,
                  let vma = p.vma(containing: a), !vma.flags.intersection(.access).isEmpty else { return false }
            let bits = pp.attrs.subtracting([.young, .dirty])
            if k == 0 {
                guard let fo = folios[f], fo.pageCount >= ReferenceModel.contBlockPages,
                      i % ReferenceModel.contBlockPages == 0 else { return false }
                folio = f; firstPage = i; attrs = bits; exec = vma.flags.contains(.exec)
            } else if f != folio || i != firstPage + k || bits != attrs || vma.flags.contains(.exec) != exec {
                return false
            }
        }
        return true
    }

    /// Folding gives every page the young and dirty state of the block.
    func fold(_ p: ReferenceProcess, _ b: UInt64) {
        var gathered: LeafAttributes = []
        for a in pagesOfBlock(b) {
            if case .present(let pp)? = p.pages[a] { gathered.formUnion(pp.attrs.intersection([.young, .dirty])) }
        }
        p.foldedBlocks.insert(b)
        updateAccess(p, b) { $0.formUnion(gathered) }
    }
}
