/// Deterministic clustered vectors for scale tests and benchmarks.
///
/// `clusters` Gaussian centres N(0, 1); each vector is a centre (chosen uniformly) plus
/// N(0, spread^2) noise, optionally L2-normalised (a stand-in for GeM descriptors, searched by
/// inner product). The same seed gives the same vectors on every machine, in any batch size.
public struct SyntheticDataset: Sendable {
    /// Vector dimension.
    public let dimension: Int
    /// Number of cluster centres.
    public let clusters: Int
    /// Standard deviation of the noise around a centre.
    public let spread: Float
    /// Whether vectors are scaled to unit norm.
    public let normalized: Bool
    /// Seed of the centres.
    public let seed: UInt64
    private let centres: Matrix

    /// Creates a generator; the centres are drawn at once from `seed`.
    public init(dimension: Int, clusters: Int, spread: Float = 0.5, normalized: Bool, seed: UInt64) {
        precondition(dimension > 0 && clusters > 0, "dimension and clusters must be positive")
        self.dimension = dimension
        self.clusters = clusters
        self.spread = spread
        self.normalized = normalized
        self.seed = seed
        var rng = SplitMix64(seed: seed)
        var c = Matrix(rows: clusters, columns: dimension)
        for i in 0..<c.values.count { c.values[i] = rng.nextGaussian() }
        centres = c
    }

    /// Vectors `range` of the stream named `stream` (e.g. 0 for the base set, 1 for queries).
    /// Each vector depends only on (seed, stream, index), so batches can be generated in any order.
    public func vectors(_ range: Range<Int>, stream: UInt64) -> Matrix {
        var out = Matrix(rows: range.count, columns: dimension)
        for (row, index) in range.enumerated() {
            var rng = SplitMix64(seed: seed ^ (stream &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(index) &* 0xD1B5_4A32_D192_ED03))
            let centre = Int(rng.next() % UInt64(clusters))
            for j in 0..<dimension {
                out.values[row * dimension + j] = centres.values[centre * dimension + j] + spread * rng.nextGaussian()
            }
        }
        if normalized { VectorMath.normalizeRows(&out) }
        return out
    }
}
