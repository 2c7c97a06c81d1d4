import Foundation

/// Runs async sections one at a time, in arrival order: an actor would not do, since it lets
/// another call in at every suspension point.
final class AsyncGate: @unchecked Sendable {
    // @unchecked: `busy` and `waiters` are guarded by `lock`.
    private let lock = NSLock()
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    /// `body`, once every section that entered before it has left.
    func run<T>(_ body: () async throws -> T) async rethrows -> T {
        await enter()
        defer { leave() }
        return try await body()
    }

    private func enter() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            lock.lock()
            if busy {
                waiters.append(continuation)
                lock.unlock()
            } else {
                busy = true
                lock.unlock()
                continuation.resume()
            }
        }
    }

    private func leave() {
        lock.lock()
        guard !waiters.isEmpty else {
            busy = false
            lock.unlock()
            return
        }
        let next = waiters.removeFirst()
        lock.unlock()
        next.resume()
    }
}
