import Dispatch
import NIOCore
import PharosIndex
import PharosObservability
import PharosRouting
import PharosVectors
import PharosWire

extension Coordinator {
    /// How long `request` may take: its own deadline, or the default when it gives none.
    func deadlineSpan(of request: SearchRequest) -> Duration {
        request.deadlineMilliseconds > 0 ? .milliseconds(request.deadlineMilliseconds) : options.searchDeadline
    }

    /// The one search path: queries prepared in the collection's space (vectors) or fetched
    /// (keys), then one round, or two with expansion, each fanned out to every shard within
    /// what is left of the request's deadline and merged; the last one re-ranked when asked
    /// (`finalRound`).
    func search(_ request: SearchRequest, on loop: any EventLoop) -> EventLoopFuture<SearchResponse> {
        let deadline = NIODeadline.now() + deadlineSpan(of: request).timeAmount
        let space = self.space
        let vectorQueries: [[Float]]
        do {
            vectorQueries = try prepared(request.vectors, dimension: request.dimension, space: space, field: "query vectors")
        } catch {
            return loop.makeFailedFuture(error)
        }
        // Queries by key have no dimension in the request: the re-ranking's size is checked
        // here, with the collection's, before anything is fetched.
        if let problem = RequestLimits().rerankProblem(request, queries: vectorQueries.count + request.queryKeys.count,
                                                       dimension: map.collection.dimension) {
            return loop.makeFailedFuture(WireError(.invalidArgument, problem))
        }
        var first = request
        first.queryKeys = []
        first.expansion = .none
        first.rerank = .none
        // Lists to scan are the coordinator's to give shards, never a client's.
        first.probeLists = []
        first.probeBiases = []
        first.probeTrainedVersion = 0
        if request.queryKeys.isEmpty && request.expansion == .none && request.rerank == .none {
            // The common case, without a future in between.
            return round(vectorQueries, request: first, deadline: deadline, on: loop)
        }
        let queries: EventLoopFuture<[[Float]]> = request.queryKeys.isEmpty
            ? loop.makeSucceededFuture(vectorQueries)
            : fetch(request.queryKeys, within: deadline.remaining, on: loop).flatMapThrowing { entries in
                // Stored vectors are in the collection's space already, moved off it only by
                // their codes' approximation.
                try vectorQueries + entries.map { entry in
                    guard entry.found else { throw WireError(.invalidArgument, "query key \(entry.key.debugDescription) is not indexed") }
                    return space.conformed(entry.vector)
                }
            }
        let finalRound = first
        let rerank = request.rerank
        guard request.expansion != .none else {
            return queries.flatMap { self.finalRound($0, request: finalRound, rerank: rerank, deadline: deadline, on: loop) }
        }
        // Expansion: a first round that returns the hits' vectors, then the expanded queries.
        // Only the top n feed the expansion (their vectors are the cost). A query by key is
        // indexed itself and would be its own first neighbour, counting as one of the n (with
        // n = 1, expansion would change nothing): one more is asked for and the key left out.
        let neighbours = Swift.max(1, request.expansion.neighbours)
        var expansionRound = first
        expansionRound.k = Self.firstRoundK(neighbours: neighbours, byKey: !request.queryKeys.isEmpty, request: request,
                                            queries: vectorQueries.count + request.queryKeys.count, dimension: map.collection.dimension)
        expansionRound.withVectors = true
        let initialRound = expansionRound
        let ownKeys = [String?](repeating: nil, count: vectorQueries.count) + request.queryKeys.map { Optional($0) }
        let dimension = map.collection.dimension
        return queries.flatMap { queries in
            self.round(queries, request: initialRound, deadline: deadline, on: loop).flatMap { initial in
                let expanded = zip(queries, initial.queries).enumerated().map { i, pair in
                    QueryExpansionMath.expand(query: pair.0, hits: Self.neighbours(pair.1, excluding: ownKeys[i], count: neighbours, dimension: dimension),
                                              expansion: request.expansion, space: space)
                }
                return self.finalRound(expanded, request: finalRound, rerank: rerank, deadline: deadline, on: loop).map { second in
                    var answer = second
                    answer.missing += initial.missing.filter { m in !second.missing.contains { $0.shard == m.shard } }
                    return answer
                }
            }
        }
    }

    /// Requests of at most this many queries have their lists found by the coordinator.
    static let assignedQueries = 4

    /// k of an expansion's first round: the n neighbours, one more when queries are indexed
    /// keys (the key itself is left out), within the limits a shard checks.
    static func firstRoundK(neighbours: Int, byKey: Bool, request: SearchRequest, queries: Int, dimension: Int) -> Int {
        let limits = RequestLimits()
        let wanted = neighbours + (byKey ? 1 : 0)
        let byShortlist = limits.shortlistLimit(queries: queries) / Swift.max(1, request.effectiveRefineFactor)
        let byFloats = limits.maximumResultFloats / Swift.max(1, queries * dimension)
        return Swift.max(1, Swift.min(wanted, limits.maximumK, byShortlist, byFloats))
    }

    /// The first `count` of `hits` that are not the query's own key (with their vectors).
    static func neighbours(_ hits: QueryHits, excluding key: String?, count: Int, dimension: Int) -> QueryHits {
        var kept = QueryHits(keys: [], scores: [])
        let withVectors = hits.vectors.count == hits.keys.count * dimension
        for (i, hit) in hits.keys.enumerated() where hit != key && kept.keys.count < count {
            kept.keys.append(hit)
            kept.scores.append(hits.scores[i])
            if withVectors { kept.vectors += hits.vectors[i * dimension ..< (i + 1) * dimension] }
        }
        return kept
    }

    /// Query rows given by a client (`dimension` floats each), prepared in `space`.
    private func prepared(_ vectors: [Float], dimension: Int, space: VectorSpace, field: String) throws -> [[Float]] {
        guard !vectors.isEmpty else { return [] }
        guard dimension == space.inputDimension else {
            throw WireError(.invalidArgument, "\(field): dimension \(dimension), the collection takes \(space.inputDimension)-D vectors")
        }
        guard vectors.count % dimension == 0 else {
            throw WireError(.invalidArgument, "\(field): \(vectors.count) floats is not a multiple of \(dimension)")
        }
        let rows: Matrix
        do { rows = try space.prepare(Matrix(rows: vectors.count / dimension, columns: dimension, values: vectors)) } catch {
            throw WireError(.invalidArgument, "\(field): \(error)")
        }
        return (0..<rows.rows).map { rows.row($0) }
    }

    /// One search round: every bucket asked of one node that serves it (the epoch's read
    /// plan), answers merged. A node that fails, or (with copies) has not answered within the
    /// hedge delay (the 95th percentile of recent answers, at least `minimumHedgeDelay`), has
    /// its buckets asked of their other copies; each node's share is answered once
    /// (`HedgedGroup`), so with two copies a dead or frozen node costs a second request, not a
    /// partial answer. Buckets no node could answer for are reported missing, with the nodes.
    func round(_ queries: [[Float]], request: SearchRequest, deadline: NIODeadline,
                       on loop: any EventLoop, attempt: Int = 1) -> EventLoopFuture<SearchResponse> {
        let remaining = deadline.remaining
        guard remaining > .zero else {
            return loop.makeFailedFuture(WireError(.deadlineExceeded, "the deadline passed before the search was sent"))
        }
        var shardRequest = request
        shardRequest.vectors = queries.flatMap { $0 }
        shardRequest.dimension = map.collection.dimension
        shardRequest.queryKeys = []
        // A few queries' lists are found here, once, on the event loop (each by a pass over int8
        // centroids, well under a millisecond); a larger batch's are left to the shards, on their
        // worker threads, rather than holding this loop for a matrix product.
        if options.assignsProbes, queries.count <= Self.assignedQueries, let assigner = probeAssigner.withLock({ $0 }) {
            shardRequest = assigner.assigning(shardRequest, queries: queries)
        }
        let template = shardRequest
        // The merge runs in a callback, outside the request's task-local context: bound again
        // there, so its "partial search" line still names the request.
        let requestID = RequestContext.requestID
        return tracked(on: loop) { routing in
            let epoch = routing.state.epoch
            @Sendable func send(_ plan: [Int: BucketSet]) -> [EventLoopFuture<ShardOutcome>] {
                let span = deadline.remaining
                return plan.sorted { $0.key < $1.key }.map { node, buckets in
                    var r = template
                    r.deadlineMilliseconds = Self.forwardable(span)
                    r.buckets = buckets.isFull ? .everything : BucketMask(count: buckets.count, bits: buckets.mask)
                    let answered = routing.links[node].send(.search(r), timeout: span, epoch: epoch, on: loop)
                        .map { ShardOutcome.success($0) }
                        .recover { .failure(Coordinator.wireError($0)) }
                    return self.timed(answered, node: routing.name(node))
                }
            }
            let hedgeDelay: TimeAmount? = routing.state.replication > 1
                ? Swift.max(self.searchLatencies.p95 ?? self.options.minimumHedgeDelay.timeAmount, self.options.minimumHedgeDelay.timeAmount)
                : nil
            let latencies = self.searchLatencies
            let onHedge = self.metrics?.countHedge
            return loop.flatSubmit {
                let groups = routing.plan.sorted { $0.key < $1.key }.map { node, buckets in
                    HedgedGroup(node: node, buckets: buckets, routing: routing, hedgeAfter: hedgeDelay, loop: loop,
                                latencies: latencies, onHedge: onHedge, send: send)
                }
                for group in groups { group.start() }
                return EventLoopFuture.whenAllSucceed(groups.map(\.futureResult), on: loop).map { $0.flatMap { $0 } }
            }.flatMap { outcomes in
                // A node that saw a newer map than this round's: the round runs again on it.
                let stale = outcomes.contains { HedgedGroup.isStaleMap($0.1) }
                if stale && attempt <= 2 && deadline.remaining > .zero {
                    // The map another coordinator changed is read first (a no-op with one coordinator).
                    return loop.makeFutureWithTask { try? await self.refreshMap() }.flatMap {
                        self.round(queries, request: request, deadline: deadline, on: loop, attempt: attempt + 1)
                    }
                }
                return loop.makeCompletedFuture {
                    try RequestContext.$requestID.withValue(requestID) {
                        try self.merged(outcomes, queries: queries.count, request: request, routing: routing)
                    }
                }
            }
        }
    }

    /// `answer`, with its time and outcome recorded under `node` (when measured).
    private func timed(_ answer: EventLoopFuture<ShardOutcome>, node: String) -> EventLoopFuture<ShardOutcome> {
        guard let metrics else { return answer }
        let sent = DispatchTime.now().uptimeNanoseconds
        answer.whenSuccess { outcome in
            var failed = false
            if case .failure = outcome { failed = true }
            metrics.shardAnswered(node: node, nanoseconds: DispatchTime.now().uptimeNanoseconds &- sent, failed: failed)
        }
        return answer
    }

    /// One search response from every node's outcome: merged hits, and what is missing (nodes
    /// that failed, and buckets no serving node holds).
    private func merged(_ outcomes: [(Int, ShardOutcome)], queries: Int, request: SearchRequest, routing: Routing) throws -> SearchResponse {
        var perShard: [[QueryHits]] = []
        var missing: [ShardFailure] = []
        var allLate = !outcomes.isEmpty
        var notReady: WireError?
        for (i, outcome) in outcomes {
            if case let .failure(error) = outcome, error.code == .deadlineExceeded {} else { allLate = false }
            switch outcome {
            case let .success(.searchResult(result)) where result.queries.count == queries:
                perShard.append(result.queries)
            case let .success(other):
                missing.append(ShardFailure(shard: routing.name(i), reason: "unexpected reply \(other.name)"))
            case let .failure(error):
                // Bad requests fail the same way on every shard: report them, not a partial answer.
                if error.code == .invalidArgument { throw error }
                if error.code == .notReady { notReady = error }
                if !missing.contains(where: { $0.shard == routing.name(i) }) {
                    missing.append(ShardFailure(shard: routing.name(i), reason: error.description))
                }
            }
        }
        for (node, count) in routing.unreadable.sorted(by: { $0.key < $1.key }) where !missing.contains(where: { $0.shard == node }) {
            missing.append(ShardFailure(shard: node, reason: "down, and the only copy of \(count) buckets"))
        }
        guard !perShard.isEmpty else {
            if let notReady { throw notReady }   // an untrained collection, not an outage
            throw WireError(allLate ? .deadlineExceeded : .unavailable,
                            "no shard answered: " + missing.map { "\($0.shard): \($0.reason)" }.joined(separator: "; "))
        }
        let higherIsBetter = space.higherIsBetter
        let hits = (0..<queries).map { q in
            TopKMerge.merge(perShard.map { $0[q] }, k: request.k, higherIsBetter: higherIsBetter,
                            dimension: request.withVectors ? map.collection.dimension : 0)
        }
        if !missing.isEmpty {
            metrics?.partialAnswers.increment()
            logger.warning("partial search", metadata: ["missing": "\(missing.map(\.shard))"])
        }
        return SearchResponse(queries: hits, missing: missing)
    }
}

extension NIODeadline {
    /// Time left until the deadline (zero once it passed).
    var remaining: Duration {
        let now = NIODeadline.now().uptimeNanoseconds
        return .nanoseconds(uptimeNanoseconds > now ? Int64(uptimeNanoseconds - now) : 0)
    }
}
