/// The result of a search over several list sources (`IVFPQIndex.search(_:k:parameters:sources:)`):
/// per query, the k best entries, each named by the source it lies in and the identity that
/// source gave it (`InvertedListSource.entryID`). The owner of the sources resolves hits
/// with its own identities; the engine's internal labels never leave it.
public struct SourcedSearchResult: Sendable, Equatable {
    /// One hit.
    public struct Hit: Sendable, Equatable {
        /// Index of the source in the searched list.
        public var source: Int
        /// The entry's identity in that source.
        public var entry: Int64
        /// Inner product (higher is better) or squared L2 distance (lower is better).
        public var score: Float
    }

    /// Scores and entry identities (-1 where fewer than k entries matched).
    public var result: SearchResult
    /// The source of each of `result.ids` (-1 where there is no hit).
    public var sources: [Int32]

    /// The hits of query `q`, best first.
    public func hits(ofQuery q: Int) -> [Hit] {
        let k = result.k
        return (q * k ..< (q + 1) * k).compactMap { i in
            sources[i] < 0 ? nil : Hit(source: Int(sources[i]), entry: result.ids[i], score: result.scores[i])
        }
    }

    /// Calls `body(source, positions)` once per source that holds hits of `queries`, with the
    /// positions (in `result.ids`) of those hits, in order. For owners that resolve hits per
    /// source: one lookup of the source per call rather than one per hit.
    public func forEachSource(in queries: Range<Int>, sourceCount: Int, _ body: (Int, [Int]) throws -> Void) rethrows {
        let k = result.k
        let range = queries.lowerBound * k ..< queries.upperBound * k
        if sourceCount == 1 {
            let positions = range.filter { sources[$0] == 0 }
            if !positions.isEmpty { try body(0, positions) }
            return
        }
        var bySource = [[Int]](repeating: [], count: sourceCount)
        for i in range where sources[i] >= 0 { bySource[Int(sources[i])].append(i) }
        for (s, positions) in bySource.enumerated() where !positions.isEmpty { try body(s, positions) }
    }
}
