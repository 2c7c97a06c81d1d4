#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PharosDurability
import PharosIndex
import PharosKernels
import PharosVectors

/// Bulk ingestion: batches read and encoded in parallel, committed strictly in order.
extension Shard {
    /// Upserts batches `0..<count` made by `batch`, keeping `inFlight` of them being read and
    /// encoded at once while committing them strictly in order (so a key repeated across
    /// batches ends with its last value, as with sequential upserts). `committed(i)` is called
    /// after batch i is durable. Stops at the first error and rethrows it; batches before it
    /// are durable, none after it is committed.
    public func upsertInOrder(count: Int, inFlight: Int = 2,
                              batch: @escaping @Sendable (Int) throws -> (keys: [String], vectors: Matrix, metadata: [[UInt8]]?),
                              committed: @escaping @Sendable (Int) -> Void = { _ in }) throws {
        precondition(inFlight >= 1, "at least one batch in flight")
        let turn = NSCondition()
        nonisolated(unsafe) var next = 0
        // The earliest failed batch and its error: batches before it still commit.
        nonisolated(unsafe) var failure: (index: Int, error: any Error)?
        // Plain threads, not a dispatch pool: a worker waiting for its turn must not hold a
        // pool thread that the other worker's parallel encoding needs.
        let done = DispatchGroup()
        // Checked as each batch enqueues: a write failing (this sequence's or another
        // writer's) ends the sequence there, even for a batch enqueued just after it.
        let failedWritesBefore = wal.failedWriteCount
        for worker in 0..<Swift.min(inFlight, Swift.max(1, count)) {
            done.enter()
            Thread { [self] in
                defer { done.leave() }
                var i = worker
                while i < count {
                    do {
                        let made = try batch(i)
                        let prepared = try prepareUpsert(keys: made.keys, vectors: made.vectors, metadata: made.metadata)
                        turn.lock()
                        while next != i && !(failure.map { $0.index < i } ?? false) { turn.wait() }
                        if failure.map({ $0.index < i }) ?? false {
                            turn.unlock()
                            return
                        }
                        // Enqueue in turn (LSN order = batch order), then let the next batch
                        // enqueue while this one waits: both can share one fsync.
                        let ticket: UInt64
                        do { ticket = try wal.enqueue(prepared.record, unlessWritesFailedSince: failedWritesBefore) } catch {
                            turn.unlock()
                            throw error
                        }
                        next += 1
                        turn.broadcast()
                        turn.unlock()
                        _ = try wal.wait(for: ticket)
                        scheduleMaintenanceIfNeeded()
                        committed(i)
                    } catch {
                        turn.withLock {
                            if failure.map({ i < $0.index }) ?? true { failure = (i, error) }
                            turn.broadcast()
                        }
                        return
                    }
                    i += inFlight
                }
            }.start()
        }
        done.wait()
        if let failure { throw failure.error }
    }
}
