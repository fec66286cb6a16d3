import Foundation
import Synchronization
import MemoryModel
import PageWalk
import ProcFS

// Shared helpers of the reliability suites: a seeded generator, real
// threads with a stop flag and a watchdog, bounded-time execution, the
// environment knobs, and the fixture path.

let page: UInt64 = 4096
let mb: UInt64 = 1 << 20
let mb2: UInt64 = 2 << 20

func hx(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }


/// Environment knobs (CI runs the defaults).
enum Knobs {
    static func int(_ name: String) -> Int? {
        ProcessInfo.processInfo.environment[name].flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }
    static func uint(_ name: String) -> UInt64? {
        guard let s = ProcessInfo.processInfo.environment[name]?.trimmingCharacters(in: .whitespaces) else { return nil }
        if s.hasPrefix("0x") { return UInt64(s.dropFirst(2), radix: 16) }
        return UInt64(s)
    }
    static func double(_ name: String) -> Double? {
        ProcessInfo.processInfo.environment[name].flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }
    }
    /// Whether the binary was built with ThreadSanitizer (everything is
    /// several times slower there: budgets shrink accordingly).
    static let underTSan: Bool = {
        #if canImport(Glibc)
        return dlsym(nil, "__tsan_init") != nil   // RTLD_DEFAULT
        #else
        return false
        #endif
    }()
}

/// A set of real threads (dispatch's pool does not run enough of them on
/// two cores) that run until `stop` is set.
final class ThreadSet: @unchecked Sendable {
    let stop = Atomic<Bool>(false)
    private let group = DispatchGroup()
    private let running = Atomic<Int>(0)
    private(set) var count = 0

    func spawn(_ name: String, _ body: @escaping @Sendable (ThreadSet) -> Void) {
        group.enter()
        count += 1
        running.add(1, ordering: .relaxed)
        let t = Thread { [self] in
            body(self)
            running.subtract(1, ordering: .relaxed)
            group.leave()
        }
        t.name = name
        t.stackSize = 8 << 20
        t.start()
    }

    var shouldStop: Bool { stop.load(ordering: .relaxed) }

    /// Lets the threads run for `seconds`, then asks them to stop and waits
    /// up to `deadline` seconds (the watchdog). Returns false on a hang.
    func run(for seconds: Double, deadline: Double) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end { usleep(10_000) }
        stop.store(true, ordering: .relaxed)
        return group.wait(timeout: .now() + deadline) == .success
    }

    var stillRunning: Int { running.load(ordering: .relaxed) }
}

/// Runs `body` on its own thread and waits at most `seconds`: nil when it
/// did not finish (a hang), else what it returned. A hung body is left
/// running; the caller records the failure.
func withTimeout<R: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () -> R) -> R? {
    let result = Mutex<R?>(nil)
    let done = DispatchSemaphore(value: 0)
    let t = Thread {
        let r = body()
        result.withLock { $0 = r }
        done.signal()
    }
    t.stackSize = 16 << 20
    t.start()
    guard done.wait(timeout: .now() + seconds) == .success else { return nil }
    return result.withLock { $0 }
}
