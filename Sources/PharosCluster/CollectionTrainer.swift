import Foundation
import PharosIndex
import PharosVectors
import PharosWire

/// `pharos train` as a library: asks the coordinator for the collection's schema (it is the
/// authority; no local cluster file is read), prepares a sample in the collection's space
/// (learning its whitening first when asked), trains the configuration, and pushes the
/// trained state (and whitening) to the cluster.
public struct CollectionTrainer: Sendable {
    /// Where the collection's whitening comes from.
    public enum WhiteningSource: Sendable {
        /// None: the sample must already have the collection's dimension.
        case none
        /// Learned from the sample by PCA (`power` 0.5 whitens fully; `shrinkage` 0...1).
        case learnPCA(power: Float, shrinkage: Float)
        /// A whitening file's.
        case given(Whitening)
    }

    /// A trainer's result: what is pushed.
    public struct Trained: Sendable {
        /// The trained, empty index (a PHAROSIX container).
        public var indexFile: [UInt8]
        /// The collection's whitening, if any.
        public var whitening: Whitening?
        /// The factory string trained.
        public var factory: String
    }

    /// A trainer that fails naming what is wrong.
    public struct TrainingError: Error, CustomStringConvertible {
        /// What is wrong.
        public var description: String
    }

    /// The schema the coordinator answers.
    public let schema: CollectionSchema
    /// Worker threads for training.
    public let threads: Int
    /// Progress messages.
    public let report: @Sendable (String) -> Void

    /// A trainer for `schema` (from `fetchSchema`).
    public init(schema: CollectionSchema, threads: Int, report: @escaping @Sendable (String) -> Void) {
        self.schema = schema
        self.threads = threads
        self.report = report
    }

    /// The coordinator's schema of its collection.
    public static func fetchSchema(_ client: WireClient) async throws -> CollectionSchema {
        guard case let .schemaResult(schema) = try await client.call(.schema, timeout: .seconds(30)) else {
            throw TrainingError(description: "the coordinator did not answer Schema with a SchemaResult")
        }
        return schema
    }

    /// Trains on `sample` (rows of the vectors clients will send) in the collection's space.
    public func train(_ sample: Matrix, whitening source: WhiteningSource) throws -> Trained {
        guard let metric = Metric(rawValue: schema.metric) else {
            throw TrainingError(description: "the coordinator's metric \(schema.metric.debugDescription) is not l2 or ip")
        }
        let whitening: Whitening?
        switch source {
        case .none: whitening = nil
        case let .given(w): whitening = w
        case let .learnPCA(power, shrinkage):
            report("learning PCA whitening \(sample.columns) -> \(schema.dimension) on \(sample.rows) vectors...")
            whitening = try Whitening.learnPCA(sample, outputDimension: schema.dimension, power: power, shrinkage: shrinkage)
        }
        let space = try VectorSpace(dimension: schema.dimension, metric: metric, normalization: schema.normalize ? .l2 : .none,
                                    whitening: whitening)
        guard sample.columns == space.inputDimension else {
            throw TrainingError(description: whitening == nil
                ? "the sample holds \(sample.columns)-D vectors, the collection \(schema.dimension)-D (a whitening can reduce the dimension: --learn-whitening)"
                : "the whitening maps \(space.inputDimension)-D to \(schema.dimension)-D; the sample holds \(sample.columns)-D vectors")
        }
        let prepared = try space.prepare(sample)
        let index = try IndexFactory.make(schema.factory, dimension: schema.dimension, metric: metric)
        report("training \(schema.factory) on \(prepared.rows) x \(prepared.columns) with \(threads) threads...")
        try index.train(prepared, threads: threads)
        return Trained(indexFile: IndexFactory.encoded(index), whitening: whitening, factory: schema.factory)
    }

    /// Pushes `trained` through the coordinator (dropping the collection first when
    /// `replace`); returns the trained-state version every shard holds.
    public func push(_ trained: Trained, through client: WireClient, replace: Bool) async throws -> UInt64 {
        if replace {
            // Only once training succeeded: a failed run leaves the collection as it was.
            guard case let .dropResult(dropped) = try await client.call(.drop(confirm: trained.factory), timeout: .seconds(120)) else {
                throw TrainingError(description: "the coordinator did not confirm the drop")
            }
            report("dropped the collection (\(dropped) entries)")
        }
        let reply = try await client.call(.trainedState(indexFile: trained.indexFile, whitening: trained.whitening?.serialized() ?? []),
                                          timeout: .seconds(120))
        guard case let .trainedStateAck(version) = reply else { throw TrainingError(description: "unexpected reply \(reply.name)") }
        return version
    }
}
