import MemoryModel

/// A random page-aligned range for a fuzzed operation on `vma` of `mm`:
/// whole huge pages in a hugetlb VMA; sometimes one or two aligned 2 MiB
/// blocks (THP-sized work); otherwise a run of 1 to 600 pages; and one
/// time in ten spilling up to 64 pages into the VMA right after it.
public func randomRange<G: RandomNumberGenerator>(in vma: VMA, of mm: AddressSpace,
                                                  using rng: inout G) -> (start: UInt64, end: UInt64) {
    let mb2: UInt64 = 2 << 20
    let pages = Int(vma.size / 4096)
    var s: UInt64, e: UInt64
    if vma.isHugetlb {
        let n = Int(vma.size / vma.hugePageSize)
        let i = Int.random(in: 0..<n, using: &rng)
        s = vma.start + UInt64(i) * vma.hugePageSize
        e = s + UInt64(Int.random(in: 1...(n - i), using: &rng)) * vma.hugePageSize
    } else if Int.random(in: 0..<4, using: &rng) == 0 && vma.size >= mb2 {
        s = (vma.start + mb2 - 1) & ~(mb2 - 1)
        e = min(vma.end, s + mb2 * UInt64(Int.random(in: 1...2, using: &rng)))
        if s >= e { s = vma.start; e = vma.end }
    } else {
        let i = Int.random(in: 0..<pages, using: &rng)
        let n = Int.random(in: 1...min(pages - i, [1, 3, 17, 64, 600].randomElement(using: &rng)!), using: &rng)
        s = vma.start + UInt64(i) * 4096
        e = s + UInt64(n) * 4096
    }
    if Int.random(in: 0..<10, using: &rng) == 0, let next = mm.vmas.first(where: { $0.start == vma.end }) {
        e = min(next.end, e + 64 * 4096)
    }
    return (s, e)
}
