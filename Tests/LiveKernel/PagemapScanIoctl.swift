#if canImport(Glibc)
import Glibc
#endif

/// The PAGEMAP_SCAN ioctl on /proc/self/pagemap (Linux 6.7 and later): the
/// page regions of `[start, end)` whose categories match, as the kernel
/// returns them.
public enum PagemapScanIoctl {
    /// `struct pm_scan_arg` (include/uapi/linux/fs.h): twelve u64 fields.
    struct Arg {
        var size: UInt64, flags: UInt64, start: UInt64, end: UInt64, walkEnd: UInt64
        var vec: UInt64, vecLen: UInt64, maxPages: UInt64
        var categoryInverted: UInt64, categoryMask: UInt64, categoryAnyofMask: UInt64, returnMask: UInt64
    }
    /// `struct page_region`: start, end, categories.
    public struct Region: Hashable, Sendable, CustomStringConvertible {
        public let start: UInt64, end: UInt64, categories: UInt64
        public var description: String {
            "0x\(String(start, radix: 16))-0x\(String(end, radix: 16)) 0x\(String(categories, radix: 16))"
        }
    }
    public struct Result: Sendable {
        public let regions: [Region]
        public let walkEnd: UInt64
        public let value: Int32
    }

    /// `_IOWR('f', 16, struct pm_scan_arg)`.
    static var request: UInt { (3 << 30) | (UInt(MemoryLayout<Arg>.size) << 16) | (UInt(UInt8(ascii: "f")) << 8) | 16 }

    /// Runs the scan; throws with the errno when the ioctl fails.
    public static func scan(start: UInt64, end: UInt64, flags: UInt64 = 0, categoryInverted: UInt64 = 0,
                            categoryMask: UInt64 = 0, categoryAnyofMask: UInt64 = 0, returnMask: UInt64,
                            maxPages: UInt64 = 0, vecLen: Int = 512) throws -> Result {
        let fd = open("/proc/self/pagemap", O_RDONLY)
        guard fd >= 0 else { throw LiveMappingError.unavailable(feature: "PAGEMAP_SCAN", reason: "open: errno \(errno)") }
        defer { close(fd) }
        var regions = [Region](repeating: Region(start: 0, end: 0, categories: 0), count: vecLen)
        return try regions.withUnsafeMutableBufferPointer { buf in
            var arg = Arg(size: UInt64(MemoryLayout<Arg>.size), flags: flags, start: start, end: end, walkEnd: 0,
                          vec: UInt64(UInt(bitPattern: buf.baseAddress)), vecLen: UInt64(vecLen), maxPages: maxPages,
                          categoryInverted: categoryInverted, categoryMask: categoryMask,
                          categoryAnyofMask: categoryAnyofMask, returnMask: returnMask)
            let r = ioctl(fd, request, &arg)
            guard r >= 0 else {
                throw LiveMappingError.unavailable(feature: "PAGEMAP_SCAN", reason: "ioctl: errno \(errno)")
            }
            return Result(regions: Array(buf.prefix(Int(r))), walkEnd: arg.walkEnd, value: r)
        }
    }
}
