import Foundation
import PharosIndex
import PharosWire

/// Query expansion from a first search's hits (the retrieval literature's AQE and alpha-QE).
///
/// The new query combines the query with its top `n` hits' vectors `v_i`, weighted by
/// - AQE: `w_i = 1`;
/// - alpha-QE: `w_i = max(cos(q, v_i), 0)^alpha`, the cosine taken from the vectors
///   themselves, so it means the same for inner-product and L2 collections.
///
/// In a unit-norm space (normalised or whitened descriptors) the sum `q + sum w_i v_i` is
/// brought back onto the sphere by the space (`VectorSpace.conformed`), as in the literature;
/// in others it is divided by `1 + sum w_i` (a weighted mean), which keeps the query on the
/// data's scale. Either way the new query is in the collection's space.
public enum QueryExpansionMath {
    /// The expanded query; `query` itself when there are no hit vectors.
    public static func expand(query: [Float], hits: QueryHits, expansion: QueryExpansion, space: VectorSpace) -> [Float] {
        let d = query.count
        let (n, alpha): (Int, Float?) = switch expansion {
        case .none: (0, nil)
        case let .averageQE(n): (n, nil)
        case let .alphaQE(n, alpha): (n, alpha)
        }
        let used = Swift.min(n, hits.keys.count, d > 0 ? hits.vectors.count / d : 0)
        guard used > 0 else { return query }
        let queryNorm = norm(query[...])
        var sum = query
        var totalWeight: Float = 1
        for i in 0..<used {
            let v = hits.vectors[i * d ..< (i + 1) * d]
            var weight: Float = 1
            if let alpha {
                let vNorm = norm(v)
                let cosine = queryNorm > 0 && vNorm > 0 ? zip(query, v).reduce(0) { $0 + $1.0 * $1.1 } / (queryNorm * vNorm) : 0
                weight = powf(Swift.max(cosine, 0), alpha)
            }
            for (j, x) in v.enumerated() { sum[j] += weight * x }
            totalWeight += weight
        }
        if space.isUnitNorm {
            let length = norm(sum[...])
            return length > 0 && length.isFinite ? space.conformed(sum) : query
        }
        return sum.map { $0 / totalWeight }
    }

    private static func norm(_ v: ArraySlice<Float>) -> Float { v.reduce(0) { $0 + $1 * $1 }.squareRoot() }
}
