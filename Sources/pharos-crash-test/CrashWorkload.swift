import PharosIndex
import PharosRouting
import PharosStorage
import PharosVectors

/// The deterministic write sequence that crash tests run and check: batch `b` is always the
/// same operation, so a checker can recompute what any prefix of acknowledged batches stored.
struct CrashWorkload {
    enum Operation {
        case upsert([String])
        case delete([String])
        /// New keys stored as a bucket move's target stores them (`Shard.importEntries`).
        case importNew([String])
    }

    static let dimension = 16
    static let factory = "IVF16,PQ8x4fs,RefineSQ8"
    let seed: UInt64
    let batchSize: Int
    private let dataset: SyntheticDataset

    init(seed: UInt64, batchSize: Int) {
        self.seed = seed
        self.batchSize = batchSize
        dataset = SyntheticDataset(dimension: CrashWorkload.dimension, clusters: 32, normalized: false, seed: seed)
    }

    /// The trained, empty index shards of this workload start from.
    func trainedIndex() throws -> IVFPQIndex {
        let index = try IndexFactory.make(CrashWorkload.factory, dimension: CrashWorkload.dimension, metric: .l2) as! IVFPQIndex
        try index.train(dataset.vectors(0..<4000, stream: 999), threads: 1)
        return index
    }

    /// Batch `b`: mostly upserts of new keys with some replacements of older keys, three
    /// batches in ten delete older keys, and one in ten imports new keys.
    func operation(_ b: Int) -> Operation {
        var rng = SplitMix64(seed: seed &* 0x9e37_79b9_7f4a_7c15 &+ UInt64(b))
        func olderKey() -> String { "k\(rng.next() % UInt64(b))-\(rng.next() % UInt64(batchSize))" }
        let choice = rng.next() % 10
        if b > 0 && choice < 3 {
            return .delete((0..<Swift.max(1, batchSize / 4)).map { _ in olderKey() })
        }
        if choice == 9 { return .importNew((0..<batchSize).map { "k\(b)-\($0)" }) }
        return .upsert((0..<batchSize).map { i in b > 0 && rng.next() % 4 == 0 ? olderKey() : "k\(b)-\(i)" })
    }

    /// The vectors of batch `b` (row i goes with key i of an upsert).
    func vectors(_ b: Int) -> Matrix { dataset.vectors(b * batchSize ..< (b + 1) * batchSize, stream: seed) }

    func metadata(_ b: Int, row: Int) -> [UInt8] { Array("b\(b)r\(row)".utf8) }

    /// Runs batch `b` against `shard`.
    func run(_ b: Int, on shard: Shard) throws {
        switch operation(b) {
        case let .upsert(keys):
            try shard.upsert(keys: keys, vectors: vectors(b), metadata: keys.indices.map { metadata(b, row: $0) })
        case let .delete(keys):
            try shard.delete(keys: keys)
        case let .importNew(keys):
            var entries: [Shard.BucketEntry] = []
            let m = shard.index.layout.subquantizers, r = shard.index.layout.refineBytes
            try shard.index.encodeEntries(vectors(b), threads: 1).forEachEntry { row, list, code, refine in
                let stored = Shard.StoredEntry(list: list, code: Array(UnsafeBufferPointer(start: code, count: m)),
                                               refine: refine.map { Array(UnsafeBufferPointer(start: $0, count: r)) } ?? [],
                                               metadata: metadata(b, row: row))
                entries.append(Shard.BucketEntry(key: keys[row], hash: KeyHash.of(keys[row]), stored: stored))
            }
            // Rerun after a kill, an import may have been stored without its acknowledgement:
            // what is already there is this batch's own version (as a retried move drops the
            // bucket first, a rerun here imports only what is missing).
            try shard.importEntries(try entries.filter { try shard.entry(forKey: $0.key) == nil })
        }
    }
}

/// What a prefix of the workload stored: key -> (batch, row) of its live version.
struct CrashModel: Equatable {
    var live: [String: (batch: Int, row: Int)] = [:]
    /// Every key any applied batch touched.
    var touched: Set<String> = []

    static func == (a: CrashModel, b: CrashModel) -> Bool {
        a.touched == b.touched && a.live.count == b.live.count && a.live.allSatisfy { k, v in b.live[k].map { $0 == v } ?? false }
    }

    mutating func apply(_ b: Int, of workload: CrashWorkload) {
        switch workload.operation(b) {
        case let .upsert(keys), let .importNew(keys):
            for (row, key) in keys.enumerated() { live[key] = (b, row); touched.insert(key) }
        case let .delete(keys):
            for key in keys { live[key] = nil; touched.insert(key) }
        }
    }
}
