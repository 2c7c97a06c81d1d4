import Foundation
import PharosDurability
import PharosIndex
import PharosVectors

/// The vector data sets the benchmarks and tests use (`pharos data ...`): Fashion-MNIST from
/// Debian's package, deterministic synthetic clusters, and exact neighbours. Each set is
/// written whole or not at all (the ground truth, which marks it made, last).
public enum DataSets {
    /// A data set that cannot be made, naming why.
    public struct DataSetError: Error, CustomStringConvertible {
        /// What is wrong.
        public var description: String
    }

    /// What a call did: "cached" when the set was already there, else what it wrote.
    public enum Outcome: Sendable, Equatable {
        /// The set was already complete.
        case cached
        /// The set was written.
        case written
    }

    /// Writes `m` to a vector file (format from the extension).
    public static func write(_ m: Matrix, to path: String) throws {
        let w = try VectorFileWriter(path: path, dimension: m.columns)
        try w.write(m)
        try w.finish()
    }

    /// Computes and writes the exact top-`k` neighbours of `queries` in the file `base` (.ivecs).
    public static func writeTruth(base: String, queries: Matrix, k: Int, metric: Metric, threads: Int, to path: String,
                                  progress: @escaping @Sendable (Int) -> Void = { _ in }) throws {
        let reader = try VectorFileReader(path: base)
        let truth = try GroundTruth.compute(base: reader, queries: queries, k: k, metric: metric, threads: threads, progress: progress)
        let w = try VectorFileWriter(path: path, dimension: k)
        try w.write(int32Rows: truth.ids.map { Int32(truncatingIfNeeded: $0) })
        try w.finish()
    }

    /// Fashion-MNIST (Debian's `dataset-fashion-mnist` IDX files in `source`) as base and query
    /// `.fvecs` with exact top-100 (L2) under `out`.
    /// `progress(done, total)` while computing the neighbours.
    public static func fashionMNIST(source: String, out: String, threads: Int,
                                    progress: @escaping @Sendable (Int, Int) -> Void = { _, _ in }) throws -> (outcome: Outcome, base: Matrix?, queries: Int) {
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let truthPath = out + "/truth-l2-100.ivecs"
        if FileManager.default.fileExists(atPath: truthPath) { return (.cached, nil, 0) }
        let base = try IDXReader.readImages(path: source + "/train-images-idx3-ubyte.gz")
        let queries = try IDXReader.readImages(path: source + "/t10k-images-idx3-ubyte.gz")
        try write(base, to: out + "/base.fvecs")
        try write(queries, to: out + "/queries.fvecs")
        let rows = base.rows
        try writeTruth(base: out + "/base.fvecs", queries: queries, k: 100, metric: .l2, threads: threads, to: truthPath) { progress($0, rows) }
        return (.written, base, queries.rows)
    }

    /// A synthetic clustered set: what to generate.
    public struct Synthetic: Sendable {
        /// Base vectors.
        public var count: Int
        /// Training vectors (a separate draw from the same distribution).
        public var trainCount: Int
        /// Query vectors.
        public var queries: Int
        /// Dimension.
        public var dimension: Int
        /// Cluster centres.
        public var clusters: Int
        /// Noise standard deviation around a centre.
        public var spread: Float
        /// L2-normalised vectors; the ground truth then uses inner product.
        public var normalized: Bool
        /// Seed.
        public var seed: UInt64

        /// A synthetic set description.
        public init(count: Int, trainCount: Int, queries: Int, dimension: Int, clusters: Int, spread: Float, normalized: Bool, seed: UInt64) {
            self.count = count
            self.trainCount = trainCount
            self.queries = queries
            self.dimension = dimension
            self.clusters = clusters
            self.spread = spread
            self.normalized = normalized
            self.seed = seed
        }

        /// The metric its ground truth uses.
        public var metric: Metric { normalized ? .innerProduct : .l2 }
    }

    /// Writes `set` under `out` (base, train, queries, exact top-100); `progress(rows)` while
    /// generating the base.
    public static func synthetic(_ set: Synthetic, out: String, threads: Int,
                                 progress: (Int) -> Void = { _ in }) throws -> Outcome {
        let truthPath = out + "/truth-\(set.metric.rawValue)-100.ivecs"
        if FileManager.default.fileExists(atPath: truthPath) { return .cached }
        // Everything is written in a private folder first and moved in when complete, the
        // ground truth (what marks the set as made) last: a failed or killed run leaves
        // nothing half-written under its final name.
        let partial = out + "/.partial-\(getpid())"
        try FileManager.default.createDirectory(atPath: partial, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: partial) }
        let data = SyntheticDataset(dimension: set.dimension, clusters: set.clusters, spread: set.spread, normalized: set.normalized, seed: set.seed)
        let baseWriter = try VectorFileWriter(path: partial + "/base.fvecs", dimension: set.dimension)
        var done = 0
        while done < set.count {
            let n = Swift.min(100_000, set.count - done)
            try baseWriter.write(data.vectors(done..<done + n, stream: 0))
            done += n
            progress(done)
        }
        try baseWriter.finish()
        try write(data.vectors(0..<set.trainCount, stream: 1), to: partial + "/train.fvecs")
        let q = data.vectors(0..<set.queries, stream: 2)
        try write(q, to: partial + "/queries.fvecs")
        let truthName = (truthPath as NSString).lastPathComponent
        try writeTruth(base: partial + "/base.fvecs", queries: q, k: Swift.min(100, set.count), metric: set.metric, threads: threads,
                       to: partial + "/" + truthName)
        for name in ["base.fvecs", "train.fvecs", "queries.fvecs", truthName] {
            guard rename(partial + "/" + name, out + "/" + name) == 0 else {
                throw DataSetError(description: "cannot move \(name) into \(out): \(FileIO.errnoText())")
            }
        }
        FileIO.syncDirectory(containing: truthPath)
        return .written
    }
}
