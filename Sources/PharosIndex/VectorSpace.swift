import PharosVectors

/// The one owner of a collection's vector space: what a vector must become before it is
/// stored or searched, and which scores rank first. Training, ingestion, search, query
/// expansion and evaluation all go through it, the way qdrant's `Distance` owns
/// `preprocess_vector` and `distance_order`, so they can never disagree.
///
/// Preparing a vector: check its dimension (the whitening's input, or `dimension`) and that
/// every component is finite, whiten it when the space has a whitening, then L2-normalise it
/// when the space is unit-norm. A whitened space is always unit-norm (the retrieval literature
/// re-normalises after whitening, and descriptors are compared by cosine).
public struct VectorSpace: Sendable, Equatable {
    /// Whether prepared vectors are scaled to unit length.
    public enum Normalization: String, Sendable, Equatable {
        /// Vectors are used as given (after any whitening).
        case none
        /// Vectors are L2-normalised.
        case l2
    }

    /// Components of a stored (prepared) vector.
    public let dimension: Int
    /// The similarity measure, and with it the score order.
    public let metric: Metric
    /// Normalisation asked for explicitly (a whitening implies `.l2`; see `isUnitNorm`).
    public let normalization: Normalization
    /// The whitening applied before normalisation, if any: `inputDimension -> dimension`.
    public let whitening: Whitening?

    /// A space; a whitening must produce `dimension`-D vectors.
    public init(dimension: Int, metric: Metric, normalization: Normalization = .none, whitening: Whitening? = nil) throws {
        guard dimension > 0 else { throw IndexError.invalidParameter(name: "dimension", value: "\(dimension)", allowed: ">= 1") }
        if let whitening, whitening.outputDimension != dimension {
            throw IndexError.invalidParameter(name: "whitening output dimension", value: "\(whitening.outputDimension)",
                                              allowed: "\(dimension) (the collection's dimension)")
        }
        self.init(checked: dimension, metric: metric, normalization: normalization, whitening: whitening)
    }

    /// A space whose dimensions are known to agree (a whitening's own output dimension).
    init(checked dimension: Int, metric: Metric, normalization: Normalization, whitening: Whitening?) {
        assert(dimension > 0 && (whitening?.outputDimension ?? dimension) == dimension, "dimensions disagree")
        self.dimension = dimension
        self.metric = metric
        self.normalization = normalization
        self.whitening = whitening
    }

    /// The dimension of the vectors callers give: the whitening's input, or `dimension`.
    public var inputDimension: Int { whitening?.inputDimension ?? dimension }

    /// Whether every prepared vector has unit length: normalised explicitly or whitened.
    public var isUnitNorm: Bool { normalization == .l2 || whitening != nil }

    /// Whether higher scores rank first (inner product); lower first for squared L2.
    public var higherIsBetter: Bool { metric == .innerProduct }

    /// Whether score `a` ranks before score `b` in this space.
    @inline(__always) public func ranks(_ a: Float, before b: Float) -> Bool { higherIsBetter ? a > b : a < b }

    /// The same space with another whitening (or none).
    public func with(whitening: Whitening?) throws -> VectorSpace {
        try VectorSpace(dimension: dimension, metric: metric, normalization: normalization, whitening: whitening)
    }

    /// Input rows (`inputDimension` columns) in the space's stored form. Throws
    /// `IndexError.dimensionMismatch` or `.nonFiniteValue` naming the row and column.
    public func prepare(_ rows: Matrix) throws -> Matrix {
        guard rows.columns == inputDimension else { throw IndexError.dimensionMismatch(expected: inputDimension, found: rows.columns) }
        if let bad = rows.firstNonFinite() { throw IndexError.nonFiniteValue(row: bad.row, column: bad.column) }
        var out = try whitening?.project(rows) ?? rows
        if isUnitNorm { VectorMath.normalizeRows(&out) }
        return out
    }

    /// One input vector in the space's stored form (see `prepare(_:)` for rows).
    public func prepare(_ vector: [Float]) throws -> [Float] {
        try prepare(Matrix(rows: 1, columns: vector.count, values: vector)).values
    }

    /// A vector already in the space but moved off it (a stored vector reconstructed from its
    /// codes, a combination of vectors): brought back onto the unit sphere when the space is
    /// unit-norm, else returned unchanged. No whitening: it is already whitened.
    public func conformed(_ vector: [Float]) -> [Float] {
        isUnitNorm ? VectorMath.normalized(vector) : vector
    }
}
