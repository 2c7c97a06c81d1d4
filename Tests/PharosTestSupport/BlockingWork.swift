import Foundation

/// Runs blocking work (a socket read with a timeout, a long loop of them) on a thread of its
/// own. Async tests must not block the Swift concurrency pool: it has one thread per core, and
/// the in-process servers of every test running in parallel need it to answer at all.
public enum BlockingWork {
    /// The result of `body`, computed on a new thread.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }
}
