/// The k best matches of each query, best first.
public struct SearchResult: Sendable, Equatable {
    /// Number of queries.
    public let queryCount: Int
    /// Results per query.
    public let k: Int
    /// `queryCount * k` ids, row-major; -1 where fewer than k vectors matched.
    public var ids: [Int64]
    /// Scores matching `ids`: inner products (descending) or squared L2 distances (ascending).
    public var scores: [Float]

    /// Creates an empty result filled with -1 ids.
    public init(queryCount: Int, k: Int, metric: Metric) {
        self.queryCount = queryCount
        self.k = k
        ids = [Int64](repeating: -1, count: queryCount * k)
        scores = [Float](repeating: metric == .innerProduct ? -.infinity : .infinity, count: queryCount * k)
    }

    /// The ids of query `q`.
    public func ids(ofQuery q: Int) -> ArraySlice<Int64> { ids[q * k ..< (q + 1) * k] }
    /// The scores of query `q`.
    public func scores(ofQuery q: Int) -> ArraySlice<Float> { scores[q * k ..< (q + 1) * k] }
}
