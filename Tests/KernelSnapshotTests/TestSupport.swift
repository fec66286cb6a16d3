import Foundation
import TestKit
import Glibc
@testable import KernelSnapshot

enum TestSupport {
    static let pythonIdle = fixtureSnapshot("python-idle")
    static let haveFixture = pythonIdle != nil
    static let isRoot = getuid() == 0
    static let canReadKPageFlags = access("/proc/kpageflags", R_OK) == 0

    /// A fresh empty directory under /tmp.
    static func tempDirectory(_ tag: String = "snap") -> String { temporaryDirectory("pagewalk-\(tag)") }

    static func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }
}

extension TestSupport {
    static func fileSize(_ path: String) -> Int? {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : nil
    }

    static func append(_ path: String, _ bytes: [UInt8]) throws {
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? h.close() }
        try h.seekToEnd()
        try h.write(contentsOf: Data(bytes))
    }
}
