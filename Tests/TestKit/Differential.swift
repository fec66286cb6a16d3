import MemoryModel
import PageWalk

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
public func compareOutcomes(real: () throws -> Void, ref: () throws -> Void, rejected: inout Int) -> String? {
    var re: Error?, fe: Error?
    do { try real() } catch { re = error }
    do { try ref() } catch { fe = error }
    switch (re, fe) {
    case (nil, nil): return nil
    case (let r?, let f?):
        rejected += 1
        return errorKind(r) == errorKind(f) ? nil : "errors differ: real \(r), reference \(f)"
    case (let r?, nil): return "real threw \(r), reference did not"
    case (nil, let f?): return "reference threw \(f), real did not"
    }
}
