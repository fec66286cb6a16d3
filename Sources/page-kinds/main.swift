// page-kinds: a per-VMA histogram of what the page tables hold, written as
// a client of the range walker writes it (docs/RANGE-WALK.md walks through
// it).
//
//     swift run page-kinds                      # the embedded default scenario
//     swift run page-kinds --snapshot DIR       # a snapshot captured by ptwalk
#if canImport(Glibc)
import Glibc
#endif
import PageWalkKit

/// Pages of each content kind, per VMA, in address order.
struct Histogram {
    var vmas: [(vma: VMA, pages: [WalkContent.Kind: Int])] = []

    mutating func add(_ entry: WalkEntry) throws(PageWalkError) {
        guard let vma = try entry.vma else { return }
        if vmas.last?.vma !== vma { vmas.append((vma, [:])) }
        vmas[vmas.count - 1].pages[entry.content.kind, default: 0] += entry.pageCount
    }
}

/// One walk over the whole user address space, under the mmap read lock.
func histogram(of mm: AddressSpace) throws(PageWalkError) -> Histogram {
    // PFN maps ([vvar], device memory) are skipped by default, as the
    // kernel's walkers skip them; `.walk` reports their entries too, so
    // that every VMA's pages add up to its size.
    let options = RangeWalkOptions(pfnMap: .walk)
    return try mm.withRangeWalk(0..<mm.geometry.userAddressLimit, options: options) { walk -> Result<Histogram, PageWalkError> in
        var h = Histogram()
        // An entry's VMA is read under the walk's lock; reading it can only
        // fail for an entry kept past the loop.
        do throws(PageWalkError) { for entry in walk { try h.add(entry) } } catch { return .failure(error) }
        return .success(h)
    }.get()
}

func report(pid: Int32, name: String, _ mm: AddressSpace) throws(PageWalkError) {
    print("pid \(pid) (\(name))")
    for (vma, pages) in try histogram(of: mm).vmas {
        let kinds = WalkContent.Kind.allCases.compactMap { k in pages[k].map { "\(k) \($0)" } }
        let total = pages.values.reduce(0, +)
        let range = String(vma.start, radix: 16) + "-" + String(vma.end, radix: 16)
        print("  \(range) \(vma.name ?? "") \(total) pages: \(kinds.joined(separator: ", "))")
    }
}

func main() -> Int32 {
    let args = Array(CommandLine.arguments.dropFirst())
    do {
        switch args.count {
        case 0:
            let built = try ScenarioBuilder.buildDefault()
            for p in built.processes { try report(pid: p.pid, name: p.name, p.addressSpace) }
        case 2 where args[0] == "--snapshot":
            let rebuilt = try SnapshotRebuilder.rebuild(directory: args[1])
            for p in rebuilt.processes { try report(pid: p.pid, name: p.name, p.addressSpace) }
        default:
            print("usage: page-kinds [--snapshot DIR]")
            return 2
        }
    } catch {
        print("page-kinds: \(error)")
        return 1
    }
    return 0
}

exit(main())
