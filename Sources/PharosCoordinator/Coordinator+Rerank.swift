import NIOCore
import NIOPosix
import PharosRerank
import PharosWire

/// Re-ranking, the last stage of a search: the final round asks the shards for a shortlist
/// with its vectors, and the coordinator orders it (`PharosRerank`) before cutting it to k.
extension Coordinator {
    /// Threads that re-rank (milliseconds of arithmetic per query): off the event loops, and
    /// off the shared pool that also runs Swift concurrency. Two: this machine's cores.
    static let rerankThreads: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        return pool
    }()

    /// The round that fetches what `rerank` orders: its shortlist's hits with their vectors.
    static func shortlistRound(_ round: SearchRequest, rerank: SearchRerank) -> SearchRequest {
        guard case let .diffusion(shortlist, _, _, _) = rerank else { return round }
        var shortlistRound = round
        shortlistRound.k = shortlist
        shortlistRound.withVectors = true
        shortlistRound.rerank = .none
        return shortlistRound
    }

    /// `round` for `queries`, re-ranked by `rerank` when it asks for it (on `rerankThreads`,
    /// within the request's deadline).
    func finalRound(_ queries: [[Float]], request round: SearchRequest, rerank: SearchRerank,
                    deadline: NIODeadline, on loop: any EventLoop) -> EventLoopFuture<SearchResponse> {
        guard rerank != .none else { return self.round(queries, request: round, deadline: deadline, on: loop) }
        let dimension = map.collection.dimension
        return self.round(queries, request: Self.shortlistRound(round, rerank: rerank), deadline: deadline, on: loop).flatMap { shortlists in
            Self.rerankThreads.runIfActive(eventLoop: loop) {
                try Self.reranked(shortlists, queries: queries, rerank: rerank, k: round.k, withVectors: round.withVectors,
                                  dimension: dimension, deadline: deadline)
            }
        }
    }

    /// Each query's shortlist in `response` ordered by `rerank` and cut to `k` (scores become
    /// the re-ranking's, higher better; vectors kept when the client asked for them). Throws
    /// when the deadline passes between queries, and when a shortlist came without its vectors
    /// (unranked hits must not pass for re-ranked ones).
    static func reranked(_ response: SearchResponse, queries: [[Float]], rerank: SearchRerank, k: Int,
                         withVectors: Bool, dimension: Int, deadline: NIODeadline = .distantFuture) throws -> SearchResponse {
        guard case let .diffusion(shortlist, neighbours, alpha, gamma) = rerank else { return response }
        let parameters = DiffusionParameters(shortlist: shortlist, neighbours: neighbours, alpha: alpha, gamma: gamma)
        var answer = response
        answer.reranked = rerank
        for (i, hits) in response.queries.enumerated() where i < queries.count {
            guard deadline.remaining > .zero else {
                throw WireError(.deadlineExceeded, "the deadline passed while re-ranking (query \(i + 1) of \(queries.count))")
            }
            let n = hits.keys.count
            guard hits.vectors.count == n * dimension, hits.scores.count == n else {
                throw WireError(.internalError, "query \(i): the shortlist came back with \(hits.vectors.count) vector floats for \(n) hits of dimension \(dimension): cannot re-rank it")
            }
            let order = Diffusion.rank(query: queries[i], vectors: hits.vectors, count: n, parameters: parameters).prefix(k)
            answer.queries[i] = QueryHits(keys: order.map { hits.keys[$0.index] }, scores: order.map(\.score),
                                          vectors: withVectors ? order.flatMap { hits.vectors[$0.index * dimension ..< ($0.index + 1) * dimension] } : [])
        }
        return answer
    }
}
