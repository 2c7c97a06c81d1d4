import ArgumentParser
import Foundation
import PharosBenchmarks
import PharosCommandLine
import PharosIndex

extension IndexCommand {
    /// Machine-readable measurements for the side-by-side benchmark in `Benchmarks/`
    /// (`IndexBenchmark`); the faiss runner there prints the same JSON shape.
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
            var bench = IndexBenchmark(factory: factory, train: train, base: base, queries: queries, truth: truth)
            (bench.metric, bench.nprobe, bench.k, bench.refineFactor, bench.threads, bench.repeats, bench.queryLimit) =
                (metric, nprobe, k, refineFactor, threads, repeats, queryLimit)
            print(try bench.run())
        }
    }
}
