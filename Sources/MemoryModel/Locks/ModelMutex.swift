#if canImport(Glibc)
import Glibc
#endif

/// A value guarded by a `pthread_mutex_t`: the model's plainly locked state
/// (the frame allocator, the swap map and swap cache, page caches, the
/// address-space registry, the table arena's free lists).
///
/// The standard library's `Mutex` takes its fast path with atomics inside
/// the (uninstrumented) runtime, so ThreadSanitizer cannot see it order
/// anything and reports every access it guards as a race; pthread mutexes
/// are intercepted by TSan, which keeps the model's real races visible.
final class ModelMutex<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    init(_ value: Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        self.value = value
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
