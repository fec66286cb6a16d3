import Foundation
import Glibc
@testable import KernelSnapshot

enum TestSupport {
    /// <repo>/../shared/fixtures/snapshots/<name>, found from this source file
    /// (symlinks resolved so that a scratch package pointing here works too).
    static func fixture(_ name: String, file: String = #filePath) -> String? {
        let testsDir = (file as NSString).deletingLastPathComponent
        var candidates: [String] = []
        for dir in [testsDir, realPath(testsDir)].compactMap({ $0 }) {
            let repo = ((dir as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
            candidates.append(repo + "/../shared/fixtures/snapshots/" + name)
        }
        return candidates.first { FileManager.default.fileExists(atPath: $0 + "/FORMAT") }
    }

    static func realPath(_ p: String) -> String? {
        guard let r = realpath(p, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }

    static let pythonIdle = fixture("python-idle")
    static let haveFixture = pythonIdle != nil
    static let isRoot = getuid() == 0
    static let canReadKPageFlags = access("/proc/kpageflags", R_OK) == 0

    /// A fresh empty directory under /tmp.
    static func tempDirectory(_ tag: String = "snap") -> String {
        var template = Array("/tmp/pagewalk-\(tag)-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(p != nil, "mkdtemp failed")
        return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Writable copy of a snapshot directory.
    static func copyTree(_ from: String, to: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: to, withIntermediateDirectories: true)
        for name in try fm.contentsOfDirectory(atPath: from) {
            var isDir: ObjCBool = false
            let src = from + "/" + name, dst = to + "/" + name
            _ = fm.fileExists(atPath: src, isDirectory: &isDir)
            if isDir.boolValue {
                try copyTree(src, to: dst)
            } else {
                let data = try Data(contentsOf: URL(fileURLWithPath: src))
                try data.write(to: URL(fileURLWithPath: dst))
                chmod(dst, 0o644)
            }
        }
    }

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
