import Foundation

/// `<repo>/Tests/Fixtures/snapshots/<name>` (a captured snapshot
/// fixture), found from the calling test's source file, symlinks resolved
/// too so that a scratch package pointing here works; nil when absent
/// (the tests that need it skip, saying so).
public func fixtureSnapshot(_ name: String, file: String = #filePath) -> String? {
    let testsDir = (file as NSString).deletingLastPathComponent
    var dirs = [testsDir]
    if let r = realpath(testsDir, nil) { dirs.append(String(cString: r)); free(r) }
    for dir in dirs {
        let repo = ((dir as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
        let candidate = repo + "/Tests/Fixtures/snapshots/" + name
        if FileManager.default.fileExists(atPath: candidate + "/FORMAT") { return candidate }
    }
    return nil
}

/// A fresh empty directory `/tmp/<name>-XXXXXX`.
public func temporaryDirectory(_ name: String) -> String {
    var template = Array("/tmp/\(name)-XXXXXX".utf8CString)
    let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    precondition(p != nil, "mkdtemp failed")
    return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// A writable copy (files mode 0644) of the directory tree at `from`:
/// tests that corrupt or extend a snapshot fixture work on a copy.
public func copyTree(_ from: String, to: String) throws {
    let fm = FileManager.default
    try fm.createDirectory(atPath: to, withIntermediateDirectories: true)
    for name in try fm.contentsOfDirectory(atPath: from) {
        var isDir: ObjCBool = false
        let src = from + "/" + name, dst = to + "/" + name
        _ = fm.fileExists(atPath: src, isDirectory: &isDir)
        if isDir.boolValue {
            try copyTree(src, to: dst)
        } else {
            try Data(contentsOf: URL(fileURLWithPath: src)).write(to: URL(fileURLWithPath: dst))
            chmod(dst, 0o644)
        }
    }
}
