#if canImport(Glibc)
import Glibc
#endif

/// Everything that can go wrong while capturing or reading a snapshot.
/// Every case names the file involved and, where it applies, the byte offset
/// (binary files) or 1-based line number (text files), plus a reason.
public enum SnapshotError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file exists but the caller may not read or write it (EACCES/EPERM).
    case permissionDenied(path: String, reason: String)
    /// The process is gone or never existed (ENOENT/ESRCH under /proc/<pid>).
    case processNotFound(pid: Int32, path: String)
    /// A file the snapshot format requires is absent.
    case fileMissing(path: String)
    /// Any other system-call failure.
    case ioFailure(path: String, operation: String, errno: Int32, reason: String)
    /// A text file does not parse.
    case malformedText(path: String, line: Int, reason: String)
    /// A binary file has the wrong size, order or contents.
    case malformedBinary(path: String, offset: Int, reason: String)
    /// maps and smaps disagree about the VMAs (line numbers are 1-based).
    case mapsSmapsMismatch(mapsPath: String, smapsPath: String, mapsLine: Int, smapsLine: Int, reason: String)
    /// Format version, page size or architecture we do not handle.
    case unsupported(path: String, reason: String)
    /// A live process kept changing while being captured.
    case inconsistentCapture(pid: Int32, path: String, reason: String)
    /// The process could not be stopped with SIGSTOP for a stopped capture
    /// (EPERM: the caller may not signal it); `path` is its /proc directory.
    case cannotStop(pid: Int32, path: String, errno: Int32, reason: String)
    /// Bad arguments given to the API.
    case invalidArgument(reason: String)

    /// The primary file the error is about.
    public var path: String {
        switch self {
        case .permissionDenied(let p, _), .processNotFound(_, let p), .fileMissing(let p),
             .ioFailure(let p, _, _, _), .malformedText(let p, _, _), .malformedBinary(let p, _, _),
             .unsupported(let p, _), .inconsistentCapture(_, let p, _), .cannotStop(_, let p, _, _):
            return p
        case .mapsSmapsMismatch(let m, _, _, _, _):
            return m
        case .invalidArgument:
            return ""
        }
    }

    /// Byte offset for binary-file errors.
    public var offset: Int? {
        if case .malformedBinary(_, let o, _) = self { return o }
        return nil
    }

    /// 1-based line number for text-file errors (the maps line for mismatches).
    public var line: Int? {
        switch self {
        case .malformedText(_, let l, _): return l
        case .mapsSmapsMismatch(_, _, let l, _, _): return l
        default: return nil
        }
    }

    public var reason: String {
        switch self {
        case .permissionDenied(_, let r), .malformedText(_, _, let r), .malformedBinary(_, _, let r),
             .unsupported(_, let r), .inconsistentCapture(_, _, let r), .invalidArgument(let r),
             .ioFailure(_, _, _, let r), .mapsSmapsMismatch(_, _, _, _, let r), .cannotStop(_, _, _, let r):
            return r
        case .processNotFound(let pid, _): return "process \(pid) does not exist"
        case .fileMissing: return "file is missing"
        }
    }

    public var description: String {
        switch self {
        case .permissionDenied(let p, let r):
            return "\(p): permission denied: \(r)"
        case .processNotFound(let pid, let p):
            return "\(p): process \(pid) not found (exited or never existed)"
        case .fileMissing(let p):
            return "\(p): file is missing"
        case .ioFailure(let p, let op, let e, let r):
            return "\(p): \(op) failed (errno \(e)): \(r)"
        case .malformedText(let p, let l, let r):
            return "\(p):\(l): \(r)"
        case .malformedBinary(let p, let o, let r):
            return "\(p) at byte offset \(o): \(r)"
        case .mapsSmapsMismatch(let m, let s, let ml, let sl, let r):
            return "\(m):\(ml) and \(s):\(sl) disagree: \(r)"
        case .unsupported(let p, let r):
            return "\(p): unsupported: \(r)"
        case .inconsistentCapture(let pid, let p, let r):
            return "\(p): process \(pid) changed during capture: \(r)"
        case .cannotStop(let pid, let p, let e, let r):
            return "\(p): cannot stop process \(pid) with SIGSTOP (errno \(e)): \(r)"
        case .invalidArgument(let r):
            return "invalid argument: \(r)"
        }
    }

    /// Classifies an errno from an operation on `path` (pid is known when the
    /// path is under /proc/<pid>).
    static func fromErrno(_ err: Int32, path: String, operation: String, pid: Int32? = nil) -> SnapshotError {
        let text = String(cString: strerror(err))
        switch err {
        case EACCES, EPERM:
            return .permissionDenied(path: path, reason: "\(operation): \(text)")
        case ESRCH:
            if let pid { return .processNotFound(pid: pid, path: path) }
            return .ioFailure(path: path, operation: operation, errno: err, reason: text)
        case ENOENT:
            if let pid { return .processNotFound(pid: pid, path: path) }
            return .fileMissing(path: path)
        default:
            return .ioFailure(path: path, operation: operation, errno: err, reason: text)
        }
    }
}

extension SnapshotError {
    /// `error` as a `SnapshotError`: the reader and the rebuild throw only
    /// these, so anything else is a fault of this module, reported against
    /// the snapshot rather than lost.
    static func typed(_ error: any Error, in directory: String) -> SnapshotError {
        if let e = error as? SnapshotError { return e }
        return .unsupported(path: directory, reason: "unexpected error: \(error)")
    }
}
