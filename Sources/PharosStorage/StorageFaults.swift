import Foundation

/// Fault injection for tests: makes the next log or segment writes fail as a full disk would,
/// without needing a small file system.
public final class StorageFaults: @unchecked Sendable {
    // @unchecked: the counters are guarded by `lock`.
    private let lock = NSLock()
    private var failingWrites = 0
    private var failingSegmentWrites = 0
    private var logWriteDelay: UInt32 = 0

    /// No faults.
    public init() {}

    /// Makes the next `count` log appends fail with "No space left on device".
    public func failNextLogWrites(_ count: Int) {
        lock.withLock { failingWrites = count }
    }

    /// Makes the next `count` segment or manifest writes fail the same way.
    public func failNextSegmentWrites(_ count: Int) {
        lock.withLock { failingSegmentWrites = count }
    }

    /// Makes every log write take at least `milliseconds` longer, as a slow disk would (so
    /// tests can see writers pile up behind one fsync).
    public func delayLogWrites(milliseconds: Int) {
        lock.withLock { logWriteDelay = UInt32(milliseconds) * 1000 }
    }

    func applyLogWriteDelay() {
        let delay = lock.withLock { logWriteDelay }
        if delay > 0 { usleep(delay) }
    }

    func takeWriteFailure() -> String? {
        lock.withLock {
            guard failingWrites > 0 else { return nil }
            failingWrites -= 1
            return "No space left on device (injected)"
        }
    }

    func takeSegmentWriteFailure() -> String? {
        lock.withLock {
            guard failingSegmentWrites > 0 else { return nil }
            failingSegmentWrites -= 1
            return "No space left on device (injected)"
        }
    }
}
