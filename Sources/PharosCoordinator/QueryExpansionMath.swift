import Foundation
import PharosWire

/// Query expansion from a first search's hits (the retrieval literature's AQE and alpha-QE).
///
/// The new query is `q + sum_i w_i v_i` over the top `n` hits' vectors, L2-normalised:
/// - AQE: `w_i = 1` (the mean of the query and its neighbours, up to scale);
/// - alpha-QE: `w_i = max(s_i, 0)^alpha`, `s_i` the hit's similarity to the query (its inner
///   product, or `1 - d/2` for squared L2 distances, equal for unit vectors).
public enum QueryExpansionMath {
    /// The expanded query; `query` itself when there are no hits or the sum vanishes.
    public static func expand(query: [Float], hits: QueryHits, expansion: QueryExpansion, higherIsBetter: Bool) -> [Float] {
        let d = query.count
        let (n, alpha): (Int, Float?) = switch expansion {
        case .none: (0, nil)
        case let .averageQE(n): (n, nil)
        case let .alphaQE(n, alpha): (n, alpha)
        }
        let used = Swift.min(n, hits.keys.count, d > 0 ? hits.vectors.count / d : 0)
        guard used > 0 else { return query }
        var sum = query
        for i in 0..<used {
            var weight: Float = 1
            if let alpha {
                let similarity = higherIsBetter ? hits.scores[i] : 1 - hits.scores[i] / 2
                weight = powf(Swift.max(similarity, 0), alpha)
            }
            for j in 0..<d { sum[j] += weight * hits.vectors[i * d + j] }
        }
        let norm = sum.reduce(0) { $0 + $1 * $1 }.squareRoot()
        guard norm > 0, norm.isFinite else { return query }
        return sum.map { $0 / norm }
    }
}
