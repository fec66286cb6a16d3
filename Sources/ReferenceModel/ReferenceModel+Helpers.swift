import MemoryModel

/// Process lookups every reference operation starts from: the model acts on one
/// `AddressSpace`, the reference on one of its processes, so each operation first
/// resolves its pid (and, for rmap-style walks, the processes sharing its
/// anonymous memory).
extension ReferenceModel {
    func alive(_ pid: Int) throws(ModelError) -> ReferenceProcess {
        guard let p = processes.first(where: { $0.pid == pid }) else {
            throw .invalidArgument(name: "pid", reason: "no reference process \(pid)")
        }
        guard p.alive else { throw .tornDown }
        return p
    }

    func familyMembers(_ p: ReferenceProcess) -> [ReferenceProcess] {
        processes.filter { $0.family == p.family && $0.alive }
    }
}
