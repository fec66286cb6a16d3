#if canImport(Glibc)
import Glibc
#endif

/// Thin wrappers over open/read/pread/write. procfs files report size 0, so
/// whole-file reads loop until read() returns 0.
package enum RawIO {
    /// Opens `path` read-only; errors are classified (pid given for /proc/<pid> files).
    package static func openRead(_ path: String, pid: Int32? = nil) throws -> Int32 {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw SnapshotError.fromErrno(errno, path: path, operation: "open", pid: pid) }
        return fd
    }

    /// Reads all of `path` into `buffer` (reused between calls; its count is set
    /// to the number of bytes read).
    package static func readAll(_ path: String, into buffer: inout [UInt8], pid: Int32? = nil) throws {
        let fd = try openRead(path, pid: pid)
        defer { close(fd) }
        try readAll(fd: fd, path: path, into: &buffer, pid: pid)
    }

    package static func readAll(fd: Int32, path: String, into buffer: inout [UInt8], pid: Int32? = nil) throws {
        if buffer.count < 65536 { buffer = [UInt8](repeating: 0, count: 65536) }
        var used = 0
        while true {
            if used == buffer.count {
                buffer.append(contentsOf: [UInt8](repeating: 0, count: buffer.count))
            }
            let n = buffer.withUnsafeMutableBytes { raw -> Int in
                read(fd, raw.baseAddress! + used, raw.count - used)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw SnapshotError.fromErrno(errno, path: path, operation: "read", pid: pid)
            }
            if n == 0 { break }
            used += n
        }
        buffer.removeSubrange(used...)
    }

    /// Reads the whole file as bytes.
    package static func readBytes(_ path: String, pid: Int32? = nil) throws -> [UInt8] {
        var buffer: [UInt8] = []
        try readAll(path, into: &buffer, pid: pid)
        return buffer
    }

    /// Reads the whole file as text (invalid UTF-8 is repaired).
    package static func readText(_ path: String, pid: Int32? = nil) throws -> String {
        let bytes = try readBytes(path, pid: pid)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// pread until `count` bytes or end of file; returns bytes read (a short
    /// count means end of file).
    package static func pread(fd: Int32, path: String, into dest: UnsafeMutableRawPointer, count: Int,
                      offset: Int64, pid: Int32? = nil) throws -> Int {
        var done = 0
        while done < count {
            let n = Glibc.pread(fd, dest + done, count - done, off_t(offset + Int64(done)))
            if n < 0 {
                if errno == EINTR { continue }
                throw SnapshotError.fromErrno(errno, path: path, operation: "pread at offset \(offset + Int64(done))", pid: pid)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Creates (exclusively) and writes a file.
    package static func writeFile(_ path: String, bytes: UnsafeRawBufferPointer, mode: mode_t = 0o644) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        if fd < 0 { throw SnapshotError.fromErrno(errno, path: path, operation: "create") }
        defer { close(fd) }
        try writeAll(fd: fd, path: path, bytes: bytes)
    }

    package static func writeFile(_ path: String, bytes: [UInt8], mode: mode_t = 0o644) throws {
        try bytes.withUnsafeBytes { try writeFile(path, bytes: $0, mode: mode) }
    }

    package static func writeFile(_ path: String, text: String) throws {
        try writeFile(path, bytes: Array(text.utf8))
    }

    package static func writeAll(fd: Int32, path: String, bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw SnapshotError.fromErrno(errno, path: path, operation: "write")
            }
            done += n
        }
    }

    package static func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o755) != 0 {
            throw SnapshotError.fromErrno(errno, path: path, operation: "mkdir")
        }
    }

    package static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    package static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    package static func fileSize(_ path: String) -> Int? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Int(st.st_size)
    }

    /// Entries of a directory, without "." and "..".
    package static func listDirectory(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else {
            throw SnapshotError.fromErrno(errno, path: path, operation: "opendir")
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw -> String in
                let p = raw.bindMemory(to: CChar.self)
                return String(cString: p.baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Removes a file or a directory tree (best effort).
    package static func removeTree(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for name in (try? listDirectory(path)) ?? [] { removeTree(path + "/" + name) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    /// `uname -r`.
    package static func kernelRelease() -> String {
        var u = utsname()
        guard uname(&u) == 0 else { return "unknown" }
        return withUnsafeBytes(of: u.release) { raw in
            String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
        }
    }
}

/// Little-endian u64 load from a byte buffer at any alignment.
@inline(__always)
func loadLE64(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
    UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
}
