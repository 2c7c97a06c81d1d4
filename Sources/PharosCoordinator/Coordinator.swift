import Foundation
import Logging
import Synchronization
import NIOCore
import PharosIndex
import PharosVectors
import PharosWire

/// The coordinator: clients speak the wire protocol to it as to one big shard.
///
/// - Search fans out to every shard with the request's deadline, merges their top-k lists,
///   and says plainly which shards are missing from a partial answer. Query expansion (AQE,
///   alpha-QE) runs a first round that returns the hits' vectors, builds new queries, and
///   searches again. Queries by key fetch the stored vector from the key's shard first.
/// - Upserts and deletes are split by key -> bucket -> shard and sent concurrently; an
///   acknowledgement means every shard involved acknowledged durably.
/// - A pushed trained state goes to every shard. Its whitening, when it has one, stays here
///   (kept in the state folder) and is applied to every query and upserted vector before they
///   reach a shard, so shards only ever see whitened, normalised descriptors.
public final class Coordinator: WireService, @unchecked Sendable {
    // @unchecked: immutable after init except `whitening`, which is behind a lock; `ShardLink`s are actors.

    /// The cluster it routes over.
    public let map: ClusterMap
    private let links: [ShardLink]
    private let logger: Logger
    /// Deadline of requests that give none.
    public var defaultDeadline: Duration = .seconds(5)
    /// Where the coordinator keeps what it must not forget (the whitening); nil keeps nothing.
    public let stateDirectory: String?
    private let installedWhitening = Mutex<Whitening?>(nil)
    /// Serialises trained-state pushes and drops.
    private let administration = AsyncGate()
    /// The collection's factory string in canonical form (as shards report it).
    private let canonicalFactory: String

    /// File name of the kept whitening inside the state folder.
    public static let whiteningFileName = "whitening.phxw"

    /// A coordinator for `map`, connecting to shards on `group`. With a `stateDirectory`, a
    /// whitening kept there by an earlier run is loaded (a damaged file is an error, never skipped).
    public init(map: ClusterMap, group: any EventLoopGroup, stateDirectory: String? = nil,
                logger: Logger = Logger(label: "pharos.coordinator")) throws {
        self.map = map
        self.links = map.shards.map { ShardLink(address: $0, group: group) }
        self.logger = logger
        self.stateDirectory = stateDirectory
        // `ClusterMap.validate` made this index already, so it cannot fail for a loaded map.
        canonicalFactory = (try? IndexFactory.make(map.collection.factory, dimension: map.collection.dimension,
                                                   metric: Metric(rawValue: map.collection.metric) ?? .l2).factoryString) ?? map.collection.factory
        if let stateDirectory {
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
            let path = stateDirectory + "/" + Self.whiteningFileName
            if FileManager.default.fileExists(atPath: path) {
                let whitening = try Whitening.load(path)
                try Self.check(whitening, against: map, source: path)
                installedWhitening.withLock { $0 = whitening }
            }
        }
    }

    /// The collection's whitening, once trained with one.
    public var whitening: Whitening? { installedWhitening.withLock { $0 } }

    /// The dimension of the vectors clients send: the whitening's input, or the collection's.
    public var inputDimension: Int { whitening?.inputDimension ?? map.collection.dimension }

    private static func check(_ whitening: Whitening, against map: ClusterMap, source: String) throws {
        guard whitening.outputDimension == map.collection.dimension else {
            throw WireError(.invalidArgument, "\(source): the whitening produces \(whitening.outputDimension)-D vectors, the collection holds \(map.collection.dimension)-D")
        }
    }

    /// Query or upsert rows (`count x inputDimension`) in the collection's space: whitened and
    /// normalised when the collection has a whitening, normalised when it asks for that.
    private func prepared(_ vectors: [Float], dimension: Int, field: String) throws -> [Float] {
        guard dimension == inputDimension else {
            throw WireError(.invalidArgument, "\(field): dimension \(dimension), the collection takes \(inputDimension)-D vectors")
        }
        guard vectors.count % dimension == 0 else {
            throw WireError(.invalidArgument, "\(field): \(vectors.count) floats is not a multiple of \(dimension)")
        }
        if let whitening {
            guard vectors.allSatisfy(\.isFinite) else { throw WireError(.invalidArgument, "\(field): NaN or infinity") }
            return try whitening.apply(Matrix(rows: vectors.count / dimension, columns: dimension, values: vectors)).values
        }
        guard map.collection.normalize == true else { return vectors }
        var rows = Matrix(rows: vectors.count / dimension, columns: dimension, values: vectors)
        VectorMath.normalizeRows(&rows)
        return rows.values
    }

    public var serviceName: String { "coordinator of \(map.shards.count) shards" }

    public func respond(to message: WireMessage, reply: @escaping @Sendable (WireMessage) -> Void) {
        if case let .search(request) = message, fastSearch(request, reply: reply) { return }
        Task { reply(await self.handle(message)) }
    }

    /// The common search (vectors, no expansion, every shard connected) done with event-loop
    /// futures end to end: no hop to the task pool and back, which is most of the
    /// coordinator's added latency. Returns false (doing nothing) when it does not apply.
    private func fastSearch(_ request: SearchRequest, reply: @escaping @Sendable (WireMessage) -> Void) -> Bool {
        let d = map.collection.dimension
        guard request.expansion == .none, request.queryKeys.isEmpty, !request.vectors.isEmpty else { return false }
        let clients = links.map(\.currentClient)
        guard clients.allSatisfy({ $0 != nil }) else { return false }
        var shardRequest = request
        do {
            shardRequest.vectors = try prepared(request.vectors, dimension: request.dimension, field: "query vectors")
            shardRequest.dimension = d
        } catch {
            return false   // the full path gives the error
        }
        let timeout = deadlineSpan(of: request)
        shardRequest.deadlineMilliseconds = timeout.wholeMilliseconds
        let futures = clients.map { $0!.send(.search(shardRequest), timeout: timeout.timeAmount) }
        let queries = shardRequest.vectors.count / d
        EventLoopFuture.whenAllComplete(futures, on: futures[0].eventLoop).whenSuccess { [self] results in
            var outcomes: [(Int, Result<WireMessage, WireError>)] = []
            for (i, result) in results.enumerated() {
                switch result {
                case let .success(envelope):
                    if case let .error(error) = envelope.body { outcomes.append((i, .failure(error))) } else { outcomes.append((i, .success(envelope.body))) }
                case let .failure(error):
                    let wire = error as? WireError ?? WireError(.unavailable, "\(error)")
                    if wire.code == .unavailable { links[i].connectionFailed() }
                    outcomes.append((i, .failure(wire)))
                }
            }
            do {
                reply(.searchResult(try merged(outcomes, queries: queries, request: request)))
            } catch let error as WireError {
                reply(.error(error))
            } catch {
                reply(.error(WireError(.internalError, "\(error)")))
            }
        }
        return true
    }

    public func close() async {
        for link in links { await link.close() }
    }

    /// The reply to `message`.
    public func handle(_ message: WireMessage) async -> WireMessage {
        do {
            return try await reply(to: message)
        } catch let error as WireError {
            return .error(error)
        } catch {
            return .error(WireError(.internalError, "\(error)"))
        }
    }

    private func reply(to message: WireMessage) async throws -> WireMessage {
        switch message {
        case .hello:
            return .hello(Hello(role: .coordinator, nodeName: "coordinator"))
        case let .search(request):
            return .searchResult(try await search(request))
        case let .upsert(request):
            let (written, replaced) = try await upsert(request)
            return .upsertResult(written: written, replaced: replaced)
        case let .delete(keys):
            var deleted = 0
            for (_, reply) in try await allOrNothing(split(keys).map { ($0.key, .delete(keys: $0.value.map { keys[$0] })) }) {
                if case let .deleteResult(n) = reply { deleted += n }
            }
            return .deleteResult(deleted: deleted)
        case let .fetch(keys):
            return .fetchResult(try await fetch(keys))
        case .stats:
            var total = ShardStatistics(liveEntries: 0, segments: 0, sealedEntries: 0, memoryEntries: 0,
                                        factory: map.collection.factory, dimension: inputDimension, trainedVersion: 0,
                                        metric: map.collection.metric)
            for (_, reply) in try await allOrNothing(links.indices.map { ($0, .stats) }) {
                guard case let .statsResult(s) = reply else { continue }
                total.liveEntries += s.liveEntries
                total.segments += s.segments
                total.sealedEntries += s.sealedEntries
                total.memoryEntries += s.memoryEntries
                total.trainedVersion = s.trainedVersion
            }
            return .statsResult(total)
        case .health:
            let replies = await fanOut(links.indices.map { ($0, .health) }, deadline: .seconds(2))
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
        case let .trainedState(file, whiteningFile):
            // One push or drop at a time: two pushes racing could each find the cluster
            // untrained and leave shards with different trained states.
            return try await administration.run { try await pushTrainedState(file, whiteningFile) }
        case let .drop(confirm):
            return .dropResult(droppedEntries: try await administration.run { try await drop(confirm: confirm) })
        case .searchResult, .upsertResult, .deleteResult, .fetchResult, .statsResult, .healthResult, .trainedStateAck, .dropResult, .error:
            throw WireError(.unsupported, "\(message.name) is a reply, not a request the coordinator serves")
        }
    }

    /// Pushes a checked trained state to every shard; keeps its whitening once they all took it.
    private func pushTrainedState(_ file: [UInt8], _ whiteningFile: [UInt8]) async throws -> WireMessage {
        let pushed = try checkedTrainedState(file)
        let whitening = try whiteningFile.isEmpty ? nil : acceptable(whiteningFile)
        try await checkNotRetraining(version: pushed, whitening: whitening)
        var version: UInt64?
        for (i, reply) in try await allOrNothing(links.indices.map { ($0, .trainedState(indexFile: file)) }) {
            guard case let .trainedStateAck(v) = reply else { continue }
            if let version, version != v {
                throw WireError(.internalError, "\(map.shards[i].name) acknowledged trained state \(v), others \(version)")
            }
            version = v
        }
        if let whitening { try keep(whitening) }
        return .trainedStateAck(version: version ?? 0)
    }

    // MARK: Trained state


    /// A pushed trained state must be the cluster file's collection: its factory, dimension
    /// and metric, trained and empty. Returns its version (as shards compute it).
    private func checkedTrainedState(_ bytes: [UInt8]) throws -> UInt64 {
        let loaded: any VectorIndex
        do { loaded = try IndexFactory.load(bytes: bytes, name: "pushed trained state") } catch {
            throw WireError(.invalidArgument, "\(error)")
        }
        let expected = canonicalFactory
        guard loaded.factoryString == expected else {
            throw WireError(.invalidArgument, "TrainedState is a \(loaded.factoryString) index; the cluster file's collection is \(expected)")
        }
        guard loaded.dimension == map.collection.dimension, loaded.metric.rawValue == map.collection.metric else {
            throw WireError(.invalidArgument, "TrainedState is \(loaded.dimension)-D \(loaded.metric.rawValue); the collection is \(map.collection.dimension)-D \(map.collection.metric)")
        }
        guard loaded.isTrained, loaded.count == 0 else {
            throw WireError(.invalidArgument, loaded.isTrained ? "TrainedState holds \(loaded.count) vectors; push a trained, empty index" : "TrainedState is not trained")
        }
        return IndexFactory.trainedStateVersion(loaded)
    }

    /// A trained collection keeps its trained state and whitening: the same ones again are
    /// acknowledged (a retried push, or a shard that missed it), anything else refused until
    /// the collection is dropped (`Drop`, `pharos train --replace`).
    private func checkNotRetraining(version: UInt64, whitening: Whitening?) async throws {
        var trainedVersions = Set<UInt64>()
        var stored: UInt64 = 0
        for (i, outcome) in await fanOut(links.indices.map { ($0, .stats) }, deadline: defaultDeadline) {
            switch outcome {
            case let .success(.statsResult(s)):
                trainedVersions.insert(s.trainedVersion)
                stored += s.liveEntries
            case let .failure(error) where error.code == .notReady: continue
            case let .failure(error):
                throw WireError(error.code == .unavailable ? .unavailable : error.code,
                                "cannot tell whether \(map.shards[i].name) is trained, so no trained state is pushed: \(error.message)")
            case let .success(other):
                throw WireError(.internalError, "\(map.shards[i].name) answered Stats with \(other.name)")
            }
        }
        let replace = "drop the collection first (pharos train --replace)"
        if let current = trainedVersions.first(where: { $0 != version }) {
            throw WireError(.invalidArgument, "the collection is already trained (trained state \(current)); refusing trained state \(version): \(replace)")
        }
        // A whitening may still change while nothing is stored (say, keeping it failed after
        // the shards took the state): no vector is in the old space yet.
        guard !trainedVersions.isEmpty, stored > 0 else { return }
        if self.whitening != whitening {
            throw WireError(.invalidArgument, self.whitening == nil
                ? "the collection is trained without a whitening and holds unwhitened vectors; refusing to add one: \(replace)"
                : "the collection is trained with a whitening and holds whitened vectors; refusing to change or remove it: \(replace)")
        }
    }

    /// Drops every entry, the trained state and the whitening.
    private func drop(confirm: String) async throws -> UInt64 {
        let factory = canonicalFactory
        guard confirm == factory || confirm == map.collection.factory else {
            throw WireError(.invalidArgument, "Drop.confirm is \(confirm.debugDescription): to drop this collection give its factory, \(factory.debugDescription)")
        }
        var dropped: UInt64 = 0
        for (_, reply) in try await allOrNothing(links.indices.map { ($0, .drop(confirm: factory)) }) {
            if case let .dropResult(n) = reply { dropped += n }
        }
        if let stateDirectory {
            let path = stateDirectory + "/" + Self.whiteningFileName
            if FileManager.default.fileExists(atPath: path) {
                do { try FileManager.default.removeItem(atPath: path) } catch {
                    throw WireError(.storage, "removing the whitening \(path): \(error)")
                }
            }
        }
        installedWhitening.withLock { $0 = nil }
        logger.warning("collection dropped", metadata: ["entries": "\(dropped)"])
        return dropped
    }

    // MARK: Whitening

    /// A pushed whitening, checked against the collection and against the one already kept.
    private func acceptable(_ bytes: [UInt8]) throws -> Whitening {
        guard stateDirectory != nil else {
            throw WireError(.invalidArgument, "this coordinator has no state folder (--state) to keep a whitening in")
        }
        let whitening: Whitening
        do { whitening = try Whitening(bytes: bytes, source: "pushed whitening") } catch {
            throw WireError(.invalidArgument, "\(error)")
        }
        try Self.check(whitening, against: map, source: "pushed whitening")
        if let current = self.whitening, current != whitening {
            throw WireError(.invalidArgument, "the collection already has a different whitening: the stored vectors are in its space (a new whitening is a new collection)")
        }
        return whitening
    }

    /// Makes `whitening` durable in the state folder, then applies it to new requests.
    private func keep(_ whitening: Whitening) throws {
        guard let stateDirectory, self.whitening != whitening else { return }
        do { try whitening.save(stateDirectory + "/" + Self.whiteningFileName) } catch {
            throw WireError(.storage, "keeping the whitening: \(error)")
        }
        installedWhitening.withLock { $0 = whitening }
        logger.info("whitening installed", metadata: ["input": "\(whitening.inputDimension)", "output": "\(whitening.outputDimension)"])
    }

    // MARK: Search

    /// How long `request` may take: its own deadline, or the default when it gives none.
    private func deadlineSpan(of request: SearchRequest) -> Duration {
        request.deadlineMilliseconds > 0 ? .milliseconds(request.deadlineMilliseconds) : defaultDeadline
    }

    private func search(_ request: SearchRequest) async throws -> SearchResponse {
        let deadline = ContinuousClock.now + deadlineSpan(of: request)
        let d = map.collection.dimension
        let vectors = request.vectors.isEmpty ? [] : try prepared(request.vectors, dimension: request.dimension, field: "query vectors")
        var queries = stride(from: 0, to: vectors.count, by: d).map { Array(vectors[$0 ..< $0 + d]) }
        if !request.queryKeys.isEmpty {
            // Stored vectors are already in the collection's space.
            for entry in try await fetch(request.queryKeys) {
                guard entry.found else { throw WireError(.invalidArgument, "query key \(entry.key.debugDescription) is not indexed") }
                queries.append(map.collection.normalize == true ? VectorMath.normalized(entry.vector) : entry.vector)
            }
        }
        var first = request
        first.queryKeys = []
        first.expansion = .none
        guard request.expansion != .none else {
            return try await fanOutSearch(queries, request: first, deadline: deadline)
        }
        // Expansion: a first round that returns the hits' vectors, then the expanded queries.
        var round = first
        round.k = Swift.max(1, request.expansion.neighbours)   // only the top n feed the expansion: their vectors are the cost
        round.withVectors = true
        let initial = try await fanOutSearch(queries, request: round, deadline: deadline)
        let expanded = zip(queries, initial.queries).map { query, hits in
            QueryExpansionMath.expand(query: query, hits: hits, expansion: request.expansion, unitNorm: map.unitNorm)
        }
        var second = try await fanOutSearch(expanded, request: first, deadline: deadline)
        second.missing += initial.missing.filter { m in !second.missing.contains { $0.shard == m.shard } }
        return second
    }

    private func fanOutSearch(_ queries: [[Float]], request: SearchRequest, deadline: ContinuousClock.Instant) async throws -> SearchResponse {
        var shardRequest = request
        shardRequest.vectors = queries.flatMap { $0 }
        shardRequest.dimension = map.collection.dimension
        shardRequest.queryKeys = []
        let remaining = deadline - ContinuousClock.now
        guard remaining > .zero else { throw WireError(.deadlineExceeded, "the deadline passed before the search was sent") }
        shardRequest.deadlineMilliseconds = remaining.wholeMilliseconds
        let outcomes = await fanOut(links.indices.map { ($0, .search(shardRequest)) }, deadline: remaining)
        return try merged(outcomes, queries: queries.count, request: request)
    }

    /// One search response from every shard's outcome: merged hits, and the shards missing.
    private func merged(_ outcomes: [(Int, Result<WireMessage, WireError>)], queries: Int, request: SearchRequest) throws -> SearchResponse {
        var perShard: [[QueryHits]] = []
        var missing: [ShardFailure] = []
        var allLate = !outcomes.isEmpty
        for (i, outcome) in outcomes {
            if case let .failure(error) = outcome, error.code == .deadlineExceeded {} else { allLate = false }
            switch outcome {
            case let .success(.searchResult(result)) where result.queries.count == queries:
                perShard.append(result.queries)
            case let .success(other):
                missing.append(ShardFailure(shard: map.shards[i].name, reason: "unexpected reply \(other.name)"))
            case let .failure(error):
                // Bad requests fail the same way on every shard: report them, not a partial answer.
                if error.code == .invalidArgument || error.code == .notReady { throw error }
                missing.append(ShardFailure(shard: map.shards[i].name, reason: error.description))
            }
        }
        guard !perShard.isEmpty else {
            throw WireError(allLate ? .deadlineExceeded : .unavailable,
                            "no shard answered: " + missing.map { "\($0.shard): \($0.reason)" }.joined(separator: "; "))
        }
        let hits = (0..<queries).map { q in
            TopKMerge.merge(perShard.map { $0[q] }, k: request.k, higherIsBetter: map.higherIsBetter,
                            dimension: request.withVectors ? map.collection.dimension : 0)
        }
        if !missing.isEmpty { logger.warning("partial search", metadata: ["missing": "\(missing.map(\.shard))"]) }
        return SearchResponse(queries: hits, missing: missing)
    }

    // MARK: Writes and fetches

    private func upsert(_ request: UpsertRequest) async throws -> (written: Int, replaced: Int) {
        let d = map.collection.dimension
        guard request.vectors.count == request.keys.count * request.dimension else {
            throw WireError(.invalidArgument, "vectors: \(request.vectors.count) floats for \(request.keys.count) keys of \(request.dimension)")
        }
        guard request.metadata.isEmpty || request.metadata.count == request.keys.count else {
            throw WireError(.invalidArgument, "metadata: \(request.metadata.count) values for \(request.keys.count) keys")
        }
        let all = try prepared(request.vectors, dimension: request.dimension, field: "vectors")
        let parts = split(request.keys).map { shard, rows -> (Int, WireMessage) in
            var vectors: [Float] = []
            vectors.reserveCapacity(rows.count * d)
            for r in rows { vectors += all[r * d ..< (r + 1) * d] }
            return (shard, .upsert(UpsertRequest(keys: rows.map { request.keys[$0] }, vectors: vectors, dimension: d,
                                                 metadata: request.metadata.isEmpty ? [] : rows.map { request.metadata[$0] })))
        }
        var written = 0, replaced = 0
        for (_, reply) in try await allOrNothing(parts) {
            if case let .upsertResult(n, r) = reply {
                written += n
                replaced += r
            }
        }
        return (written, replaced)
    }

    private func fetch(_ keys: [String]) async throws -> [FetchedEntry] {
        var byKey: [String: FetchedEntry] = [:]
        for (_, reply) in try await allOrNothing(split(keys).map { ($0.key, .fetch(keys: $0.value.map { keys[$0] })) }) {
            if case let .fetchResult(entries) = reply { for e in entries { byKey[e.key] = e } }
        }
        return keys.map { byKey[$0] ?? FetchedEntry(key: $0, found: false) }
    }

    /// Row indexes of `keys` grouped by owning shard.
    private func split(_ keys: [String]) -> [Int: [Int]] {
        var parts: [Int: [Int]] = [:]
        for (i, key) in keys.enumerated() { parts[map.shard(of: key), default: []].append(i) }
        return parts
    }

    // MARK: Fan-out

    /// Sends each (shard, message) concurrently; the outcome of each, in shard order.
    private func fanOut(_ requests: [(Int, WireMessage)], deadline: Duration) async -> [(Int, Result<WireMessage, WireError>)] {
        await withTaskGroup(of: (Int, Result<WireMessage, WireError>).self) { group in
            for (shard, message) in requests {
                let link = links[shard]
                group.addTask {
                    do {
                        return (shard, .success(try await link.call(message, timeout: deadline)))
                    } catch let error as WireError {
                        return (shard, .failure(error))
                    } catch {
                        return (shard, .failure(WireError(.internalError, "\(error)")))
                    }
                }
            }
            var out: [(Int, Result<WireMessage, WireError>)] = []
            for await outcome in group { out.append(outcome) }
            return out.sorted { $0.0 < $1.0 }
        }
    }

    /// Like `fanOut`, but any failure fails the whole request, naming the shards.
    private func allOrNothing(_ requests: [(Int, WireMessage)]) async throws -> [(Int, WireMessage)] {
        let outcomes = await fanOut(requests, deadline: defaultDeadline)
        var replies: [(Int, WireMessage)] = [], failures: [(Int, WireError)] = []
        for (i, outcome) in outcomes {
            switch outcome {
            case let .success(reply): replies.append((i, reply))
            case let .failure(error): failures.append((i, error))
            }
        }
        guard failures.isEmpty else {
            // Shards refusing alike (a bad request) keep their code; a mix is an outage.
            let code = Set(failures.map(\.1.code)).count == 1 ? failures[0].1.code : .unavailable
            throw WireError(code, failures.map { "\(map.shards[$0.0].name): \($0.1.message)" }.joined(separator: "; "))
        }
        return replies
    }
}
