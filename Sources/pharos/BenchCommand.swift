import ArgumentParser
import Foundation
import PharosCommandLine
import PharosIndex
import PharosVectors

extension IndexCommand {
    /// Machine-readable measurements for the side-by-side benchmark in `Benchmarks/`; the faiss
    /// runner there prints the same JSON shape.
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Train, add and search in one process; print one JSON line of timings and recall.")

        @Option(help: "Factory string.")
        var factory: String
        @Option(help: "Similarity: ip or l2.")
        var metric: Metric = .l2
        @Option(help: "Training vectors.")
        var train: String
        @Option(help: "Vectors to index.")
        var base: String
        @Option(help: "Query vectors.")
        var queries: String
        @Option(help: "Exact neighbour ids (.ivecs).")
        var truth: String
        @Option(help: "Comma-separated nprobe values to measure.")
        var nprobe: String = "1"
        @Option(name: .customShort("k"), help: "Neighbours per query.")
        var k: Int = 10
        @Option(help: "Refine factor (candidates re-ranked = factor x k).")
        var refineFactor: Int = 4
        @Option(help: "Worker threads for every phase.")
        var threads: Int = 1
        @Option(help: "Searches per nprobe value; the median time is reported.")
        var repeats: Int = 3
        @Option(help: "Use only the first N queries (and truth rows); 0 for all.")
        var queryLimit: Int = 0

        func run() throws {
            let trainSet = try VectorFileReader(path: train).readAll()
            let baseFile = try VectorFileReader(path: base)
            let queryFile = try VectorFileReader(path: queries)
            let truthFile = try VectorFileReader(path: truth)
            let used = queryLimit > 0 ? min(queryLimit, queryFile.count) : queryFile.count
            guard truthFile.count >= used else {
                throw ValidationError("\(truth) has \(truthFile.count) rows, fewer than the \(used) queries")
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
            print(String(format: "{\"engine\": \"pharos\", \"kernel\": \"%@\", \"factory\": \"%@\", \"threads\": %d, \"train_s\": %.3f, \"add_per_s\": %.1f, \"bytes_per_vector\": %d, \"rows\": [%@]}",
                         kernelLevelName(), factory, threads, trainSeconds, Double(baseRows.rows) / max(addSeconds, 1e-9),
                         index.bytesPerVector, rows.joined(separator: ", ")))
        }
    }
}
