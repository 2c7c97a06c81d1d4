#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PharosDurability
import PharosIndex
import PharosKernels
import PharosVectors

/// Writes: upsert (validate, encode, log, apply), delete, and applying a durable log record.
extension Shard {
    /// Inserts or replaces `keys[i]` with `vectors` row i (and `metadata[i]`); returns once
    /// the batch is durable. Nothing is stored when it throws.
    /// Returns how many of the keys replaced an entry already stored.
    @discardableResult
    public func upsert(keys: [String], vectors: Matrix, metadata: [[UInt8]]? = nil) throws -> Int {
        try commit(try prepareUpsert(keys: keys, vectors: vectors, metadata: metadata))
    }

    /// A validated, encoded batch, ready for `commit`.
    public struct PreparedUpsert: Sendable {
        let record: WriteAheadLog.PreparedRecord
        /// Rows in the batch.
        public let count: Int
    }

    /// The first half of `upsert`: checks the batch against every limit and encodes it.
    /// Safe to run for several batches at once (on other threads) while others commit.
    public func prepareUpsert(keys: [String], vectors: Matrix, metadata: [[UInt8]]? = nil) throws -> PreparedUpsert {
        try checkOpen()
        try Shard.validate(keys: keys)
        guard vectors.rows == keys.count else {
            throw StorageError.invalidInput(field: "vectors", problem: "\(vectors.rows) vectors for \(keys.count) keys")
        }
        let values = metadata ?? Array(repeating: [], count: keys.count)
        guard values.count == keys.count else {
            throw StorageError.invalidInput(field: "metadata", problem: "\(values.count) values for \(keys.count) keys")
        }
        if let i = values.firstIndex(where: { $0.count > StorageLimits.maximumMetadataBytes }) {
            throw StorageError.invalidInput(field: "metadata", problem: "value \(i) holds \(values[i].count) bytes, at most \(StorageLimits.maximumMetadataBytes)")
        }
        let entries = try index.encodeEntries(vectors, threads: options.encodeThreads)
        return PreparedUpsert(record: try WriteAheadLog.prepare(.upsert(keys: keys, entries: entries, metadata: values)), count: keys.count)
    }

    /// The second half of `upsert`: logs the batch and returns once it is durable and
    /// applied. Batches committed one after another take effect in that order.
    /// Returns how many of its keys replaced an entry already stored.
    @discardableResult
    public func commit(_ prepared: PreparedUpsert) throws -> Int {
        try checkOpen()
        let replaced = try wal.wait(for: try wal.enqueue(prepared.record))
        scheduleMaintenanceIfNeeded()
        return replaced
    }

    /// Deletes `keys` (absent ones are ignored); returns how many were present. Durable on return.
    @discardableResult
    public func delete(keys: [String]) throws -> Int {
        try checkOpen()
        try Shard.validate(keys: keys)
        let deleted = try wal.append(.delete(keys: keys))
        scheduleMaintenanceIfNeeded()
        return deleted
    }

    func checkOpen() throws {
        if scheduleLock.withLock({ isClosed }) { throw StorageError.closed }
    }

    static func validate(keys: [String]) throws {
        guard keys.count <= StorageLimits.maximumBatchRows else {
            throw StorageError.invalidInput(field: "batch", problem: "\(keys.count) rows, at most \(StorageLimits.maximumBatchRows)")
        }
        for (i, key) in keys.enumerated() {
            let bytes = key.utf8.count
            guard bytes > 0 else { throw StorageError.invalidInput(field: "key \(i)", problem: "empty key") }
            guard !key.utf8.contains(0) else {
                throw StorageError.invalidInput(field: "key \(i)", problem: "contains a NUL byte (keys travel as C strings on the wire)")
            }
            guard bytes <= StorageLimits.maximumKeyBytes else {
                throw StorageError.invalidInput(field: "key \(i)", problem: "\(bytes) bytes of UTF-8, at most \(StorageLimits.maximumKeyBytes)")
            }
        }
    }

    /// Applies a durable record to memory (caller holds the write lock, or is `init`).
    /// Returns the number of keys deleted (delete) or replaced (upsert).
    func applyUnlocked(_ record: LogRecord) -> Int {
        switch record {
        case let .upsert(keys, entries, metadata):
            var replaced = 0
            entries.forEachEntry { row, list, code, refine in
                if removeLive(keys[row]) { replaced += 1 }
                growing.add(key: keys[row], list: list, code: code, refine: refine, metadata: metadata[row])
            }
            return replaced
        case let .delete(keys):
            return keys.reduce(0) { $0 + (removeLive($1) ? 1 : 0) }
        }
    }

    /// Marks the live version of `key` deleted, wherever it is.
    @discardableResult
    func removeLive(_ key: String) -> Bool {
        if let o = growing.find(key) { return growing.delete(o) }
        if let s = sealing, let o = s.find(key) { return s.delete(o) }
        for segment in sealed.reversed() {
            do {
                if let p = try segment.find(key) { return segment.deletions.delete(p) }
            } catch {
                // The record is already durable: report the damage; reads of this segment
                // will fail with it until it is repaired.
                options.log("cannot look up key \(key.debugDescription) while applying a write: \(error)")
            }
        }
        return false
    }
}
