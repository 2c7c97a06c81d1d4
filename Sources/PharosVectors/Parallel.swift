import Dispatch
import Foundation

/// Splits work into fixed chunks and runs them on up to `threads` workers.
///
/// Chunk boundaries depend only on `count` and `chunkSize`, never on the thread count, and
/// each chunk writes only its own outputs, so results are identical for any thread count.
public enum Parallel {
    /// The default worker count: the number of active processors.
    public static var defaultThreads: Int { ProcessInfo.processInfo.activeProcessorCount }

    /// Calls `body(range)` for each chunk `[s, min(s + chunkSize, count))`, from `threads` workers.
    public static func forEachChunk(
        count: Int, chunkSize: Int, threads: Int,
        _ body: @Sendable (Range<Int>) -> Void
    ) {
        precondition(chunkSize > 0, "chunk size must be positive")
        guard count > 0 else { return }
        let chunks = (count + chunkSize - 1) / chunkSize
        let workers = Swift.max(1, Swift.min(threads, chunks))
        if workers == 1 {
            for c in 0..<chunks { body(c * chunkSize ..< Swift.min(count, (c + 1) * chunkSize)) }
            return
        }
        // Worker w takes chunks w, w + workers, ...: static, so no shared counter is needed.
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            var c = w
            while c < chunks {
                body(c * chunkSize ..< Swift.min(count, (c + 1) * chunkSize))
                c += workers
            }
        }
    }
}
