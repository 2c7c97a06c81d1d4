import Foundation
import PharosVectors

/// An index built, searched and judged over files (`pharos index build/search/recall`):
/// vectors are read in bounded batches, the index is saved as its container.
public enum IndexFiles {
    /// Input vectors are added in batches of this many rows, to bound memory on large files.
    public static let addBatch = 100_000

    /// Two files that must agree and do not.
    public struct MismatchedFiles: Error, CustomStringConvertible {
        /// Which files, and how they differ.
        public var description: String
    }

    /// What a build took.
    public struct Built {
        /// The index, trained and filled.
        public var index: any VectorIndex
        /// Seconds of training and of adding.
        public var trainSeconds: Double, addSeconds: Double
    }

    /// Trains `factory` on `train` (at most `trainCount` evenly spaced rows; nil: all of them),
    /// or on a random sample of `trainCount` (default 100,000) rows of the base; adds
    /// every row of `base` under its row number, and saves the index in `directory`.
    public static func build(factory: String, metric: Metric, base: String, train: String?, trainCount: Int?, threads: Int,
                             into directory: String, report: (String) -> Void = { _ in },
                             progress: (Int, Int) -> Void = { _, _ in }) throws -> Built {
        let baseFile = try VectorFileReader(path: base)
        let index = try IndexFactory.make(factory, dimension: baseFile.dimension, metric: metric)
        let sample = try trainingSample(baseFile, train: train, size: trainCount)
        report("training \(factory) on \(sample.rows) vectors with \(threads) threads...")
        var clock = Date()
        try index.train(sample, threads: threads)
        let trainSeconds = Date().timeIntervalSince(clock)
        clock = Date()
        try baseFile.forEachBatch(of: addBatch) { batch, first in
            try index.add(batch, ids: (0..<Int64(batch.rows)).map { Int64(first) + $0 }, threads: threads)
            progress(first + batch.rows, baseFile.count)
        }
        let addSeconds = Date().timeIntervalSince(clock)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try IndexFactory.save(index, to: directory + "/" + IndexFile.fileName)
        return Built(index: index, trainSeconds: trainSeconds, addSeconds: addSeconds)
    }

    /// The rows of `train`, or a random sample (seeded) of `size` rows of the base.
    private static func trainingSample(_ baseFile: VectorFileReader, train: String?, size: Int?) throws -> Matrix {
        if let train {
            let reader = try VectorFileReader(path: train)
            return try size.map { try reader.readEvenlySpaced(atMost: $0) } ?? reader.readAll()
        }
        let size = size ?? 100_000
        if baseFile.count <= size { return try baseFile.readAll() }
        var rng = SplitMix64(seed: 17)
        var sample = Matrix(rows: 0, columns: baseFile.dimension)
        for row in rng.sample(size, from: baseFile.count) { sample.append(contentsOf: try baseFile.readRows(row..<row + 1)) }
        return sample
    }

    /// Searches the index saved in `directory` for every row of `queries` and writes the
    /// neighbour ids to `out` (.ivecs, -1 where fewer than k were found); returns the queries
    /// and the seconds the search took.
    public static func search(directory: String, queries: String, k: Int, parameters: SearchParameters,
                              out: String) throws -> (queries: Int, seconds: Double) {
        let loaded = try IndexFactory.load(from: directory + "/" + IndexFile.fileName)
        let q = try VectorFileReader(path: queries).readAll()
        let start = Date()
        let result = try loaded.search(q, k: k, parameters: parameters)
        let seconds = Date().timeIntervalSince(start)
        let writer = try VectorFileWriter(path: out, dimension: k)
        try writer.write(int32Rows: result.ids.map { Int32(truncatingIfNeeded: $0) })
        try writer.finish()
        return (q.rows, seconds)
    }

    /// Recall@1/10/100 of the ids in `result` against the exact neighbour ids in `truth`
    /// (both .ivecs over the same queries).
    public static func recall(result: String, truth: String) throws -> [(at: Int, recall: Double)] {
        let r = try VectorFileReader(path: result), t = try VectorFileReader(path: truth)
        guard r.count == t.count else {
            throw MismatchedFiles(description: "\(result) has \(r.count) rows but \(truth) has \(t.count): they must cover the same queries")
        }
        let ids = try r.readInt32Rows(0..<r.count).map(Int64.init)
        let truthIDs = try t.readInt32Rows(0..<t.count).map(Int64.init)
        return [1, 10, 100].filter { $0 <= r.dimension && $0 <= t.dimension }.map { at in
            (at, GroundTruth.recall(at: at, result: ids, resultK: r.dimension, truth: truthIDs, truthK: t.dimension))
        }
    }
}
