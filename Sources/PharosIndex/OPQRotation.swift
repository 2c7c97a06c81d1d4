import PharosVectors

/// Optimized product quantization's rotation (Ge et al. 2013, non-parametric variant as in
/// faiss's `OPQMatrix`): alternate training a PQ on rotated data and solving the orthogonal
/// Procrustes problem `min ||X R - Y||` by SVD, so that subspaces carry balanced variance.
public struct OPQRotation: Sendable, Equatable {
    /// The orthogonal `dimension x dimension` matrix R; a row vector x is rotated to `x R`.
    public internal(set) var matrix: Matrix

    /// The identity rotation.
    public init(identity dimension: Int) {
        var m = Matrix(rows: dimension, columns: dimension)
        for i in 0..<dimension { m.values[i * dimension + i] = 1 }
        matrix = m
    }

    /// A stored rotation.
    public init(matrix: Matrix) {
        precondition(matrix.rows == matrix.columns, "rotation must be square")
        self.matrix = matrix
    }

    /// Learns the rotation for a PQ with `subquantizers` sub-quantizers of `bits` bits.
    /// Defaults follow faiss: 50 outer iterations, 4 PQ iterations (40 for the first), at most
    /// 65,536 training points.
    public init(training data: Matrix, subquantizers: Int, bits: Int = 8, iterations: Int = 50,
                seed: UInt64 = 1234, threads: Int) throws {
        let d = data.columns
        var rng = SplitMix64(seed: seed)
        let x = data.rows > 65536 ? data.gathering(rows: rng.sample(65536, from: data.rows)) : data
        // Start from a random orthogonal matrix (QR of a Gaussian via SVD), as faiss does.
        var gaussian = Matrix(rows: d, columns: d)
        for i in 0..<gaussian.values.count { gaussian.values[i] = rng.nextGaussian() }
        let g = try LinearAlgebra.svd(gaussian)
        var rotation = BLAS.multiply(g.u, g.vt)
        var pq = try ProductQuantizer(dimension: d, subquantizers: subquantizers, bits: bits)
        for iteration in 0..<iterations {
            let rotated = BLAS.multiply(x, rotation)
            try pq.train(rotated, iterations: iteration == 0 ? 40 : 4, seed: seed &+ UInt64(iteration), threads: threads)
            let codes = pq.encode(rotated, threads: threads)
            var y = Matrix(rows: x.rows, columns: d)
            codes.withUnsafeBufferPointer { c in
                y.values.withUnsafeMutableBufferPointer { yp in
                    for i in 0..<x.rows { pq.decode(c.baseAddress! + i * subquantizers, into: yp.baseAddress! + i * d) }
                }
            }
            // R = argmin ||X R - Y||_F over orthogonal R: SVD of X^T Y = U S V^T gives R = U V^T.
            let xty = BLAS.multiplyTransposingFirst(x, y)
            let s = try LinearAlgebra.svd(xty)
            rotation = BLAS.multiply(s.u, s.vt)
        }
        matrix = rotation
    }

    /// `data * R`: rotated rows.
    public func apply(_ data: Matrix) -> Matrix { BLAS.multiply(data, matrix) }

    /// Maps rotated rows back: `data * R^T`.
    public func reverse(_ data: Matrix) -> Matrix { BLAS.multiplyTransposed(data, matrix) }
}
