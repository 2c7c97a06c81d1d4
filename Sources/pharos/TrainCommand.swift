import ArgumentParser
import Foundation
import PharosCluster
import PharosCommandLine
import PharosIndex
import PharosVectors

/// `pharos train`: trains the collection's configuration on a sample and pushes it to every
/// shard, optionally with a PCA whitening the coordinator then applies to every vector.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Train the collection on a sample; push the trained state to every shard.",
        discussion: """
            The coordinator says what the collection is (its Schema: dimension, metric, factory, \
            normalisation); no cluster file is read here. With --learn-whitening, a PCA whitening is learned \
            from the same sample first (or read from --whitening FILE), the index is trained on the \
            whitened sample, and the coordinator keeps the whitening and applies it to every query \
            and ingested vector. The whitening's output dimension must be the collection's \
            dimension; its input is the sample's.
            """)

    @OptionGroup var options: CoordinatorOptions
    @Option(help: "Training vectors (.fvecs/.bvecs/.npy).") var train: String
    @Option(help: "Use at most this many training vectors (evenly spaced).") var trainCount: Int = 100_000
    @Option(help: "Worker threads.") var threads: Int = Parallel.defaultThreads
    @Flag(help: "Learn a PCA whitening from the sample and make it the collection's.") var learnWhitening = false
    @Option(help: "Use this whitening file (PHXWHITN, from `pharos whiten learn`) instead of learning one.") var whitening: String?
    @Option(help: "With --learn-whitening: eigenvalue power (0.5 whitens fully, 0 is plain PCA).") var whiteningPower: Float = 0.5
    @Option(help: "With --learn-whitening: shrinkage of eigenvalues toward their mean, 0...1.") var whiteningShrinkage: Float = 0
    @Flag(help: "Drop the collection first (every entry, its trained state and whitening), then train anew. Without it a trained collection refuses a different trained state or whitening.")
    var replace = false

    func validate() throws {
        if learnWhitening && whitening != nil { throw ValidationError("--learn-whitening and --whitening FILE: give one (learn a whitening, or use one)") }
        guard trainCount > 0 else { throw ValidationError("--train-count \(trainCount): expected at least 1") }
    }

    func run() throws {
        let source: CollectionTrainer.WhiteningSource = try whitening.map { .given(try Whitening.load($0)) }
            ?? (learnWhitening ? .learnPCA(power: whiteningPower, shrinkage: whiteningShrinkage) : .none)
        let sample = try VectorFileReader(path: train).readEvenlySpaced(atMost: trainCount)
        let (threads, replace) = (self.threads, self.replace)
        let clock = Date()
        let (factory, version) = try options.withClient { client -> (String, UInt64) in
            let trainer = CollectionTrainer(schema: try await CollectionTrainer.fetchSchema(client), threads: threads, report: printError)
            let trained: CollectionTrainer.Trained
            do { trained = try trainer.train(sample, whitening: source) } catch let error as CollectionTrainer.TrainingError {
                throw ValidationError("\(error.description.replacingOccurrences(of: "the sample", with: train))")
            }
            return (trained.factory, try await trainer.push(trained, through: client, replace: replace))
        }
        print(String(format: "trained %@ in %.2f s; every shard holds trained state %llu", factory, Date().timeIntervalSince(clock), version))
    }
}
