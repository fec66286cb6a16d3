import MemoryModel

extension KernelPageAttr {
    /// The writers on the range walker: a kernel update walk of `[start,
    /// end)`, one entry word at a time; each present leaf the operation
    /// rewrites (`rewrites(_:level:)`) gets its new bits, and PTEs their
    /// page flushes.
    static func rangeWalk(_ operation: Operation, _ mm: AddressSpace, _ start: UInt64,
                          _ end: UInt64) throws(PageWalkError) -> KernelPageAttrResult {
        var result = KernelPageAttrResult()
        try mm.withKernelUpdateWalk(start..<end, lockless: isLockless(operation)) { (walk) throws(PageWalkError) -> Void in
            try walk.forEach { (u) throws(PageWalkError) -> UpdateStep in
                let e = u.entry
                guard case .pfn(let pfn) = e.content else { return .next }
                let level = e.level.tableLevel
                guard rewrites(operation, level: level) else { return .next }
                if refusesPartial(operation, mm, level: level, e.start, e.end) {
                    result.partialBlockAt = e.start
                    return .stop
                }
                let set: UInt64, clear: UInt64
                switch operation {
                case .masks(let m, _), .arm64Masks(let m): (set, clear) = (m.set, m.clear)
                case .setNoCache(let bit): (set, clear) = (bit, 0)
                case .clearNoCache(let bit): (set, clear) = (0, bit)
                }
                let changed = try u.rewriteBits(set: set, clear: clear)
                result.changed += changed
                if level == .pte {
                    pageFlushes(operation, e.start, pfn: pfn, &result)
                } else if changed > 0 {
                    result.blockLeaves.append(e.start)
                }
                return .next
            }
        }
        return result
    }
}
