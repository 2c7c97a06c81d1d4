import Foundation
import Logging
import NIOCore
import PharosIndex
import PharosWire
import Synchronization

/// The coordinator: clients speak the wire protocol to it as to one big shard.
///
/// - Search fans out to every shard with the request's deadline, merges their top-k lists,
///   and says plainly which shards are missing from a partial answer. Query expansion (AQE,
///   alpha-QE) runs a first round that returns the hits' vectors, builds new queries, and
///   searches again. Queries by key fetch the stored vector from the key's shard first. One
///   path does all of it, on event-loop futures (`Coordinator+Search.swift`).
/// - Upserts and deletes are split by key -> bucket -> shard and sent concurrently; an
///   acknowledgement means every shard involved acknowledged durably.
/// - It is the authority on the collection's `VectorSpace` (`Schema`): every query and
///   upserted vector is prepared in it before it reaches a shard, so shards only ever see
///   vectors of the collection's space. A pushed trained state goes to every shard; its
///   whitening, when it has one, stays here (kept in the state folder).
public final class Coordinator: WireService, Sendable {
    /// Deadlines of requests that give none, and where state is kept.
    public struct Options: Sendable {
        /// Searches without `deadline_ms`, fetches and statistics (reads answer quickly or
        /// not at all: a hung shard is named within this).
        public var searchDeadline: Duration = .seconds(5)
        /// Writes (upserts without `deadline_ms`, deletes) and administration (trained state,
        /// drop): long enough for a large batch's fsyncs, and below the 120 s that `pharos
        /// ingest` and `pharos train` wait, so the client hears why a write failed.
        public var writeDeadline: Duration = .seconds(60)
        /// A health probe of each shard.
        public var healthDeadline: Duration = .seconds(2)
        /// Where the coordinator keeps what it must not forget (the whitening); nil keeps nothing.
        public var stateDirectory: String?

        /// Defaults: 5 s searches, 60 s writes, 2 s health probes, no state folder.
        public init(searchDeadline: Duration = .seconds(5), writeDeadline: Duration = .seconds(60), stateDirectory: String? = nil) {
            self.searchDeadline = searchDeadline
            self.writeDeadline = writeDeadline
            self.stateDirectory = stateDirectory
        }
    }

    /// The cluster it routes over.
    public let map: ClusterMap
    /// Deadlines and the state folder.
    public let options: Options
    let links: [ShardLink]
    let logger: Logger
    let group: any EventLoopGroup
    /// The collection's space; its whitening changes when a trained state with one is pushed or dropped.
    let installedSpace: Mutex<VectorSpace>
    /// Serialises trained-state pushes and drops.
    let administration = AsyncGate()
    /// The collection's factory string in canonical form (as shards report it).
    let canonicalFactory: String

    /// File name of the kept whitening inside the state folder.
    public static let whiteningFileName = "whitening.phxw"

    /// A coordinator for `map`, connecting to shards on `group`. With a state folder, a
    /// whitening kept there by an earlier run is loaded (a damaged file is an error, never skipped).
    public init(map: ClusterMap, group: any EventLoopGroup, options: Options = Options(),
                logger: Logger = Logger(label: "pharos.coordinator")) throws {
        self.map = map
        self.options = options
        self.group = group
        self.links = map.shards.map { ShardLink(address: $0, group: group) }
        self.logger = logger
        // `ClusterMap.validate` made this index already, so it cannot fail for a loaded map.
        canonicalFactory = (try? IndexFactory.make(map.collection.factory, dimension: map.collection.dimension,
                                                   metric: map.collection.metric).factoryString) ?? map.collection.factory
        var whitening: Whitening?
        if let stateDirectory = options.stateDirectory {
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
            let path = stateDirectory + "/" + Self.whiteningFileName
            if FileManager.default.fileExists(atPath: path) { whitening = try Whitening.load(path) }
        }
        installedSpace = Mutex(try Self.space(of: map, whitening: whitening, source: options.stateDirectory.map { $0 + "/" + Self.whiteningFileName } ?? ""))
    }

    /// A coordinator keeping its state in `stateDirectory`, with default deadlines.
    public convenience init(map: ClusterMap, group: any EventLoopGroup, stateDirectory: String?,
                            logger: Logger = Logger(label: "pharos.coordinator")) throws {
        try self.init(map: map, group: group, options: Options(stateDirectory: stateDirectory), logger: logger)
    }

    /// The collection's space with `whitening`; a whitening of another output dimension is
    /// an `invalidArgument` naming `source`.
    static func space(of map: ClusterMap, whitening: Whitening?, source: String) throws -> VectorSpace {
        if let whitening, whitening.outputDimension != map.collection.dimension {
            throw WireError(.invalidArgument, "\(source): the whitening produces \(whitening.outputDimension)-D vectors, the collection holds \(map.collection.dimension)-D")
        }
        return try map.collection.space(whitening: whitening)
    }

    /// The collection's vector space now (with its whitening, once trained with one).
    public var space: VectorSpace { installedSpace.withLock { $0 } }

    /// The collection's whitening, once trained with one.
    public var whitening: Whitening? { space.whitening }

    /// The dimension of the vectors clients send: the whitening's input, or the collection's.
    public var inputDimension: Int { space.inputDimension }

    /// The collection's schema, as `Schema` answers it.
    public var schema: CollectionSchema {
        let space = self.space
        return CollectionSchema(dimension: space.dimension, metric: space.metric.rawValue, factory: map.collection.factory,
                                normalize: space.normalization == .l2, inputDimension: space.inputDimension, whitened: space.whitening != nil,
                                buckets: map.buckets, shardCount: map.shards.count)
    }

    public var serviceName: String { "coordinator of \(map.shards.count) shards" }

    public func respond(to message: WireMessage, reply: @escaping @Sendable (WireMessage) -> Void) {
        // Searches stay on the event loop end to end (no hop to the task pool and back, which
        // was most of the coordinator's added latency); everything else is async/await.
        if case let .search(request) = message {
            search(request, on: group.next()).whenComplete { result in
                switch result {
                case let .success(response): reply(.searchResult(response))
                case let .failure(error): reply(.error(Self.wireError(error)))
                }
            }
            return
        }
        Task { reply(await self.handle(message)) }
    }

    public func close() async {
        for link in links { await link.close() }
    }

    /// The reply to `message`.
    public func handle(_ message: WireMessage) async -> WireMessage {
        do {
            return try await reply(to: message)
        } catch {
            return .error(Self.wireError(error))
        }
    }

    static func wireError(_ error: any Error) -> WireError {
        error as? WireError ?? WireError(.internalError, "\(error)")
    }

    private func reply(to message: WireMessage) async throws -> WireMessage {
        switch message {
        case .hello:
            return .hello(Hello(role: .coordinator, nodeName: "coordinator"))
        case .schema:
            return .schemaResult(schema)
        case let .search(request):
            return .searchResult(try await search(request, on: group.next()).get())
        case let .upsert(request):
            let (written, replaced) = try await upsert(request)
            return .upsertResult(written: written, replaced: replaced)
        case let .delete(keys):
            return .deleteResult(deleted: try await delete(keys))
        case let .fetch(keys):
            return .fetchResult(try await fetch(keys, within: options.searchDeadline, on: group.next()).get())
        case .stats:
            return .statsResult(try await statistics())
        case .health:
            return try await health()
        case let .trainedState(file, whiteningFile):
            // One push or drop at a time: two pushes racing could each find the cluster
            // untrained and leave shards with different trained states.
            return try await administration.run { try await pushTrainedState(file, whiteningFile) }
        case let .drop(confirm):
            return .dropResult(droppedEntries: try await administration.run { try await drop(confirm: confirm) })
        case .bucketRead, .bucketWrite, .bucketDrop, .bucketCounts:
            throw WireError(.unsupported, "\(message.name) is a shard's to answer; the coordinator moves buckets itself")
        case .clusterStatus, .addNode, .removeNode, .rebalance:
            throw WireError(.unsupported, "\(message.name) is not served yet")
        case .searchResult, .upsertResult, .deleteResult, .fetchResult, .statsResult, .healthResult, .trainedStateAck, .dropResult,
             .schemaResult, .bucketEntries, .bucketCountsResult, .clusterStatusResult, .error:
            throw WireError(.unsupported, "\(message.name) is a reply, not a request the coordinator serves")
        }
    }

    /// The cluster's counts: every shard's, summed.
    private func statistics() async throws -> ShardStatistics {
        let space = self.space
        var total = ShardStatistics(liveEntries: 0, segments: 0, sealedEntries: 0, memoryEntries: 0,
                                    factory: map.collection.factory, dimension: space.inputDimension, trainedVersion: 0,
                                    metric: space.metric.rawValue)
        for (_, reply) in try await allOrNothing(links.indices.map { ($0, .stats) }, within: options.searchDeadline) {
            guard case let .statsResult(s) = reply else { continue }
            total.liveEntries += s.liveEntries
            total.segments += s.segments
            total.sealedEntries += s.sealedEntries
            total.memoryEntries += s.memoryEntries
            total.trainedVersion = s.trainedVersion
        }
        return total
    }

    /// Ready when every shard is; the status names each shard's state.
    private func health() async throws -> WireMessage {
        let replies = try await fanOut(links.indices.map { ($0, .health) }, within: options.healthDeadline, on: group.next()).get()
        var ready = true, lines: [String] = []
        for (i, outcome) in replies {
            switch outcome {
            case let .success(.healthResult(shardReady, status)):
                ready = ready && shardReady
                lines.append("\(map.shards[i].name): \(status)")
            case let .failure(error):
                ready = false
                lines.append("\(map.shards[i].name): \(error.message)")
            default:
                ready = false
            }
        }
        return .healthResult(ready: ready, status: lines.joined(separator: "; "))
    }
}
