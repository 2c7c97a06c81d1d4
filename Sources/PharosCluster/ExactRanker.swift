import PharosCoordinator
import PharosIndex
import PharosRerank
import PharosVectors
import PharosWire

/// Exact ranking of a descriptor file (`pharos eval --database`): every database vector
/// scored against the query in the descriptors' space, with the same query expansion the
/// coordinator applies. The reference a cluster's approximate ranking is judged against.
public struct ExactRanker: Sendable {
    /// The descriptors' space: inner product; whitened and L2-normalised when given a whitening,
    /// else the vectors as the file holds them (extracted descriptors are unit-length already).
    public let space: VectorSpace
    /// The database, prepared in `space`.
    public let database: Matrix
    /// Key of each database row.
    public let keys: [String]
    private let rowOfKey: [String: Int]

    /// A ranker over `database` (rows keyed by `keys`), whitened by `whitening` when given.
    public init(database: Matrix, keys: [String], whitening: Whitening?) throws {
        space = try whitening?.descriptorSpace ?? VectorSpace(dimension: database.columns, metric: .innerProduct)
        self.database = try space.prepare(database)
        self.keys = keys
        rowOfKey = Dictionary(keys.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// The prepared database vector of `key`, if the database holds it.
    public func vector(ofKey key: String) -> [Float]? { rowOfKey[key].map { database.row($0) } }

    /// The keys of the `k` best database rows for `query` (already in `space`: a database
    /// vector, or `space.prepare` of a raw one), after `expansion`. A query that is itself the
    /// database row of key `own` is left out of its expansion's neighbours, as the cluster does.
    /// With `rerank`, the expanded query's shortlist is re-ranked as the coordinator does it.
    public func ranking(_ query: [Float], k: Int, expansion: QueryExpansion, own: String? = nil, rerank: SearchRerank = .none) -> [String] {
        var q = query
        let n = expansion.neighbours
        if n > 0 {
            let ownRow = own.flatMap { rowOfKey[$0] }
            let top = Array(best(q, n + (ownRow == nil ? 0 : 1)).filter { $0 != ownRow }.prefix(n))
            let hits = QueryHits(keys: top.map { keys[$0] }, scores: [], vectors: top.flatMap { database.row($0) })
            q = QueryExpansionMath.expand(query: q, hits: hits, expansion: expansion, space: space)
        }
        guard case let .diffusion(shortlist, neighbours, alpha, gamma) = rerank else { return best(q, k).map { keys[$0] } }
        let rows = best(q, shortlist)
        let order = Diffusion.rank(query: q, vectors: rows.flatMap { database.row($0) }, count: rows.count,
                                   parameters: DiffusionParameters(shortlist: shortlist, neighbours: neighbours, alpha: alpha, gamma: gamma))
        return order.prefix(k).map { keys[rows[$0.index]] }
    }

    /// Rows of the `count` best scores (ties by row), in `space`'s order.
    private func best(_ q: [Float], _ count: Int) -> [Int] {
        let scores = VectorMath.innerProducts(Matrix(rows: 1, columns: q.count, values: q), database).values
        let kept = min(count, scores.count)
        guard kept > 0 else { return [] }
        // One pass (`BoundedSelection`): a full sort of a million scores per query made `pharos
        // eval --database` take minutes at R1M scale.
        let space = self.space
        return BoundedSelection.best(kept, of: scores.indices) { a, b in
            space.ranks(scores[b], before: scores[a]) || (scores[a] == scores[b] && a > b)
        }
    }
}
