import Foundation
import PharosVectors

/// A vector file into a shard (`pharos-shard ingest`): durable upserts in batches, two in
/// flight (one encodes while the other is logged), then a seal.
extension Shard {
    /// Upserts every row of `vectorFile` under `keys[row]` (or `keyPrefix` + row); returns
    /// the rows written. `progress(rowsDone, rows)` after each durable batch.
    @discardableResult
    public func ingest(vectorFile: String, keys: [String]?, keyPrefix: String = "row-", batch: Int = 10_000,
                       progress: @escaping @Sendable (Int, Int) -> Void = { _, _ in }) throws -> Int {
        let reader = try VectorFileReader(path: vectorFile)
        let total = reader.count, size = Swift.max(1, batch)
        if let keys, keys.count != total {
            throw StorageError.invalidInput(field: "keys", problem: "\(keys.count) keys for the \(total) rows of \(vectorFile)")
        }
        try upsertInOrder(count: (total + size - 1) / size, inFlight: 2, batch: { b in
            let rows = b * size ..< Swift.min(total, (b + 1) * size)
            return (rows.map { keys?[$0] ?? "\(keyPrefix)\($0)" }, try reader.readRows(rows), nil)
        }, committed: { b in progress(Swift.min(total, (b + 1) * size), total) })
        try seal()
        return total
    }
}
