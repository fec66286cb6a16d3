import MemoryModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension GmapZeroPages {
    /// `walk->private` of the search: the kernel passes `&addr`; the model
    /// keeps what the handler found.
    public struct FindZeroPage {
        var found: FindResult = .none
        public init() {}
    }

    /// Models `find_zeropage_ops`: one `pte_entry`
    /// (`find_zeropage_pte_entry()`), the mmap write lock with each VMA
    /// write-locked (`PGWALK_WRLOCK`).
    public static func walkOps(_ mm: AddressSpace) -> MMWalkOps<FindZeroPage> {
        MMWalkOps<FindZeroPage>(
            pteEntry: { p, addr, _, walk in
                guard let vma = walk.vma else { return 0 }
                let result = judge(p.rawValue, at: addr, vma, mm)
                walk.privateData.found = result
                switch result {
                case .none: return 0
                case .zeroPage: return 1
                case .outsideCOW: return -EFAULT
                }
            },
            walkLock: .write)
    }

    /// The search on the callback walker: `walk_page_range_vma(vma, start,
    /// vma->vm_end, &find_zeropage_ops, &addr)`.
    static func callbackFind(_ mm: AddressSpace, _ vma: VMA, from start: UInt64) throws(PageWalkError) -> FindResult {
        var data = FindZeroPage()
        do {
            _ = try walkPageRangeVMA(mm, vma, start, vma.end, ops: walkOps(mm), private: &data)
        } catch .handlerError(-EFAULT) where data.found != .none {
            return data.found
        }
        return data.found
    }
}
