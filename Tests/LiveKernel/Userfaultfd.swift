#if canImport(Glibc)
import Glibc
#endif

/// A userfaultfd registered for write-protection over live mappings
/// (`UFFDIO_API` with `UFFD_FEATURE_WP_UNPOPULATED`, `UFFDIO_REGISTER` in
/// `UFFDIO_REGISTER_MODE_WP`), closed on deinit.
public final class UserfaultfdWP {
    /// `struct uffdio_api`, `struct uffdio_register`, `struct
    /// uffdio_writeprotect` (include/uapi/linux/userfaultfd.h): u64 fields.
    private struct API { var api: UInt64; var features: UInt64; var ioctls: UInt64 }
    private struct Register { var start: UInt64; var len: UInt64; var mode: UInt64; var ioctls: UInt64 }
    private struct WriteProtect { var start: UInt64; var len: UInt64; var mode: UInt64 }

    private static let uffdAPI: UInt64 = 0xAA
    private static let featureWPUnpopulated: UInt64 = 1 << 13
    private static let registerModeWP: UInt64 = 1 << 1
    private static let writeProtectModeWP: UInt64 = 1 << 0
    /// `_IOWR(UFFDIO, nr, struct)`: direction 3, the struct's size, type 0xAA.
    private static func iowr(_ nr: UInt, size: Int) -> UInt { (3 << 30) | (UInt(size) << 16) | (0xAA << 8) | nr }

    private typealias Syscall1 = @convention(c) (Int, Int) -> Int
    /// syscall(2), looked up at run time: the Glibc module does not import
    /// variadic functions (integer arguments travel in the same registers).
    private static let syscall1: Syscall1? = {
        guard let handle = dlopen(nil, RTLD_NOW), let sym = dlsym(handle, "syscall") else { return nil }
        return unsafeBitCast(sym, to: Syscall1.self)
    }()

    private let fd: Int32

    /// Opens the userfaultfd and registers `m` for write-protect tracking.
    public init(_ m: LiveMapping) throws {
        #if arch(x86_64)
        let nr = 323
        #elseif arch(arm64)
        let nr = 282
        #else
        throw LiveMappingError.unavailable(feature: "userfaultfd", reason: "no syscall number for this architecture")
        #endif
        guard let call = Self.syscall1 else {
            throw LiveMappingError.unavailable(feature: "userfaultfd", reason: "syscall(2) not found")
        }
        let r = call(nr, Int(O_CLOEXEC | O_NONBLOCK))
        guard r >= 0 else { throw LiveMappingError.unavailable(feature: "userfaultfd", reason: String(cString: strerror(errno))) }
        fd = Int32(r)
        var api = API(api: Self.uffdAPI, features: Self.featureWPUnpopulated, ioctls: 0)
        guard ioctl(fd, Self.iowr(0x3F, size: MemoryLayout<API>.size), &api) == 0 else {
            let e = errno
            close(fd)
            throw LiveMappingError.unavailable(feature: "UFFD_FEATURE_WP_UNPOPULATED", reason: String(cString: strerror(e)))
        }
        var reg = Register(start: m.start, len: UInt64(m.size), mode: Self.registerModeWP, ioctls: 0)
        guard ioctl(fd, Self.iowr(0x00, size: MemoryLayout<Register>.size), &reg) == 0 else {
            let e = errno
            close(fd)
            throw LiveMappingError.unavailable(feature: "UFFDIO_REGISTER_MODE_WP", reason: String(cString: strerror(e)))
        }
    }

    deinit { close(fd) }

    /// `UFFDIO_WRITEPROTECT` over `[start, start + length)`.
    public func writeProtect(_ start: UInt64, length: Int) throws {
        var wp = WriteProtect(start: start, len: UInt64(length), mode: Self.writeProtectModeWP)
        guard ioctl(fd, Self.iowr(0x06, size: MemoryLayout<WriteProtect>.size), &wp) == 0 else {
            throw LiveMappingError.last("UFFDIO_WRITEPROTECT")
        }
    }
}
