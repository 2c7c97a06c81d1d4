import Foundation
import PharosIndex
import PharosKernels
import PharosVectors

/// The engine's side-by-side measurement (`pharos index bench`): train, add and search in one
/// process, one JSON line of timings and recall; the faiss and ScaNN runners in `Benchmarks/`
/// print the same shape.
public struct IndexBenchmark: Sendable {
    /// Factory string.
    public var factory: String
    /// Similarity: ip or l2.
    public var metric: Metric = .l2
    /// Training vectors.
    public var train: String
    /// Vectors to index.
    public var base: String
    /// Query vectors.
    public var queries: String
    /// Exact neighbour ids (.ivecs).
    public var truth: String
    /// Comma-separated nprobe values to measure.
    public var nprobe: String = "1"
    /// Neighbours per query.
    public var k: Int = 10
    /// Refine factor (candidates re-ranked = factor x k).
    public var refineFactor: Int = 4
    /// Worker threads for every phase.
    public var threads: Int = 1
    /// Searches per nprobe value; the median time is reported.
    public var repeats: Int = 3
    /// Use only the first N queries (and truth rows); 0 for all.
    public var queryLimit: Int = 0

    /// A benchmark of `factory` on these files.
    public init(factory: String, train: String, base: String, queries: String, truth: String) {
        (self.factory, self.train, self.base, self.queries, self.truth) = (factory, train, base, queries, truth)
    }

    /// Runs it; the JSON line.
    public func run() throws -> String {
        let trainSet = try VectorFileReader(path: train).readAll()
        let baseFile = try VectorFileReader(path: base)
        let queryFile = try VectorFileReader(path: queries)
        let truthFile = try VectorFileReader(path: truth)
        let used = queryLimit > 0 ? min(queryLimit, queryFile.count) : queryFile.count
        guard truthFile.count >= used else {
            throw IndexError.invalidParameter(name: "truth rows", value: "\(truthFile.count)", allowed: "at least the \(used) queries of \(truth)")
        }
        let queryRows = try queryFile.readRows(0..<used)
        let truthIDs = try truthFile.readInt32Rows(0..<used).map(Int64.init)
        let baseRows = try baseFile.readAll()

        let index = try IndexFactory.make(factory, dimension: baseFile.dimension, metric: metric)
        var clock = Date()
        try index.train(trainSet, threads: threads)
        let trainSeconds = Date().timeIntervalSince(clock)
        clock = Date()
        try index.add(baseRows, ids: nil, threads: threads)
        let addSeconds = Date().timeIntervalSince(clock)

        var rows: [String] = []
        for probe in nprobe.split(separator: ",").compactMap({ Int($0) }) {
            let parameters = SearchParameters(nprobe: probe, refineFactor: refineFactor, threads: threads)
            var times: [Double] = []
            var result: SearchResult?
            for _ in 0..<max(1, repeats) {
                clock = Date()
                result = try index.search(queryRows, k: k, parameters: parameters)
                times.append(Date().timeIntervalSince(clock))
            }
            let median = times.median
            let ids = result!.ids
            let r1 = GroundTruth.recall(at: 1, result: ids, resultK: k, truth: truthIDs, truthK: truthFile.dimension)
            let r10 = k >= 10 ? GroundTruth.recall(at: 10, result: ids, resultK: k, truth: truthIDs, truthK: truthFile.dimension) : -1
            rows.append(String(format: "{\"nprobe\": %d, \"qps\": %.2f, \"recall1\": %.4f, \"recall10\": %.4f}",
                               probe, Double(queryRows.rows) / median, r1, r10))
        }
        return String(format: "{\"engine\": \"pharos\", \"kernel\": \"%@\", \"factory\": \"%@\", \"threads\": %d, \"train_s\": %.3f, \"add_per_s\": %.1f, \"bytes_per_vector\": %d, \"rows\": [%@]}",
                     String(cString: pharos_kernel_level_name()), factory, threads, trainSeconds, Double(baseRows.rows) / max(addSeconds, 1e-9),
                     index.bytesPerVector, rows.joined(separator: ", "))
    }
}
