import Foundation
import PharosVectors

/// Diffusion re-ranking of one query's shortlist (Iscen et al., CVPR 2017, "Efficient
/// Diffusion on Region Manifolds"): similarity spread over a k-NN graph of the shortlist finds
/// the photos of the same object that a single comparison with the query misses (other
/// viewpoints, reached through photos between them).
///
/// - Affinities are cosines raised to `gamma`, negative ones zero: `a(x, y) = max(cos, 0)^gamma`
///   (cosines, so that the graph means the same in inner-product and L2 collections; a row
///   of zeros or of non-finite values has no affinity with anything).
/// - The graph `W` keeps `a(x_i, x_j)` where `i` and `j` are each among the other's `k` nearest
///   shortlist entries (mutual neighbours, as the paper's code), zero elsewhere; `S =
///   D^-1/2 W D^-1/2` with `D` its row sums (a node without edges keeps a zero row).
/// - The query enters as the start vector `y`: `y_i = a(q, x_i)` for its `k` nearest
///   shortlist entries, zero elsewhere (the paper's treatment of an unseen query, so a query
///   need not be in the collection; a query by key is its own nearest entry).
/// - `f` solves `(I - alpha S) f = y` by conjugate gradient (the matrix is symmetric positive
///   definite for alpha < 1), from `f = 0`, at most `DiffusionParameters.maximumIterations`
///   steps; the shortlist is ranked by `f`, ties in shortlist order.
///
/// Deterministic: the same inputs give the same order (the cosines by one BLAS product, the
/// rest in a fixed order), whether the shortlist came from the cluster or an exact ranking.
public enum Diffusion {
    /// The shortlist re-ranked: each entry's shortlist position and its diffusion score `f`,
    /// best first. `vectors` holds `count` rows of `query.count` floats (the shortlist, best
    /// first); `parameters.shortlist` is not applied here (the caller cut the list). Rows that
    /// do not match the query's dimension leave the shortlist in its order, with zero scores.
    public static func rank(query: [Float], vectors: [Float], count: Int, parameters: DiffusionParameters) -> [(index: Int, score: Float)] {
        guard count > 0, !query.isEmpty, vectors.count == count * query.count else {
            return (0..<Swift.max(0, count)).map { ($0, 0) }
        }
        let (transition, start) = graph(query: query, vectors: vectors, count: count, parameters: parameters)
        let f = solve(transition, count: count, start: start, alpha: Double(parameters.alpha),
                      maximumIterations: DiffusionParameters.maximumIterations).solution
        return (0..<count).sorted { f[$0] != f[$1] ? f[$0] > f[$1] : $0 < $1 }.map { ($0, Float(f[$0])) }
    }

    /// The normalised graph `S` (`count x count`, row-major, symmetric) and the start vector `y`
    /// of `query` over `vectors` (`count` rows of `query.count` floats).
    static func graph(query: [Float], vectors: [Float], count: Int, parameters: DiffusionParameters) -> (transition: [Double], start: [Double]) {
        let d = query.count
        let k = Swift.max(1, Swift.min(parameters.neighbours, count))
        let rows = Matrix(rows: count, columns: d, values: normalised(vectors, count: count, dimension: d))
        let q = Matrix(rows: 1, columns: d, values: normalised(query, count: 1, dimension: d))
        let gram = VectorMath.innerProducts(rows, rows).values
        let querySimilarity = VectorMath.innerProducts(q, rows).values
        let gamma = Double(parameters.gamma)
        func affinity(_ cosine: Float) -> Double { cosine > 0 ? pow(Double(Swift.min(cosine, 1)), gamma) : 0 }
        // One triangle of the Gram matrix for both (i, j) and (j, i): exactly symmetric.
        func cosine(_ i: Int, _ j: Int) -> Float { gram[Swift.min(i, j) * count + Swift.max(i, j)] }

        var isNeighbour = [Bool](repeating: false, count: count * count)
        for i in 0..<count {
            for j in largest(k, of: count, excluding: i, score: { cosine(i, $0) }) { isNeighbour[i * count + j] = true }
        }
        var weights = [Double](repeating: 0, count: count * count)
        for i in 0..<count {
            for j in 0..<count where isNeighbour[i * count + j] && isNeighbour[j * count + i] {
                weights[i * count + j] = affinity(cosine(i, j))
            }
        }
        var start = [Double](repeating: 0, count: count)
        for i in largest(k, of: count, excluding: nil, score: { querySimilarity[$0] }) { start[i] = affinity(querySimilarity[i]) }
        return (normalisedSymmetric(weights, count: count), start)
    }

    /// `D^-1/2 W D^-1/2` of a symmetric `count x count` weight matrix (row-major).
    static func normalisedSymmetric(_ weights: [Double], count: Int) -> [Double] {
        let scale = (0..<count).map { i -> Double in
            let degree = weights[i * count ..< (i + 1) * count].reduce(0, +)
            return degree > 0 ? 1 / degree.squareRoot() : 0
        }
        var s = weights
        for i in 0..<count { for j in 0..<count { s[i * count + j] *= scale[i] * scale[j] } }
        return s
    }

    /// Solves `(I - alpha S) f = start` by conjugate gradient from `f = 0`; stops when the
    /// residual is `DiffusionParameters.tolerance` of `start`'s length, or after
    /// `maximumIterations` steps.
    static func solve(_ s: [Double], count: Int, start: [Double], alpha: Double,
                      maximumIterations: Int) -> (solution: [Double], iterations: Int) {
        var product = [Double](repeating: 0, count: count)
        func apply(_ p: [Double]) {
            s.withUnsafeBufferPointer { s in
                for i in 0..<count {
                    var sum = 0.0
                    for j in 0..<count { sum += s[i * count + j] * p[j] }
                    product[i] = p[i] - alpha * sum
                }
            }
        }
        func dot(_ a: [Double], _ b: [Double]) -> Double {
            var sum = 0.0
            for i in 0..<count { sum += a[i] * b[i] }
            return sum
        }
        var f = [Double](repeating: 0, count: count)
        var residual = start
        var direction = residual
        var squared = dot(residual, residual)
        let goal = DiffusionParameters.tolerance * squared.squareRoot()
        guard squared > 0, squared.isFinite else { return (f, 0) }
        for step in 1...Swift.max(1, maximumIterations) {
            apply(direction)
            let curvature = dot(direction, product)
            guard curvature > 0 else { return (f, step - 1) }
            let length = squared / curvature
            for i in 0..<count {
                f[i] += length * direction[i]
                residual[i] -= length * product[i]
            }
            let next = dot(residual, residual)
            if next.squareRoot() <= goal { return (f, step) }
            let beta = next / squared
            for i in 0..<count { direction[i] = residual[i] + beta * direction[i] }
            squared = next
        }
        return (f, maximumIterations)
    }

    /// The `k` indices of `0..<count` (but `excluding`) with the largest `score`, ties to the
    /// lower index; NaN scores never chosen.
    static func largest(_ k: Int, of count: Int, excluding: Int?, score: (Int) -> Float) -> [Int] {
        BoundedSelection.best(k, of: (0..<count).filter { $0 != excluding && !score($0).isNaN }) { a, b in
            score(a) != score(b) ? score(a) < score(b) : a > b
        }
    }

    /// Rows scaled to unit length (in double precision); rows of zeros or with a non-finite
    /// value become zero.
    private static func normalised(_ values: [Float], count: Int, dimension d: Int) -> [Float] {
        var out = values
        for i in 0..<count {
            let row = values[i * d ..< (i + 1) * d]
            let length = row.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            let finite = length > 0 && length.isFinite
            for c in 0..<d { out[i * d + c] = finite ? Float(Double(values[i * d + c]) / length) : 0 }
        }
        return out
    }
}
