import MemoryModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension ProtNone {
    /// `walk->private` of the check: the kernel passes the new `pgprot_t`;
    /// the model passes the architecture's check and keeps the refusal.
    public struct ProtNoneWalk {
        public let check: PFNModifyCheck
        public var refusal: MprotectError?
        public init(check: PFNModifyCheck) { self.check = check }
    }

    /// Models `prot_none_walk_ops`: `pte_entry` is `prot_none_pte_entry()`,
    /// `hugetlb_entry` is `prot_none_hugetlb_entry()`, `test_walk`
    /// (`prot_none_test()`) returns 0 for every VMA; the mmap write lock,
    /// each VMA write-locked as it is reached (`PGWALK_WRLOCK`).
    public static func walkOps(_ mm: AddressSpace) -> MMWalkOps<ProtNoneWalk> {
        MMWalkOps<ProtNoneWalk>(
            pteEntry: { p, addr, _, walk in entry(mm, p.rawValue, level: .pte, addr, &walk) },
            hugetlbEntry: { p, _, addr, _, walk in entry(mm, p.rawValue, level: p.slot.level, addr, &walk) },
            testWalk: { _, _, _ in 0 },
            walkLock: .write)
    }

    /// Both handlers: 0 when the entry's PFN may become PROT_NONE, else
    /// -EACCES with the refusal kept.
    static func entry(_ mm: AddressSpace, _ raw: UInt64, level: PageTableLevel, _ addr: UInt64,
                      _ walk: inout MMWalk<ProtNoneWalk>) -> Int32 {
        guard let refusal = judge(raw, level: level, at: addr, mm, walk.privateData.check) else { return 0 }
        walk.privateData.refusal = refusal
        return -EACCES
    }

    /// The check on the callback walker: `walk_page_range(current->mm,
    /// start, end, &prot_none_walk_ops, &new_pgprot)`; the refusal when a
    /// handler stopped the walk with -EACCES.
    static func callbackWalk(_ mm: AddressSpace, _ start: UInt64, _ end: UInt64,
                             check: PFNModifyCheck) throws(PageWalkError) -> MprotectError? {
        var data = ProtNoneWalk(check: check)
        do {
            _ = try walkPageRange(mm, start, end, ops: walkOps(mm), private: &data)
        } catch .handlerError(-EACCES) where data.refusal != nil {
            return data.refusal
        }
        return nil
    }
}
