import PharosVectors

/// The contract every Pharos index honours, in the spirit of faiss's `Index`.
///
/// - `train` learns whatever the index needs (centroids, codebooks, rotations) from a sample;
/// - `add` encodes vectors under caller-chosen unique ids;
/// - `search` returns the k best ids and scores per query, with per-call parameters;
/// - `reconstruct` returns the index's approximation of a stored vector.
///
/// Searches may run concurrently with each other; `train` and `add` take the index exclusively.
public protocol VectorIndex: AnyObject, Sendable {
    /// Components per vector.
    var dimension: Int { get }
    /// The similarity measure.
    var metric: Metric { get }
    /// Number of stored vectors.
    var count: Int { get }
    /// Whether `add` and `search` can be called.
    var isTrained: Bool { get }
    /// The factory string that re-creates this configuration.
    var factoryString: String { get }
    /// Bytes of index memory per stored vector (codes, ids and refine codes).
    var bytesPerVector: Int { get }

    /// Learns the index's parameters from `sample`.
    func train(_ sample: Matrix, threads: Int) throws
    /// Adds vectors under `ids` (or consecutive ids from `count` when nil).
    func add(_ vectors: Matrix, ids: [Int64]?, threads: Int) throws
    /// The `k` best matches of each query row.
    func search(_ queries: Matrix, k: Int, parameters: SearchParameters) throws -> SearchResult
    /// The stored approximation of the vector with `id`.
    func reconstruct(_ id: Int64) throws -> [Float]
    /// Serialises the whole index (configuration, trained state and contents).
    func encode(into writer: inout IndexFileWriter)
}

extension VectorIndex {
    /// Validates a batch of vectors against the index: dimension and finiteness.
    func validate(_ vectors: Matrix) throws {
        guard vectors.columns == dimension else {
            throw IndexError.dimensionMismatch(expected: dimension, found: vectors.columns)
        }
        if let bad = vectors.firstNonFinite() { throw IndexError.nonFiniteValue(row: bad.row, column: bad.column) }
    }
}
