import PharosKernels
import PharosVectors

/// Splits vectors into `subquantizers` equal sub-vectors and encodes each as the index of its
/// nearest centroid in a per-subspace codebook of `1 << bits` entries (faiss `ProductQuantizer`).
///
/// Codes are kept one byte per sub-quantizer even for 4 bits; the fast-scan layout packs them
/// into blocks when they are stored in a list (`FastScanPacking`).
public struct ProductQuantizer: Sendable, Equatable {
    /// Full vector dimension.
    public let dimension: Int
    /// Number of sub-quantizers M.
    public let subquantizers: Int
    /// Bits per sub-quantizer code: 4 or 8.
    public let bits: Int
    /// `subquantizers * centroidsPerSubspace * subDimension` floats, subspace-major.
    public internal(set) var codebooks: [Float] {
        didSet { transposedCodebooks = ProductQuantizer.transpose(codebooks, subquantizers: subquantizers, bits: bits, dimension: dimension) }
    }
    /// The codebooks transposed per subspace (`dsub x ksub`), the layout the table kernel scans.
    private(set) var transposedCodebooks: [Float] = []

    /// Centroids per subspace (16 or 256).
    public var centroidsPerSubspace: Int { 1 << bits }
    /// Components per sub-vector.
    public var subDimension: Int { dimension / subquantizers }
    /// Bytes of one stored code: M for 8 bits, ceil(M / 2) for 4 bits.
    public var codeBytes: Int { bits == 8 ? subquantizers : (subquantizers + 1) / 2 }

    /// An untrained quantizer; `dimension` must be divisible by `subquantizers`.
    public init(dimension: Int, subquantizers: Int, bits: Int) throws {
        guard bits == 4 || bits == 8 else {
            throw IndexError.invalidParameter(name: "PQ bits", value: "\(bits)", allowed: "4 or 8")
        }
        guard subquantizers >= 1, subquantizers <= 1024, dimension % subquantizers == 0 else {
            throw IndexError.invalidParameter(name: "PQ sub-quantizers", value: "\(subquantizers)",
                                              allowed: "a divisor of the dimension \(dimension) (at most 1024)")
        }
        self.dimension = dimension
        self.subquantizers = subquantizers
        self.bits = bits
        codebooks = []
    }

    /// Whether `train` has run.
    public var isTrained: Bool { !codebooks.isEmpty }

    /// Trains each subspace's codebook by k-means (in parallel across subspaces).
    public mutating func train(_ data: Matrix, iterations: Int = 25, seed: UInt64 = 1234, threads: Int) throws {
        precondition(data.columns == dimension, "PQ training dimension mismatch")
        let ksub = centroidsPerSubspace, dsub = subDimension, m = subquantizers
        guard data.rows >= ksub else {
            throw IndexError.notEnoughTrainingData(needed: ksub, found: data.rows, what: "PQ with \(ksub) centroids per subspace")
        }
        var rng = SplitMix64(seed: seed)
        let sample = data.rows > ksub * 256 ? data.gathering(rows: rng.sample(ksub * 256, from: data.rows)) : data
        var books = [Float](repeating: 0, count: m * ksub * dsub)
        let failure = ErrorBox()
        books.withSendablePointer { out in
        Parallel.forEachChunk(count: m, chunkSize: 1, threads: threads) { range in
            let sub = range.lowerBound
            let subData = ProductQuantizer.subMatrix(sample, columns: sub * dsub ..< (sub + 1) * dsub)
            var config = KMeans.Configuration(clusters: ksub)
            config.iterations = iterations
            config.seed = seed &+ UInt64(sub) &* 7919
            config.threads = 1
            do {
                let km = try KMeans(training: subData, configuration: config)
                km.centroids.values.withUnsafeBufferPointer {
                    (out.pointer + sub * ksub * dsub).update(from: $0.baseAddress!, count: ksub * dsub)
                }
            } catch {
                failure.set(error)
            }
        }
        }
        if let error = failure.error { throw error }
        codebooks = books
    }

    /// Codes of every row (one byte per sub-quantizer, `rows * subquantizers` bytes).
    public func encode(_ data: Matrix, threads: Int) -> [UInt8] {
        precondition(isTrained, "PQ used before training")
        precondition(data.columns == dimension, "PQ encoding dimension mismatch")
        let n = data.rows, m = subquantizers
        var codes = [UInt8](repeating: 0, count: n * m)
        guard n > 0 else { return codes }
        let norms = codewordNorms()
        codes.withSendablePointer { out in
        data.values.withUnsafeBufferPointer { x in
            transposedCodebooks.withUnsafeBufferPointer { cb in
                norms.withUnsafeBufferPointer { nb in
                    let xp = SendablePointer(readOnly: x.baseAddress!)
                    let cbp = SendablePointer(readOnly: cb.baseAddress!)
                    let np = SendablePointer(readOnly: nb.baseAddress!)
                    Parallel.forEachChunk(count: n, chunkSize: 4096, threads: threads) { chunk in
                        pharos_pq_encode(xp.pointer + chunk.lowerBound * dimension, chunk.count, dimension, cbp.pointer,
                                         np.pointer, m, centroidsPerSubspace, out.pointer + chunk.lowerBound * m)
                    }
                }
            }
        }
        }
        return codes
    }

    /// Writes the reconstruction of one code (one byte per sub-quantizer) to `output`.
    public func decode(_ code: UnsafePointer<UInt8>, into output: UnsafeMutablePointer<Float>) {
        let ksub = centroidsPerSubspace, dsub = subDimension
        codebooks.withUnsafeBufferPointer { cb in
            for s in 0..<subquantizers {
                let centroid = cb.baseAddress! + (s * ksub + Int(code[s])) * dsub
                (output + s * dsub).update(from: centroid, count: dsub)
            }
        }
    }

    /// `table[s * ksub + j] = <query_s, centroid_sj>` for one query.
    public func innerProductTable(_ query: UnsafePointer<Float>, into table: UnsafeMutablePointer<Float>) {
        transposedCodebooks.withUnsafeBufferPointer { cb in
            pharos_pq_inner_product_table(query, cb.baseAddress!, subquantizers, centroidsPerSubspace, subDimension, table)
        }
    }

    /// Squared norm of every codeword, `subquantizers * ksub` values.
    public func codewordNorms() -> [Float] {
        let ksub = centroidsPerSubspace, dsub = subDimension
        return codebooks.withUnsafeBufferPointer { cb in
            (0..<(subquantizers * ksub)).map { i in pharos_dot(cb.baseAddress! + i * dsub, cb.baseAddress! + i * dsub, dsub) }
        }
    }

    private static func transpose(_ books: [Float], subquantizers: Int, bits: Int, dimension: Int) -> [Float] {
        guard !books.isEmpty else { return [] }
        let ksub = 1 << bits, dsub = dimension / subquantizers
        var out = [Float](repeating: 0, count: books.count)
        for m in 0..<subquantizers {
            for j in 0..<ksub {
                for t in 0..<dsub { out[(m * dsub + t) * ksub + j] = books[(m * ksub + j) * dsub + t] }
            }
        }
        return out
    }

    /// The columns `columns` of `data` as a new matrix.
    static func subMatrix(_ data: Matrix, columns: Range<Int>) -> Matrix {
        var out = [Float](repeating: 0, count: data.rows * columns.count)
        for i in 0..<data.rows {
            for (j, c) in columns.enumerated() { out[i * columns.count + j] = data.values[i * data.columns + c] }
        }
        return Matrix(rows: data.rows, columns: columns.count, values: out)
    }
}

/// Collects the first error thrown inside a parallel loop.
final class ErrorBox: @unchecked Sendable {
    // Guarded by `lock`.
    private let lock = ReadWriteLock()
    private var stored: Error?

    func set(_ error: Error) { lock.withWriteLock { if stored == nil { stored = error } } }
    var error: Error? { lock.withReadLock { stored } }
}
