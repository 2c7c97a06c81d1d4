import ArgumentParser
import Foundation
import PharosCommandLine
import PharosDatasets
import PharosIndex
import PharosVectors

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Prepare data sets: Fashion-MNIST, synthetic clustered vectors, exact neighbours, the labelled photo set.",
        subcommands: [FashionMNIST.self, Synthetic.self, Truth.self, PhotoSetCommand.self])
}

extension DataCommand {
    struct FashionMNIST: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "fashion-mnist",
            abstract: "Convert Debian's dataset-fashion-mnist to base/query .fvecs and exact top-100 (L2); cached.")

        @Option(help: "Folder of the IDX files.")
        var source: String = "/usr/share/datasets/fashion-mnist"
        @Option(help: "Output folder.")
        var out: String = "data/fashion-mnist"
        @Option(help: "Worker threads for the exact neighbours.")
        var threads: Int = Parallel.defaultThreads

        func run() throws {
            let bar = ProgressBar("exact neighbours", total: 0)
            let made = try DataSets.fashionMNIST(source: source, out: out, threads: threads) { bar.update($0, of: $1) }
            guard let base = made.base else { return print("cached: \(out)") }
            bar.finish()
            print("wrote \(out): base \(base.rows)x\(base.columns), queries \(made.queries), exact top-100")
        }
    }

    struct Synthetic: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate deterministic clustered vectors: train, base and query sets plus exact top-100.")

        @Option(help: "Base vectors.")
        var count: Int = 1_000_000
        @Option(help: "Training vectors (a separate draw from the same distribution).")
        var trainCount: Int = 100_000
        @Option(help: "Query vectors.")
        var queries: Int = 1_000
        @Option(help: "Dimension.")
        var dimension: Int = 128
        @Option(help: "Cluster centres.")
        var clusters: Int = 1_000
        @Option(help: "Noise standard deviation around a centre.")
        var spread: Float = 0.5
        @Flag(help: "L2-normalise vectors (GeM stand-in); ground truth then uses inner product.")
        var normalized = false
        @Option(help: "Seed.")
        var seed: UInt64 = 42
        @Option(help: "Output folder.")
        var out: String
        @Option(help: "Worker threads.")
        var threads: Int = Parallel.defaultThreads

        func validate() throws {
            for (flag, value, range) in [("--count", count, 1...1_000_000_000), ("--train-count", trainCount, 1...100_000_000),
                                         ("--queries", queries, 1...10_000_000), ("--dimension", dimension, 1...65536),
                                         ("--clusters", clusters, 1...10_000_000), ("--threads", threads, 1...1024)]
            where !range.contains(value) {
                throw ValidationError("\(flag) \(value): expected \(range.lowerBound)...\(range.upperBound)")
            }
            guard spread.isFinite, spread >= 0 else { throw ValidationError("--spread \(spread): expected a finite value >= 0") }
        }

        func run() throws {
            let set = DataSets.Synthetic(count: count, trainCount: trainCount, queries: queries, dimension: dimension, clusters: clusters,
                                         spread: spread, normalized: normalized, seed: seed)
            let bar = ProgressBar("generate", total: count)
            do {
                guard try DataSets.synthetic(set, out: out, threads: threads, progress: { bar.update($0) }) == .written else {
                    return print("cached: \(out)")
                }
            } catch let error as DataSets.DataSetError {
                throw ValidationError(error.description)
            }
            bar.finish()
            print("wrote \(out): base \(count)x\(dimension), train \(trainCount), queries \(queries), exact top-100 (\(set.metric.rawValue))")
        }
    }

    struct Truth: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Exact top-k neighbours of queries in a base file (.ivecs).")

        @Option(help: "Base vectors.")
        var base: String
        @Option(help: "Query vectors.")
        var queries: String
        @Option(name: .customShort("k"), help: "Neighbours per query.")
        var k: Int = 100
        @Option(help: "Similarity: ip or l2.")
        var metric: Metric = .l2
        @Option(help: "Output .ivecs.")
        var out: String
        @Option(help: "Worker threads.")
        var threads: Int = Parallel.defaultThreads

        func validate() throws {
            guard (1...SearchParameters.maximumK).contains(k) else { throw ValidationError("-k \(k): expected 1...\(SearchParameters.maximumK)") }
            guard (1...1024).contains(threads) else { throw ValidationError("--threads \(threads): expected 1...1024") }
        }

        func run() throws {
            let baseReader = try VectorFileReader(path: base), queryReader = try VectorFileReader(path: queries)
            guard baseReader.dimension == queryReader.dimension else {
                throw ValidationError("\(queries) holds \(queryReader.dimension)-D vectors, \(base) \(baseReader.dimension)-D: neighbours need one dimension")
            }
            guard k <= baseReader.count else { throw ValidationError("-k \(k): \(base) holds only \(baseReader.count) vectors") }
            let bar = ProgressBar("exact neighbours", total: baseReader.count)
            try DataSets.writeTruth(base: base, queries: try queryReader.readAll(), k: k, metric: metric, threads: threads, to: out) { bar.update($0) }
            bar.finish()
        }
    }
}
