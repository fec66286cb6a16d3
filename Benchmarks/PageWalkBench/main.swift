import MemoryModel
#if canImport(Glibc)
import Glibc
#endif

/// Resident set size of this process in bytes (`/proc/self/statm`).
func residentBytes() -> Int {
    guard let f = fopen("/proc/self/statm", "r") else { return 0 }
    defer { fclose(f) }
    var size = 0, resident = 0
    withUnsafeMutablePointer(to: &size) { s in
        withUnsafeMutablePointer(to: &resident) { r in
            _ = withVaList([s, r]) { vfscanf(f, "%ld %ld", $0) }
        }
    }
    return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Populate benchmark: a dense anonymous 4K mapping written page by page.
func populateBenchmark(gib: UInt64) throws {
    let bytes = gib << 30
    let memory = try PhysicalMemory(budgetBytes: bytes + (64 << 20))
    let mm = try AddressSpace(geometry: .x86_64, memory: memory)
    let start: UInt64 = 0x7f00_0000_0000
    try mm.mmap(start: start, end: start + bytes, access: [.read, .write])
    let before = residentBytes()
    let t0 = now()
    try mm.fault(start, start + bytes, write: true)
    let t1 = now()
    let after = residentBytes()
    let pages = Double(bytes / 4096)
    print("populate dense anon 4K: \(gib) GiB, \(Int(pages)) pages")
    let seconds: Double = t1 - t0
    let rate: Double = pages / seconds / 1e6
    print("  time \(seconds) s, \(rate) M pages/s")
    let growth = Double(after - before)
    let perPage = growth / pages
    print("  memory \(perPage) bytes per mapped page (RSS growth \((after - before) >> 20) MiB)")
    print("  counters: \(mm.counterSnapshot)")
}

let args = CommandLine.arguments
let gib = args.firstIndex(of: "--populate-gib").flatMap { UInt64(args[$0 + 1]) } ?? 4
do {
    try populateBenchmark(gib: gib)
} catch {
    print("error: \(error)")
    exit(1)
}
