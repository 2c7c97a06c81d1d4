import Foundation
import PharosIndex
import PharosVectors
import PharosWire

/// `pharos search` as a library: queries (vectors or keys of indexed entries) sent through
/// the coordinator in batches, one request at a time, with each request's latency; recall
/// against exact neighbours when keys are row numbers.
public struct ClusterSearch: Sendable {
    /// What the queries ask.
    public var k = 10
    /// Lists probed per query.
    public var nprobe = 16
    /// Refine factor.
    public var refineFactor = 4
    /// Query expansion.
    public var expansion = QueryExpansion.none
    /// Per-request deadline, in milliseconds.
    public var deadlineMilliseconds = 5000
    /// Queries per request.
    public var batch = 1
    /// Re-ranking of each query's shortlist (by the coordinator).
    public var rerank = SearchRerank.none

    /// A search configuration.
    public init(k: Int = 10, nprobe: Int = 16, refineFactor: Int = 4, expansion: QueryExpansion = .none,
                deadlineMilliseconds: Int = 5000, batch: Int = 1, rerank: SearchRerank = .none) {
        self.k = k
        self.nprobe = nprobe
        self.refineFactor = refineFactor
        self.expansion = expansion
        self.deadlineMilliseconds = deadlineMilliseconds
        self.batch = Swift.max(1, batch)
        self.rerank = rerank
    }

    /// `request` with this configuration's re-ranking.
    private func reranking(_ request: SearchRequest) -> SearchRequest {
        var request = request
        request.rerank = rerank
        return request
    }

    /// Refuses an answer that was not re-ranked as asked: a coordinator older than protocol
    /// version 4 ignores `Search.rerank` and would answer in the first search's order.
    private func checkReranked(_ result: SearchResponse) throws {
        guard result.reranked.kind == rerank.kind else {
            throw WireError(.unsupported, "the coordinator answered without the \(rerank.kind) re-ranking asked for (it answered \(result.reranked.kind)): it predates protocol version \(Hello.rerankVersion); upgrade it")
        }
    }

    /// What a run saw.
    public struct Run: Sendable {
        /// Every query's hits, in query order.
        public var hits: [QueryHits] = []
        /// Each request's latency in milliseconds.
        public var latencies: [Double] = []
        /// Wall-clock seconds of the whole run.
        public var seconds: Double = 0
        /// Requests answered partially (a shard missing).
        public var partialAnswers = 0
    }

    /// Runs every query: the rows of `vectors`, or (when it is empty) `keys`. `partial` is
    /// told of each partial answer (the missing shards and why).
    public func run(through client: WireClient, vectors: Matrix, keys: [String],
                    partial: @escaping @Sendable ([ShardFailure]) -> Void = { _ in }) async throws -> Run {
        let count = keys.isEmpty ? vectors.rows : keys.count
        var run = Run()
        let start = Date()
        for first in stride(from: 0, to: count, by: batch) {
            let range = first ..< Swift.min(count, first + batch)
            let request = keys.isEmpty
                ? SearchRequest(vectors: vectors.rows(range).values, dimension: vectors.columns, k: k, nprobe: nprobe,
                                refineFactor: refineFactor, expansion: expansion, deadlineMilliseconds: deadlineMilliseconds)
                : SearchRequest(queryKeys: Array(keys[range]), k: k, nprobe: nprobe, refineFactor: refineFactor, expansion: expansion,
                                deadlineMilliseconds: deadlineMilliseconds)
            let clock = Date()
            let reply = try await client.call(.search(reranking(request)), timeout: .milliseconds(Int64(deadlineMilliseconds) + 1000))
            guard case let .searchResult(result) = reply else {
                throw WireError(.internalError, "the coordinator answered Search with \(reply.name)")
            }
            try checkReranked(result)
            run.latencies.append(Date().timeIntervalSince(clock) * 1000)
            if result.partial {
                run.partialAnswers += 1
                partial(result.missing)
            }
            run.hits += result.queries
        }
        run.seconds = Date().timeIntervalSince(start)
        return run
    }

    /// One ranking (keys, best first) per query key, for evaluation: a query with a vector in
    /// `vectors` is searched by it, any other by its key (an indexed entry). `partial` hears
    /// each partial answer with the query's key.
    ///
    /// A ranking may be as deep as the protocol's `k` allows (a whole evaluation collection);
    /// the refine factor is lowered as far as needed (to 1) to keep the shortlist within limits.
    public func rankings(of keys: [String], vectors: [String: [Float]], through client: WireClient,
                         partial: @escaping @Sendable (String, [ShardFailure]) -> Void = { _, _ in }) async throws -> [[String]] {
        var out: [[String]] = []
        let asked = self.refineFactor == 0 ? SearchRequest.defaultRefineFactor : self.refineFactor
        var depth = k
        if case let .diffusion(shortlist, _, _, _) = rerank { depth = Swift.max(k, shortlist) }
        let refineFactor = Swift.max(1, Swift.min(asked, RequestLimits().shortlistLimit(queries: 1) / Swift.max(1, depth)))
        for key in keys {
            let request = vectors[key].map {
                SearchRequest(vectors: $0, dimension: $0.count, k: k, nprobe: nprobe, refineFactor: refineFactor, expansion: expansion,
                              deadlineMilliseconds: deadlineMilliseconds)
            } ?? SearchRequest(queryKeys: [key], k: k, nprobe: nprobe, refineFactor: refineFactor, expansion: expansion,
                               deadlineMilliseconds: deadlineMilliseconds)
            let reply = try await client.call(.search(reranking(request)), timeout: .milliseconds(Int64(deadlineMilliseconds) + 1000))
            guard case let .searchResult(result) = reply, result.queries.count == 1 else {
                throw WireError(.internalError, "query \(key): the coordinator answered \(reply.name)")
            }
            try checkReranked(result)
            if result.partial { partial(key, result.missing) }
            out.append(result.queries[0].keys)
        }
        return out
    }

    /// Recall@1/10/100 of `hits` whose keys are `keyPrefix` + row number, against the exact
    /// neighbour rows in `truth` (.ivecs).
    public static func recall(of hits: [QueryHits], k: Int, keyPrefix: String, truth: String) throws -> [(at: Int, recall: Double)] {
        try GroundTruth.recall(ofKeys: hits.map(\.keys), k: k, keyPrefix: keyPrefix, truth: truth)
    }
}
