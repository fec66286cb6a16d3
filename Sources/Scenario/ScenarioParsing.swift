// Entry points: bytes (or a file) in, a validated ScenarioDocument out.

import Foundation

extension ScenarioDocument {
    /// Reads, decodes and validates a scenario. Every rule of
    /// docs/SCENARIO.md is checked before anything is returned, so a document
    /// that comes back is safe to build.
    public static func parse(_ data: Data) throws(ScenarioError) -> ScenarioDocument {
        let json = try JSONReader.parse(data)
        let decoded = try ScenarioDecoder.decode(json)
        try ScenarioValidator.validate(decoded)
        return decoded.document
    }

    /// `parse(_:)` on the UTF-8 bytes of `text`.
    public static func parse(_ text: String) throws(ScenarioError) -> ScenarioDocument {
        try parse(Data(text.utf8))
    }

    /// `parse(_:)` on the contents of a file.
    public static func parse(contentsOf url: URL) throws(ScenarioError) -> ScenarioDocument {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw .unreadableFile(path: url.path, reason: error.localizedDescription)
        }
        return try parse(data)
    }
}

extension OperationSpec {
    /// Reads one op object of the scenario format (`{"op":"clear_refs",
    /// "kind":"young"}`), for an address space of `architecture` with
    /// `levels` paging levels and `numaNodes` nodes: what `ptwalk --apply`
    /// takes. Errors name the field as the document reader does, under
    /// `path`.
    public static func parse(_ text: String, architecture: ScenarioDocument.Architecture, levels: Int,
                             numaNodes: Int, path: String = "op") throws(ScenarioError) -> OperationSpec {
        let value = try JSONReader.parse(Data(text.utf8))
        let context = ScenarioDocument(architecture: architecture, levels: levels, numaNodes: numaNodes, processes: [])
        let (op, _) = try ScenarioDecoder.decodeOperation(value, path: path, document: context)
        if case .fork = op { throw .invalidValue(path: path, reason: "fork cannot be applied to a built process") }
        return op
    }
}
