import Foundation
import Logging
import NIOCore
import PharosWire

/// The coordinator: clients speak the wire protocol to it as to one big shard.
///
/// - Search fans out to every shard with the request's deadline, merges their top-k lists,
///   and says plainly which shards are missing from a partial answer. Query expansion (AQE,
///   alpha-QE) runs a first round that returns the hits' vectors, builds new queries, and
///   searches again. Queries by key fetch the stored vector from the key's shard first.
/// - Upserts and deletes are split by key -> bucket -> shard and sent concurrently; an
///   acknowledgement means every shard involved acknowledged durably.
/// - A pushed trained state goes to every shard.
public final class Coordinator: WireService, @unchecked Sendable {
    // @unchecked: immutable after init; `ShardLink`s are actors.

    /// The cluster it routes over.
    public let map: ClusterMap
    private let links: [ShardLink]
    private let logger: Logger
    /// Deadline of requests that give none.
    public var defaultDeadline: Duration = .seconds(5)

    /// A coordinator for `map`, connecting to shards on `group`.
    public init(map: ClusterMap, group: any EventLoopGroup, logger: Logger = Logger(label: "pharos.coordinator")) {
        self.map = map
        self.links = map.shards.map { ShardLink(address: $0, group: group) }
        self.logger = logger
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
        guard request.expansion == .none, request.queryKeys.isEmpty, map.collection.normalize != true,
              request.dimension == d, !request.vectors.isEmpty, request.vectors.count % d == 0 else { return false }
        let clients = links.map(\.currentClient)
        guard clients.allSatisfy({ $0 != nil }) else { return false }
        let milliseconds = request.deadlineMilliseconds > 0 ? request.deadlineMilliseconds
            : Int(defaultDeadline.components.seconds * 1000 + defaultDeadline.components.attoseconds / 1_000_000_000_000_000)
        var shardRequest = request
        shardRequest.deadlineMilliseconds = milliseconds
        let futures = clients.map { $0!.send(.search(shardRequest), timeout: .milliseconds(Int64(milliseconds))) }
        let queries = request.vectors.count / d
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

    public func close() {
        let links = self.links
        Task { for link in links { await link.close() } }
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
            return .upsertResult(written: try await upsert(request))
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
                                        factory: map.collection.factory, dimension: map.collection.dimension, trainedVersion: 0)
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
        case let .trainedState(file):
            var version: UInt64?
            for (i, reply) in try await allOrNothing(links.indices.map { ($0, .trainedState(indexFile: file)) }) {
                guard case let .trainedStateAck(v) = reply else { continue }
                if let version, version != v {
                    throw WireError(.internalError, "\(map.shards[i].name) acknowledged trained state \(v), others \(version)")
                }
                version = v
            }
            return .trainedStateAck(version: version ?? 0)
        case .searchResult, .upsertResult, .deleteResult, .fetchResult, .statsResult, .healthResult, .trainedStateAck, .error:
            throw WireError(.unsupported, "\(message.name) is a reply, not a request the coordinator serves")
        }
    }

    // MARK: Search

    private func search(_ request: SearchRequest) async throws -> SearchResponse {
        let deadline = ContinuousClock.now + (request.deadlineMilliseconds > 0 ? .milliseconds(request.deadlineMilliseconds) : defaultDeadline)
        let d = map.collection.dimension
        guard request.vectors.isEmpty || request.dimension == d else {
            throw WireError(.invalidArgument, "query vectors: dimension \(request.dimension), the collection holds \(d)-D vectors")
        }
        guard request.vectors.count % d == 0 else {
            throw WireError(.invalidArgument, "query vectors: \(request.vectors.count) floats is not a multiple of \(d)")
        }
        var queries = stride(from: 0, to: request.vectors.count, by: d).map { Array(request.vectors[$0 ..< $0 + d]) }
        if !request.queryKeys.isEmpty {
            for entry in try await fetch(request.queryKeys) {
                guard entry.found else { throw WireError(.invalidArgument, "query key \(entry.key.debugDescription) is not indexed") }
                queries.append(entry.vector)
            }
        }
        if map.collection.normalize == true { queries = queries.map(Self.normalized) }
        var first = request
        first.queryKeys = []
        first.expansion = .none
        guard request.expansion != .none else {
            return try await fanOutSearch(queries, request: first, deadline: deadline)
        }
        // Expansion: a first round that returns the hits' vectors, then the expanded queries.
        let n: Int = switch request.expansion { case .none: 0; case let .averageQE(n): n; case let .alphaQE(n, _): n }
        var round = first
        round.k = Swift.max(1, n)   // only the top n feed the expansion: their vectors are the cost
        round.withVectors = true
        let initial = try await fanOutSearch(queries, request: round, deadline: deadline)
        let expanded = zip(queries, initial.queries).map { query, hits in
            QueryExpansionMath.expand(query: query, hits: hits, expansion: request.expansion, unitNorm: map.unitNorm)
        }
        var second = try await fanOutSearch(expanded, request: first, deadline: deadline)
        second.partial = second.partial || initial.partial
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
        shardRequest.deadlineMilliseconds = Int(remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000)
        let outcomes = await fanOut(links.indices.map { ($0, .search(shardRequest)) }, deadline: remaining)
        return try merged(outcomes, queries: queries.count, request: request)
    }

    /// One search response from every shard's outcome: merged hits, and the shards missing.
    private func merged(_ outcomes: [(Int, Result<WireMessage, WireError>)], queries: Int, request: SearchRequest) throws -> SearchResponse {
        var perShard: [[QueryHits]] = []
        var missing: [ShardFailure] = []
        for (i, outcome) in outcomes {
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
            throw WireError(.unavailable, "no shard answered: " + missing.map { "\($0.shard): \($0.reason)" }.joined(separator: "; "))
        }
        let hits = (0..<queries).map { q in
            TopKMerge.merge(perShard.map { $0[q] }, k: request.k, higherIsBetter: map.higherIsBetter,
                            dimension: request.withVectors ? map.collection.dimension : 0)
        }
        if !missing.isEmpty { logger.warning("partial search", metadata: ["missing": "\(missing.map(\.shard))"]) }
        return SearchResponse(queries: hits, partial: !missing.isEmpty, missing: missing)
    }

    // MARK: Writes and fetches

    private func upsert(_ request: UpsertRequest) async throws -> Int {
        let d = map.collection.dimension
        guard request.dimension == d else {
            throw WireError(.invalidArgument, "vectors: dimension \(request.dimension), the collection holds \(d)-D vectors")
        }
        guard request.vectors.count == request.keys.count * d else {
            throw WireError(.invalidArgument, "vectors: \(request.vectors.count) floats for \(request.keys.count) keys of \(d)")
        }
        guard request.metadata.isEmpty || request.metadata.count == request.keys.count else {
            throw WireError(.invalidArgument, "metadata: \(request.metadata.count) values for \(request.keys.count) keys")
        }
        let normalize = map.collection.normalize == true
        let parts = split(request.keys).map { shard, rows -> (Int, WireMessage) in
            var vectors: [Float] = []
            vectors.reserveCapacity(rows.count * d)
            for r in rows {
                let row = Array(request.vectors[r * d ..< (r + 1) * d])
                vectors += normalize ? Self.normalized(row) : row
            }
            return (shard, .upsert(UpsertRequest(keys: rows.map { request.keys[$0] }, vectors: vectors, dimension: d,
                                                 metadata: request.metadata.isEmpty ? [] : rows.map { request.metadata[$0] })))
        }
        var written = 0
        for (_, reply) in try await allOrNothing(parts) {
            if case let .upsertResult(n) = reply { written += n }
        }
        return written
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
            let code = failures.count == 1 ? failures[0].1.code : .unavailable
            throw WireError(code, failures.map { "\(map.shards[$0.0].name): \($0.1.message)" }.joined(separator: "; "))
        }
        return replies
    }

    static func normalized(_ v: [Float]) -> [Float] {
        let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return norm > 0 ? v.map { $0 / norm } : v
    }
}
