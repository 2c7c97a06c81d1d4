import ArgumentParser
import PharosCommandLine
import PharosIndex
import PharosStorage
import PharosVectors

/// `pharos-shard create`: trains an index configuration on a sample and creates an empty shard.
struct CreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Train a configuration on a sample and create an empty shard.")

    @Option(help: "The new shard's data directory (must be new or empty).") var data: String
    @Option(help: "Factory string, e.g. IVF1024,PQ32x4fs,RefineSQ8.") var factory: String
    @Option(help: "Similarity: ip or l2.") var metric: Metric = .l2
    @Option(help: "Training vectors (.fvecs/.bvecs/.npy).") var train: String
    @Option(help: "Use at most this many training vectors (evenly spaced).") var trainCount: Int = 100_000
    @Option(help: "Worker threads.") var threads: Int = Parallel.defaultThreads

    func run() throws {
        let reader = try VectorFileReader(path: train)
        let sample = try reader.readEvenlySpaced(atMost: trainCount)
        guard let index = try IndexFactory.make(factory, dimension: reader.dimension, metric: metric) as? any InvertedFileIndex else {
            throw ValidationError("a shard needs an IVF/PQ configuration, not \(factory)")
        }
        printError("training \(factory) on \(sample.rows) x \(sample.columns) with \(threads) threads...")
        try index.train(sample, threads: threads)
        let shard = try Shard.create(at: data, trainedIndex: index)
        shard.close()
        print("created shard \(data): \(factory), \(metric.rawValue), \(reader.dimension)-D")
    }
}
