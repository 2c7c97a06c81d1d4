import PharosDurability
import ArgumentParser
import Foundation
import PharosCommandLine
import PharosIndex
import PharosVectors

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Prepare data sets: Fashion-MNIST, synthetic clustered vectors, exact neighbours, the labelled photo set.",
        subcommands: [FashionMNIST.self, Synthetic.self, Truth.self, PhotoSetCommand.self])
}

/// Writes a matrix to a vector file (format from the extension).
private func write(_ m: Matrix, to path: String) throws {
    let w = try VectorFileWriter(path: path, dimension: m.columns)
    try w.write(m)
    try w.finish()
}

/// Computes and writes exact top-k neighbours of `queries` in `base`.
private func writeTruth(base: String, queries: Matrix, k: Int, metric: Metric, threads: Int, to path: String) throws {
    let reader = try VectorFileReader(path: base)
    let bar = ProgressBar("exact neighbours", total: reader.count)
    let truth = try GroundTruth.compute(base: reader, queries: queries, k: k, metric: metric, threads: threads) { bar.update($0) }
    bar.finish()
    let w = try VectorFileWriter(path: path, dimension: k)
    try w.write(int32Rows: truth.ids.map { Int32(truncatingIfNeeded: $0) })
    try w.finish()
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
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let truthPath = out + "/truth-l2-100.ivecs"
            if FileManager.default.fileExists(atPath: truthPath) {
                print("cached: \(out)")
                return
            }
            let base = try IDXReader.readImages(path: source + "/train-images-idx3-ubyte.gz")
            let queries = try IDXReader.readImages(path: source + "/t10k-images-idx3-ubyte.gz")
            try write(base, to: out + "/base.fvecs")
            try write(queries, to: out + "/queries.fvecs")
            try writeTruth(base: out + "/base.fvecs", queries: queries, k: 100, metric: .l2, threads: threads, to: truthPath)
            print("wrote \(out): base \(base.rows)x\(base.columns), queries \(queries.rows), exact top-100")
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
            let metric: Metric = normalized ? .innerProduct : .l2
            let truthPath = out + "/truth-\(metric.rawValue)-100.ivecs"
            if FileManager.default.fileExists(atPath: truthPath) {
                print("cached: \(out)")
                return
            }
            // Everything is written in a private folder first and moved in when complete, the
            // ground truth (what marks the set as made) last: a failed or killed run leaves
            // nothing half-written under its final name.
            let partial = out + "/.partial-\(getpid())"
            try FileManager.default.createDirectory(atPath: partial, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: partial) }
            let data = SyntheticDataset(dimension: dimension, clusters: clusters, spread: spread, normalized: normalized, seed: seed)
            let baseWriter = try VectorFileWriter(path: partial + "/base.fvecs", dimension: dimension)
            let bar = ProgressBar("generate", total: count)
            var done = 0
            while done < count {
                let n = min(100_000, count - done)
                try baseWriter.write(data.vectors(done..<done + n, stream: 0))
                done += n
                bar.update(done)
            }
            try baseWriter.finish()
            bar.finish()
            try write(data.vectors(0..<trainCount, stream: 1), to: partial + "/train.fvecs")
            let q = data.vectors(0..<queries, stream: 2)
            try write(q, to: partial + "/queries.fvecs")
            let truthName = (truthPath as NSString).lastPathComponent
            try writeTruth(base: partial + "/base.fvecs", queries: q, k: min(100, count), metric: metric, threads: threads, to: partial + "/" + truthName)
            for name in ["base.fvecs", "train.fvecs", "queries.fvecs", truthName] {
                guard rename(partial + "/" + name, out + "/" + name) == 0 else {
                    throw ValidationError("cannot move \(name) into \(out): \(String(cString: strerror(errno)))")
                }
            }
            FileIO.syncDirectory(containing: truthPath)
            print("wrote \(out): base \(count)x\(dimension), train \(trainCount), queries \(queries), exact top-100 (\(metric.rawValue))")
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
            try writeTruth(base: base, queries: try queryReader.readAll(), k: k, metric: metric, threads: threads, to: out)
        }
    }
}
