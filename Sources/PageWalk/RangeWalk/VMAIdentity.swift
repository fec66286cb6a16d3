/// The identity of a walked entry's VMA (none outside VMAs), for telling
/// cheaply whether consecutive entries share one.
public struct VMAIdentity: Hashable {
    @usableFromInline let pointer: UnsafeRawPointer?
    @inlinable init(pointer: UnsafeRawPointer?) { self.pointer = pointer }
    /// Never equal to an entry's: what a loop compares its first entry with.
    @inlinable public static var unset: VMAIdentity { VMAIdentity(pointer: UnsafeRawPointer(bitPattern: 1)) }
}
