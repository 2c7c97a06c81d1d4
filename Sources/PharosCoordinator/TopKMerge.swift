import PharosWire

/// Merges the top-k lists of several shards for one query into one top-k.
///
/// Every shard scores with the same trained state, so scores are comparable; ties are broken
/// by key so the result does not depend on which shard answered first.
public enum TopKMerge {
    /// The best `k` of `lists`: highest scores first when `higherIsBetter` (inner product),
    /// lowest first otherwise (squared L2). Vectors, when every list carries them, follow
    /// their keys (`dimension` floats each).
    public static func merge(_ lists: [QueryHits], k: Int, higherIsBetter: Bool, dimension: Int = 0) -> QueryHits {
        var candidates: [(score: Float, key: String, list: Int, row: Int)] = []
        candidates.reserveCapacity(lists.reduce(0) { $0 + $1.keys.count })
        for (l, hits) in lists.enumerated() {
            for (r, key) in hits.keys.enumerated() { candidates.append((hits.scores[r], key, l, r)) }
        }
        let better: (Float, Float) -> Bool = higherIsBetter ? { $0 > $1 } : { $0 < $1 }
        // A partial selection would do; k and the shard count are small, so a sort is clear.
        candidates.sort { a, b in a.score != b.score ? better(a.score, b.score) : a.key < b.key }
        let kept = candidates.prefix(k)
        let withVectors = dimension > 0 && lists.allSatisfy { $0.vectors.count == $0.keys.count * dimension }
        return QueryHits(keys: kept.map(\.key), scores: kept.map(\.score),
                         vectors: withVectors ? kept.flatMap { Array(lists[$0.list].vectors[$0.row * dimension ..< ($0.row + 1) * dimension]) } : [])
    }
}
