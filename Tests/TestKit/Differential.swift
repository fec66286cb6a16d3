import MemoryModel
import PageWalk
#if canImport(Glibc)
import Glibc
#endif

/// The kind of a model error (its case name; errors are compared by case,
/// not by text), seen through a `PageWalkError.model` wrapper.
public func errorKind(_ e: Error) -> String {
    if let w = e as? PageWalkError {
        if case .model(let m) = w { return errorKind(m) }
        return "walk"
    }
    guard let m = e as? ModelError else { return "\(type(of: e))" }
    return Mirror(reflecting: m).children.first?.label ?? "\(m)"
}

/// Runs one operation on the model (`real`) and on the reference model
/// (`ref`). Nil when both succeed, or both refuse it with an error of the
/// same kind (counted in `rejected`); otherwise what differs.
public func compareOutcomes(real: () throws -> Void, ref: () throws -> Void, rejected: inout Int,
                            kind: (Error) -> String = errorKind) -> String? {
    var re: Error?, fe: Error?
    do { try real() } catch { re = error }
    do { try ref() } catch { fe = error }
    switch (re, fe) {
    case (nil, nil): return nil
    case (let r?, let f?):
        rejected += 1
        return kind(r) == kind(f) ? nil : "errors differ: real \(r), reference \(f)"
    case (let r?, nil): return "real threw \(r), reference did not"
    case (nil, let f?): return "reference threw \(f), real did not"
    }
}

/// What a guard-region madvise failure amounts to, on either side: the
/// errno for the walker's `MadviseError` and for the reference's
/// `ModelError` that stands for the same refusal (-EINVAL: a bad range or
/// VMA; -ENOMEM: a gap), else the error's kind.
public func madviseOutcomeKind(_ e: Error) -> String {
    if let m = e as? MadviseError {
        if case .walk(.model(let inner)) = m { return madviseOutcomeKind(inner) }
        return "errno \(m.errno)"
    }
    if let m = e as? ModelError {
        switch m {
        case .unaligned, .invalidRange, .wrongVMAKind, .invalidArgument: return "errno \(-EINVAL)"
        case .noVMA: return "errno \(-ENOMEM)"
        default: break
        }
    }
    return errorKind(e)
}

/// `compareOutcomes` for a guard-region madvise: both succeed, or both fail
/// with the same errno (the states are compared afterwards, so a partial
/// install must match too).
public func compareMadviseOutcomes(real: () throws -> Void, ref: () throws -> Void, rejected: inout Int) -> String? {
    compareOutcomes(real: real, ref: ref, rejected: &rejected, kind: madviseOutcomeKind)
}
