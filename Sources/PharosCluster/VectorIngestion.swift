import Foundation
import PharosDurability
import PharosVectors
import PharosWire

/// `pharos ingest` as a library: a vector file upserted through the coordinator in batches,
/// a few in flight, with an optional checkpoint that records the acknowledged prefix of
/// batches (written atomically after each acknowledgement) so that a rerun resumes after it.
public struct VectorIngestion: Sendable {
    /// What a checkpoint records: how far the acknowledged prefix of batches reaches, and the
    /// input it refers to (a checkpoint of another file or batch size is refused).
    public struct Checkpoint: Codable, Equatable, Sendable {
        /// The vector file.
        public var vectors: String
        /// Its rows.
        public var rows: Int
        /// Rows per batch.
        public var batch: Int
        /// Batches acknowledged, counted from the first (a contiguous prefix).
        public var acknowledgedBatches: Int
    }

    /// What went in.
    public struct Summary: Sendable, Equatable {
        /// Rows sent by this run (a resumed run skips the checkpoint's).
        public var sent: Int
        /// Of those, rows that replaced a key already stored.
        public var replaced: Int
        /// Batches a checkpoint let this run skip.
        public var resumedAfterBatches: Int

        /// A summary.
        public init(sent: Int, replaced: Int, resumedAfterBatches: Int) {
            (self.sent, self.replaced, self.resumedAfterBatches) = (sent, replaced, resumedAfterBatches)
        }
    }

    /// An ingestion that cannot start or was refused, naming why.
    public struct IngestionError: Error, CustomStringConvertible {
        /// What is wrong.
        public var description: String
    }

    /// The vector file.
    public let vectors: String
    /// Key of each row (nil: `keyPrefix` + row number).
    public let keys: [String]?
    /// Key prefix of row numbers when `keys` is nil.
    public let keyPrefix: String
    /// Rows per request.
    public let batch: Int
    /// Requests in flight.
    public let inFlight: Int
    /// The checkpoint file, if any.
    public let checkpoint: String?

    /// An ingestion of `vectors`.
    public init(vectors: String, keys: [String]?, keyPrefix: String = "row-", batch: Int = 5000, inFlight: Int = 4, checkpoint: String? = nil) {
        self.vectors = vectors
        self.keys = keys
        self.keyPrefix = keyPrefix
        self.batch = Swift.max(1, batch)
        self.inFlight = Swift.max(1, inFlight)
        self.checkpoint = checkpoint
    }

    /// The checkpoint to resume from: the file's, when it refers to this input, else a fresh one.
    public func startingPoint(rows: Int) throws -> Checkpoint {
        let fresh = Checkpoint(vectors: vectors, rows: rows, batch: batch, acknowledgedBatches: 0)
        guard let checkpoint, let data = FileManager.default.contents(atPath: checkpoint) else { return fresh }
        guard let saved = try? JSONDecoder().decode(Checkpoint.self, from: data) else {
            throw IngestionError(description: "\(checkpoint) is not an ingest checkpoint")
        }
        guard saved.vectors == vectors, saved.rows == rows, saved.batch == batch else {
            throw IngestionError(description: "\(checkpoint) belongs to \(saved.vectors) (\(saved.rows) rows, batches of \(saved.batch)), not this run")
        }
        return saved
    }

    /// Upserts every batch not yet acknowledged through `client`; `progress(rowsDone, total)`
    /// after each acknowledgement.
    public func run(through client: WireClient, progress: @escaping @Sendable (Int, Int) -> Void = { _, _ in }) async throws -> Summary {
        let reader = try VectorFileReader(path: vectors)
        let total = reader.count, size = batch
        if let keys, keys.count != total {
            throw IngestionError(description: "\(keys.count) keys for the \(total) rows of \(vectors)")
        }
        let start = try startingPoint(rows: total)
        let first = start.acknowledgedBatches, batches = (total + size - 1) / size
        var saved = start, finished = Set<Int>(), done = Swift.min(total, first * size), replaced = 0, next = first
        let (keys, keyPrefix, vectors, checkpoint) = (self.keys, self.keyPrefix, self.vectors, self.checkpoint)
        try await withThrowingTaskGroup(of: (batch: Int, replaced: Int).self) { group in
            func submit(_ b: Int) throws {
                let rows = b * size ..< Swift.min(total, (b + 1) * size)
                let m = try reader.readRows(rows)
                let request = UpsertRequest(keys: rows.map { keys?[$0] ?? "\(keyPrefix)\($0)" }, vectors: m.values, dimension: m.columns)
                group.addTask {
                    do {
                        guard case let .upsertResult(_, replaced) = try await client.call(.upsert(request), timeout: .seconds(120)) else {
                            return (b, 0)
                        }
                        return (b, replaced)
                    } catch let error as WireError {
                        throw IngestionError(description: Self.inFile(error, vectors: vectors, firstRow: rows.lowerBound))
                    }
                }
            }
            while next < Swift.min(first + inFlight, batches) { try submit(next); next += 1 }
            while let (b, replacedInBatch) = try await group.next() {
                replaced += replacedInBatch
                done += Swift.min(total, (b + 1) * size) - b * size
                progress(done, total)
                // The checkpoint advances over the contiguous prefix of acknowledged batches.
                finished.insert(b)
                while finished.remove(saved.acknowledgedBatches) != nil { saved.acknowledgedBatches += 1 }
                if let checkpoint { try FileIO.writeAtomically(Array(try JSONEncoder().encode(saved)), to: checkpoint) }
                if next < batches { try submit(next); next += 1 }
            }
        }
        return Summary(sent: total - Swift.min(total, first * size), replaced: replaced, resumedAfterBatches: first)
    }

    /// A refusal of the cluster, with the request's row numbers translated to rows of the file.
    public static func inFile(_ error: WireError, vectors: String, firstRow: Int) -> String {
        var text = error.message
        // "row 6" and "keys[6]" count rows of the request; the batch began at `firstRow`.
        if let match = text.firstMatch(of: /(?:row |keys\[)(\d+)/), let row = Int(match.1) {
            text += " (row \(firstRow + row) of \(vectors))"
        }
        return "the cluster refused a batch (\(error.code)): \(text)"
    }
}
