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
        @Option(help: "Use at most this many training vectors: evenly spaced rows of --train (default: all), or a random sample of the base without --train (default 100000).")
        var trainCount: Int?
        @Option(help: "Output directory (created if needed).")
        var out: String
        @Option(help: "Worker threads.")
        var threads: Int = Parallel.defaultThreads

        func run() throws {
            let bar = ProgressBar("add", total: 0)
            let built = try IndexFiles.build(factory: factory, metric: metric, base: base, train: train, trainCount: trainCount, threads: threads,
                                             into: out, report: printError, progress: { bar.update($0, of: $1) })
            bar.finish()
            let index = built.index
            print(String(format: "built %@ over %d x %d: train %.2f s, add %.0f vectors/s, %d bytes/vector -> %@",
                         index.factoryString, index.count, index.dimension, built.trainSeconds,
                         Double(index.count) / max(built.addSeconds, 1e-9), index.bytesPerVector, out))
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
            let parameters = SearchParameters(nprobe: nprobe, refineFactor: refineFactor, threads: threads)
            let (count, seconds) = try IndexFiles.search(directory: index, queries: queries, k: k, parameters: parameters, out: out)
            print(String(format: "searched %d queries, k=%d, nprobe=%d, %d threads: %.1f QPS -> %@",
                         count, k, nprobe, threads, Double(count) / max(seconds, 1e-9), out))
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
            do {
                print(try IndexFiles.recall(result: result, truth: truth).map { String(format: "recall@%d %.4f", $0.at, $0.recall) }
                    .joined(separator: "  "))
            } catch let error as IndexFiles.MismatchedFiles {
                throw ValidationError(error.description)
            }
        }
    }
}
