import ArgumentParser
import Foundation
import PharosCommandLine
import PharosIndex
import PharosVectors

struct IndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Build, search and evaluate a vector index over files.",
        subcommands: [Build.self, Search.self, Recall.self, Bench.self])
}

/// Input vectors are read in batches of this many rows, to bound memory on large files.
private let addBatch = 100_000

extension IndexCommand {
    struct Build: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Train an index on a sample of the base (or --train), add the base, save it to a directory.")

        @Option(help: "Factory string, e.g. Flat, IVF1024,PQ32, OPQ32,IVF4096,PQ32x4fs,RefineSQ8.")
        var factory: String
        @Option(help: "Similarity: ip (inner product) or l2 (squared Euclidean).")
        var metric: Metric = .l2
        @Option(help: "Vectors to index (.fvecs, .bvecs, .npy).")
        var base: String
        @Option(help: "Training vectors; default: a random sample of the base.")
        var train: String?
        @Option(help: "Size of the training sample drawn from the base when --train is not given.")
        var trainSize: Int = 100_000
        @Option(help: "Output directory (created if needed).")
        var out: String
        @Option(help: "Worker threads.")
        var threads: Int = Parallel.defaultThreads

        func run() throws {
            let baseFile = try VectorFileReader(path: base)
            let index = try IndexFactory.make(factory, dimension: baseFile.dimension, metric: metric)
            let sample = try trainingSample(baseFile)
            printError("training \(factory) on \(sample.rows) vectors with \(threads) threads...")
            let trainStart = Date()
            try index.train(sample, threads: threads)
            let trainSeconds = Date().timeIntervalSince(trainStart)
            let bar = ProgressBar("add", total: baseFile.count)
            let addStart = Date()
            try baseFile.forEachBatch(of: addBatch) { batch, first in
                try index.add(batch, ids: (0..<Int64(batch.rows)).map { Int64(first) + $0 }, threads: threads)
                bar.update(first + batch.rows)
            }
            bar.finish()
            let addSeconds = Date().timeIntervalSince(addStart)
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try IndexFactory.save(index, to: out + "/" + IndexFile.fileName)
            print(String(format: "built %@ over %d x %d: train %.2f s, add %.0f vectors/s, %d bytes/vector -> %@",
                         index.factoryString, index.count, index.dimension, trainSeconds,
                         Double(index.count) / max(addSeconds, 1e-9), index.bytesPerVector, out))
        }

        private func trainingSample(_ baseFile: VectorFileReader) throws -> Matrix {
            if let train { return try VectorFileReader(path: train).readAll() }
            if baseFile.count <= trainSize { return try baseFile.readAll() }
            var rng = SplitMix64(seed: 17)
            let rows = rng.sample(trainSize, from: baseFile.count)
            var sample = Matrix(rows: 0, columns: baseFile.dimension)
            // Read sampled rows in sorted runs to keep the I/O sequential-ish and bounded.
            for row in rows { sample.append(contentsOf: try baseFile.readRows(row..<row + 1)) }
            return sample
        }
    }

    struct Search: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Search an index for every query row; write neighbour ids as .ivecs and print QPS.")

        @Option(help: "Index directory written by 'pharos index build'.")
        var index: String
        @Option(help: "Query vectors (.fvecs, .bvecs, .npy).")
        var queries: String
        @Option(name: .customShort("k"), help: "Neighbours per query.")
        var k: Int = 10
        @Option(help: "Inverted lists visited per query.")
        var nprobe: Int = 16
        @Option(help: "With refine codes: re-rank refine-factor x k candidates.")
        var refineFactor: Int = 4
        @Option(help: "Worker threads.")
        var threads: Int = Parallel.defaultThreads
        @Option(help: "Output .ivecs file of neighbour ids (-1 where fewer than k were found).")
        var out: String

        func run() throws {
            let loaded = try IndexFactory.load(from: index + "/" + IndexFile.fileName)
            let q = try VectorFileReader(path: queries).readAll()
            let parameters = SearchParameters(nprobe: nprobe, refineFactor: refineFactor, threads: threads)
            let start = Date()
            let result = try loaded.search(q, k: k, parameters: parameters)
            let seconds = Date().timeIntervalSince(start)
            let writer = try VectorFileWriter(path: out, dimension: k)
            try writer.write(int32Rows: result.ids.map { Int32(truncatingIfNeeded: $0) })
            try writer.finish()
            print(String(format: "searched %d queries, k=%d, nprobe=%d, %d threads: %.1f QPS -> %@",
                         q.rows, k, nprobe, threads, Double(q.rows) / max(seconds, 1e-9), out))
        }
    }

    struct Recall: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Compare result ids with exact neighbours: recall@1/10/100 (k-NN recall).")

        @Option(help: "Result ids (.ivecs) from 'pharos index search'.")
        var result: String
        @Option(help: "Exact neighbour ids (.ivecs).")
        var truth: String

        func run() throws {
            let r = try VectorFileReader(path: result), t = try VectorFileReader(path: truth)
            guard r.count == t.count else {
                throw ValidationError("\(result) has \(r.count) rows but \(truth) has \(t.count): they must cover the same queries")
            }
            let ids = try r.readInt32Rows(0..<r.count).map(Int64.init)
            let truthIDs = try t.readInt32Rows(0..<t.count).map(Int64.init)
            var parts: [String] = []
            for at in [1, 10, 100] where at <= r.dimension && at <= t.dimension {
                let value = GroundTruth.recall(at: at, result: ids, resultK: r.dimension, truth: truthIDs, truthK: t.dimension)
                parts.append(String(format: "recall@%d %.4f", at, value))
            }
            print(parts.joined(separator: "  "))
        }
    }
}
