import Foundation
import Logging
import NIOCore
import PharosDurability
import PharosIndex
import PharosObservability
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
        /// Where the coordinator keeps what it must not forget (the cluster map, the trained
        /// state, the whitening); nil keeps nothing (the map lives in memory only).
        public var stateDirectory: String?
        /// Serving copies that must acknowledge a write when others are unreachable (those are
        /// marked down); writes to a bucket with fewer copies up fail.
        public var minimumWriteCopies = 1
        /// Run the background mover (repairs, drains, rebalances). Tests that step the mover
        /// themselves turn it off.
        public var runsMover = true
        /// Which hosts `AddNode` may name (the coordinator connects to them).
        public var nodeHosts = NodeHostPolicy.knownAndLoopback
        /// The coordinator's zone label: reads prefer copies on nodes of this zone (empty: none).
        public var zone = ""
        /// Keep the map in etcd, shared by several coordinators (nil: the state folder).
        public var etcd: EtcdSettings?
        /// With copies, a node's share of a search is asked of the other copies when the node
        /// has not answered after the 95th percentile of recent answer times, but never sooner
        /// than this (so ordinary jitter does not double the load).
        public var minimumHedgeDelay: Duration = .milliseconds(20)
        /// The token presented to shard nodes started with tokens (an admin token of theirs;
        /// empty: none).
        public var shardToken = ""
        /// TLS to shard nodes that serve it (nil: plain TCP).
        public var shardTLS: WireTLS?
        /// Where the coordinator's series go (the admin port's `/metrics`; nil: not measured).
        public var metrics: MetricsRegistry?
        /// Whether searches find each query's lists once here (with the kept trained state) and
        /// hand them to the shards, instead of every shard repeating that coarse search.
        public var assignsProbes = true
        /// Whether writes to several copies are encoded once here (with the kept trained
        /// state) and sent as codes to copies of protocol version 3, instead of each copy
        /// encoding the vectors itself.
        public var encodesWrites = true

        /// Defaults: 5 s searches, 60 s writes, 2 s health probes, no state folder.
        public init(searchDeadline: Duration = .seconds(5), writeDeadline: Duration = .seconds(60), stateDirectory: String? = nil) {
            self.searchDeadline = searchDeadline
            self.writeDeadline = writeDeadline
            self.stateDirectory = stateDirectory
        }
    }

    /// The cluster file it started from (the collection; the map's first epoch).
    public let map: ClusterMap
    /// Deadlines and the state folder.
    public let options: Options
    /// The cluster map's current epoch as requests use it (`Coordinator+Map.swift`).
    let currentRouting: Mutex<Routing>
    /// One link per node name, kept across epochs.
    let linkPool = Mutex<[String: ShardLink]>([:])
    /// Requests running, by the epoch they were routed with.
    let inFlight = Mutex<[UInt64: Int]>([:])
    /// The guards of copies in progress.
    let moveGuards = Mutex<[MoveKey: MoveGuard]>([:])
    /// What the mover reports.
    let moveProgress = Mutex(MoveProgress())
    /// Set to make the mover look for work at once.
    let moverWake = Mutex(false)
    /// The background mover, cancelled by `close`.
    let mover = Mutex<Task<Void, Never>?>(nil)
    /// With etcd: the task that follows the map other coordinators change.
    let watcher = Mutex<Task<Void, Never>?>(nil)
    /// With etcd: the task that keeps the mover role while this coordinator has it.
    let leaseKeeper = Mutex<Task<Void, Never>?>(nil)
    /// This coordinator in move owners and the mover key (its name and a per-process id).
    let moverIdentity: String
    /// Where the map is kept.
    let store: any MapStore
    /// The kept map's version (the store's, for compare-and-swap).
    let mapVersion: Mutex<Int64>
    /// Serialises this coordinator's map changes (each is one new epoch, kept before it is published).
    let mapGate = AsyncGate()
    /// Whether this coordinator holds the mover role (its lease keeper's last renewal).
    let movesHere = Mutex(false)
    /// Until when that role surely holds (with etcd: before the lease could have lapsed).
    let roleValidUntil = Mutex(ContinuousClock.now)
    /// The collection's trained state (the file shards were given), to give nodes that join.
    let keptTrainedState: Mutex<[UInt8]?>
    /// The kept trained state loaded, for finding searches' lists once for every shard and
    /// encoding rows written to several copies (nil before training).
    let probeAssigner = Mutex<ProbeAssigner?>(nil)
    /// The version of a trained state whose codes a shard refused (its own is another): writes
    /// are then sent as vectors, and encoded again only once the coordinator holds another.
    let encodingRefused = Mutex<UInt64?>(nil)
    /// Recent answer times of shard searches (the hedge delay).
    let searchLatencies = LatencyWindow()
    /// Buckets whose last move failed: when to try again, and the wait that was set.
    let moveRetries = Mutex<[Int: (after: ContinuousClock.Instant, wait: Duration)]>([:])
    /// Whether the mover owes the nodes a sweep of entries of buckets they do not serve
    /// (`sweepUnservedBuckets`): at start, and after copies were abandoned or cleared.
    let sweepOwed = Mutex(true)
    let logger: Logger
    let group: any EventLoopGroup
    /// Fan-out latency and partial answers (nil without `options.metrics`).
    let metrics: CoordinatorMetrics?
    /// The collection's space; its whitening changes when a trained state with one is pushed or dropped.
    let installedSpace: Mutex<VectorSpace>
    /// Serialises trained-state pushes and drops.
    let administration = AsyncGate()
    /// The collection's factory string in canonical form (as shards report it).
    let canonicalFactory: String

    /// File name of the kept whitening inside the state folder.
    public static let whiteningFileName = "whitening.phxw"
    /// File name of the kept trained state inside the state folder.
    public static let trainedStateFileName = "trained-state.phx"

    /// A coordinator for `map`, connecting to shards on `group`. With a state folder, the map,
    /// trained state and whitening kept there by an earlier run are loaded (a damaged file is an
    /// error, never skipped). With etcd (`options.etcd`), use `connect`, which reads the map
    /// there first.
    public convenience init(map: ClusterMap, group: any EventLoopGroup, options: Options = Options(),
                            logger: Logger = Logger(label: "pharos.coordinator")) throws {
        guard options.etcd == nil else {
            throw ClusterMapError(path: "coordinator", problem: "a coordinator with etcd is made by Coordinator.connect")
        }
        var state = ClusterState(map: map)
        let store: any MapStore
        if let stateDirectory = options.stateDirectory {
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
            let path = stateDirectory + "/" + ClusterState.fileName
            store = FileMapStore(path: path)
            if FileManager.default.fileExists(atPath: path) {
                state = try ClusterState.load(path)
            } else {
                try state.save(path)
            }
        } else {
            store = FixedMapStore()
        }
        try self.init(map: map, group: group, options: options, logger: logger, store: store, state: state, version: Int64(state.epoch))
    }

    /// A coordinator whose cluster map lives in etcd (`options.etcd`): the map kept there, or
    /// the cluster file's first epoch when there is none yet (written there if no other
    /// coordinator wrote one first).
    public static func connect(map: ClusterMap, group: any EventLoopGroup, options: Options,
                               logger: Logger = Logger(label: "pharos.coordinator")) async throws -> Coordinator {
        guard let etcd = options.etcd else { return try Coordinator(map: map, group: group, options: options, logger: logger) }
        let store = EtcdMapStore(client: EtcdClient(endpoints: etcd.endpoints, group: group), prefix: etcd.prefix, name: etcd.name)
        for _ in 0..<5 {
            if let (state, version) = try await store.load() {
                return try Coordinator(map: map, group: group, options: options, logger: logger, store: store, state: state, version: version)
            }
            let first = ClusterState(map: map)
            if let version = try await store.replace(first, expecting: nil) {
                return try Coordinator(map: map, group: group, options: options, logger: logger, store: store, state: first, version: version)
            }
        }
        throw ClusterMapError(path: store.description, problem: "the map could not be read or written")
    }

    init(map: ClusterMap, group: any EventLoopGroup, options: Options, logger: Logger, store: any MapStore,
         state: ClusterState, version: Int64) throws {
        self.map = map
        self.options = options
        self.group = group
        self.logger = logger
        self.store = store
        metrics = options.metrics.map(CoordinatorMetrics.init)
        moverIdentity = (store as? EtcdMapStore)?.name ?? "coordinator"
        guard state.buckets == map.buckets else {
            throw ClusterMapError(path: store.description, problem: "the kept map has \(state.buckets) buckets, the cluster file \(map.buckets): a bucket count never changes")
        }
        mapVersion = Mutex(version)
        var trained: [UInt8]?
        if let stateDirectory = options.stateDirectory {
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
            let trainedPath = stateDirectory + "/" + Self.trainedStateFileName
            if FileManager.default.fileExists(atPath: trainedPath) { trained = try FileIO.readWholeFile(trainedPath) }
        }
        keptTrainedState = Mutex(trained)
        if let trained { probeAssigner.withLock { $0 = ProbeAssigner(trainedState: trained) } }
        var pool: [String: ShardLink] = [:]
        for node in state.nodes { pool[node.name] = ShardLink(address: node.address, group: group, token: options.shardToken, tls: options.shardTLS) }
        currentRouting = Mutex(Routing(state: state, links: state.nodes.map { pool[$0.name]! }, zone: options.zone))
        linkPool.withLock { $0 = pool }
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
        if options.runsMover {
            if store is EtcdMapStore {
                leaseKeeper.withLock { $0 = Task { [weak self] in await self?.leaseLoop() } }
            } else {
                movesHere.withLock { $0 = true }
            }
            mover.withLock { $0 = Task { [weak self] in await self?.moverLoop() } }
        } else {
            movesHere.withLock { $0 = true }   // tests step the mover themselves
        }
        if store is EtcdMapStore {
            watcher.withLock { $0 = Task { [weak self] in await self?.followMap() } }
        }
        metrics?.watch(self)
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
                                buckets: map.buckets, shardCount: routing.state.nodes.count)
    }

    public var serviceName: String { "coordinator of \(routing.state.nodes.count) shards" }

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
        for task in [mover.withLock { $0 }, watcher.withLock { $0 }, leaseKeeper.withLock { $0 }].compactMap({ $0 }) {
            task.cancel()
            await task.value
        }
        for link in linkPool.withLock({ Array($0.values) }) { await link.close() }
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
        case let .hello(request):
            return .hello(Hello.answer(to: request, role: .coordinator, nodeName: moverIdentity,
                                       software: BuildInfo.versionLine(program: "pharos-coordinator")))
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
        case .clusterStatus:
            return .clusterStatusResult(await clusterReport())
        case let .addNode(addition):
            return .clusterStatusResult(try await administration.run { try await addNode(addition) })
        case let .removeNode(name):
            return .clusterStatusResult(try await administration.run { try await removeNode(name) })
        case let .rebalance(request):
            return .clusterStatusResult(try await administration.run { try await rebalance(request) })
        case .searchResult, .upsertResult, .deleteResult, .fetchResult, .statsResult, .healthResult, .trainedStateAck, .dropResult,
             .schemaResult, .bucketEntries, .bucketCountsResult, .clusterStatusResult, .error:
            throw WireError(.unsupported, "\(message.name) is a reply, not a request the coordinator serves")
        }
    }

    /// The cluster's counts: every shard's, summed.
    func statistics() async throws -> ShardStatistics {
        let space = self.space
        var total = ShardStatistics(liveEntries: 0, segments: 0, sealedEntries: 0, memoryEntries: 0,
                                    factory: map.collection.factory, dimension: space.inputDimension, trainedVersion: 0,
                                    metric: space.metric.rawValue)
        // Every copy of a bucket holds its entries: count each bucket's entries once, by
        // the nodes' per-bucket counts, when there are copies.
        let routing = self.routing
        if routing.state.replication > 1 || !routing.state.moves.isEmpty {
            return try await replicatedStatistics(total, routing: routing)
        }
        for (_, reply) in try await everyNode(.stats, within: options.searchDeadline) {
            guard case let .statsResult(s) = reply else { continue }
            total.liveEntries += s.liveEntries
            total.segments += s.segments
            total.sealedEntries += s.sealedEntries
            total.memoryEntries += s.memoryEntries
            total.trainedVersion = s.trainedVersion
        }
        return total
    }

    /// With copies, each bucket's entries counted once: every bucket as its first reader
    /// counts it, the other figures summed over the nodes.
    private func replicatedStatistics(_ base: ShardStatistics, routing: Routing) async throws -> ShardStatistics {
        var total = base
        let nodes = Array(Set(routing.plan.keys)).sorted()
        let loop = group.next()
        let counts = try await allOrNothing(nodes.map { ($0, .bucketCounts(count: routing.state.buckets)) }, routing: routing,
                                            within: options.searchDeadline, on: loop).get()
        for (node, reply) in counts {
            guard case let .bucketCountsResult(perBucket) = reply, perBucket.count == routing.state.buckets else { continue }
            for b in routing.plan[node]?.members ?? [] { total.liveEntries += perBucket[b] }
        }
        for (_, reply) in try await allOrNothing(nodes.map { ($0, .stats) }, routing: routing, within: options.searchDeadline, on: loop).get() {
            guard case let .statsResult(s) = reply else { continue }
            total.segments += s.segments
            total.sealedEntries += s.sealedEntries
            total.memoryEntries += s.memoryEntries
            total.trainedVersion = s.trainedVersion
        }
        return total
    }

    /// Ready when every bucket has a copy on a node that answers ready; the status names
    /// each node's state.
    private func health() async throws -> WireMessage {
        let routing = self.routing
        let replies = try await fanOut(routing.state.nodes.indices.map { ($0, .health) }, routing: routing, within: options.healthDeadline,
                                       on: group.next()).get()
        var ready = true, lines: [String] = []
        var answering = Set<Int>()
        for (i, outcome) in replies {
            switch outcome {
            case let .success(.healthResult(shardReady, status)):
                if shardReady { answering.insert(i) }
                lines.append("\(routing.name(i)): \(status)")
            case let .failure(error):
                lines.append("\(routing.name(i)): \(error.message)")
            default:
                break
            }
        }
        // Ready when every bucket has a copy on a node that answered ready.
        ready = !replies.isEmpty && routing.readers.allSatisfy { $0.contains(where: answering.contains) }
        return .healthResult(ready: ready, status: lines.joined(separator: "; "))
    }
}

/// Where a coordinator finds the etcd cluster that keeps the map.
public struct EtcdSettings: Sendable {
    /// Client addresses of the etcd members.
    public var endpoints: [(host: String, port: Int)]
    /// Key prefix of this Pharos cluster (several may share one etcd).
    public var prefix: String
    /// This coordinator's name (unique among the cluster's coordinators).
    public var name: String

    /// Settings.
    public init(endpoints: [(host: String, port: Int)], prefix: String = "/pharos/default", name: String) {
        self.endpoints = endpoints
        self.prefix = prefix
        self.name = name
    }
}
