import PharosKernels
import Synchronization
import PharosVectors

/// Inverted-file index with product-quantized residuals: the engine of every Pharos shard.
///
/// One class covers the faiss family `[OPQm,][IVFn,]PQm[x4fs|x8][,Refine*]`:
/// - an optional OPQ rotation applied to every vector first;
/// - a coarse quantizer of `lists` centroids (one all-zero centroid when `lists == 1`, which
///   makes it a plain PQ index) choosing `nprobe` lists per query;
/// - residuals (vector minus centroid) encoded by a PQ of 8-bit codes scanned with float
///   look-up tables, or 4-bit codes packed in fast-scan blocks scanned with quantized 8-bit
///   tables by the SIMD kernel, several queries per block;
/// - optional refine codes re-ranking a shortlist of `refineFactor * k` candidates.
///
/// Lists store their codes contiguously, with ids (and refine codes) in the same order.
public final class IVFPQIndex: VectorIndex, @unchecked Sendable {
    // @unchecked: trained state and lists are mutated only under the write lock; searches
    // read them under the read lock.

    /// A whole configuration, as a factory string names it.
    public struct Configuration: Sendable, Equatable {
        /// Vector dimension.
        public var dimension: Int
        /// Similarity measure.
        public var metric: Metric
        /// OPQ rotation trained for this many sub-quantizers, or nil for none.
        public var opqSubquantizers: Int?
        /// Number of inverted lists (1 = plain PQ, no coarse quantizer).
        public var lists: Int
        /// PQ sub-quantizers.
        public var subquantizers: Int
        /// Bits per PQ code: 8, or 4 for fast scan.
        public var bits: Int
        /// Refine codes, if any.
        public var refine: RefineCodec.Kind?
        /// The threshold T of score-aware (anisotropic) quantization for inner product, or nil
        /// for plain PQ (`ProductQuantizer+Anisotropic`; factory suffix `_aq<T>`).
        public var anisotropicThreshold: Float?

        /// Creates a configuration.
        public init(dimension: Int, metric: Metric, opqSubquantizers: Int? = nil, lists: Int,
                    subquantizers: Int, bits: Int, refine: RefineCodec.Kind? = nil, anisotropicThreshold: Float? = nil) {
            self.dimension = dimension
            self.metric = metric
            self.opqSubquantizers = opqSubquantizers
            self.lists = lists
            self.subquantizers = subquantizers
            self.bits = bits
            self.refine = refine
            self.anisotropicThreshold = anisotropicThreshold
        }

        /// The factory string naming this configuration.
        public var factoryString: String {
            var parts: [String] = []
            if let opq = opqSubquantizers { parts.append("OPQ\(opq)") }
            if lists > 1 { parts.append("IVF\(lists)") }
            parts.append("PQ\(subquantizers)" + (bits == 4 ? "x4fs" : "") + (anisotropicThreshold.map { "_aq\($0)" } ?? ""))
            if let refine { parts.append("Refine\(refine.rawValue)") }
            return parts.joined(separator: ",")
        }
    }

    /// The configuration.
    public let configuration: Configuration
    public var dimension: Int { configuration.dimension }
    public var metric: Metric { configuration.metric }
    public var factoryString: String { configuration.factoryString }
    public var isTrained: Bool { lock.withReadLock { trained } }
    public var count: Int { lock.withReadLock { total } }
    public var bytesPerVector: Int {
        let pqBytes = configuration.bits == 8 ? configuration.subquantizers : (configuration.subquantizers + 1) / 2
        return pqBytes + 8 + (configuration.refine.map { RefineCodec(kind: $0, dimension: dimension).codeBytes } ?? 0)
    }

    let lock = ReadWriteLock()
    /// Re-ranking scratch kept between searches (a single-query search would otherwise
    /// allocate it every time); taken and given back under its own lock.
    let spareListGroups = Mutex<[ListGroups]>([])
    var trained = false
    var rotation: OPQRotation?
    var centroids: Matrix
    var centroidNorms: [Float] = []
    /// The centroids in int8, the first pass of interactive queries' coarse search (set with them).
    var coarseCodes: CoarseCodes?
    var pq: ProductQuantizer
    var refineCodec: RefineCodec?
    /// L2 only: `lists * M * ksub` terms |c_mj|^2 + 2 <centroid_l,m, c_mj> (faiss's precomputed table).
    var l2Table: [Float] = []
    let lists: InvertedLists
    var total: Int { lists.count }
    /// id -> (list << 32 | offset); built on the first `reconstruct`, then maintained.
    var directMap: [Int64: UInt64]?

    /// Chunks of at most this many queries find their lists by matrix-vector products.
    static let matrixVectorQueries = 4
    /// Queries per work chunk (fixed: results are independent of the thread count).
    static let queryChunk = 128
    /// Fast-scan blocks scanned per kernel call, so the per-query sums stay in L1/L2.
    static let scanSegmentBlocks = 64
    /// Upper bound on the candidates re-ranked per query (`k * refineFactor`): bounds the
    /// per-query heaps of a chunk.
    static let maximumShortlist = 65536
    /// Precomputed L2 tables larger than this many floats are computed per list instead.
    static let maximumTableFloats = 64 << 20

    /// How each entry's codes are laid out in a list (shared with storage segments).
    public let layout: CodeLayout
    var mPadded: Int { layout.paddedSubquantizers }
    var blockBytes: Int { layout.blockBytes }

    /// An untrained index.
    public init(_ configuration: Configuration) throws {
        guard configuration.dimension > 0 else {
            throw IndexError.invalidParameter(name: "dimension", value: "\(configuration.dimension)", allowed: ">= 1")
        }
        guard configuration.lists >= 1, configuration.lists <= 1 << 20 else {
            throw IndexError.invalidParameter(name: "lists", value: "\(configuration.lists)", allowed: "1...\(1 << 20)")
        }
        if let threshold = configuration.anisotropicThreshold {
            guard configuration.metric == .innerProduct else {
                throw IndexError.invalidParameter(name: "anisotropic quantization (_aq)", value: "metric \(configuration.metric.rawValue)",
                                                  allowed: "inner-product indexes only (it is a loss for inner products)")
            }
            guard threshold.isFinite, threshold > 0, threshold <= ProductQuantizer.maximumAnisotropicThreshold else {
                throw IndexError.invalidParameter(name: "anisotropic threshold", value: "\(threshold)",
                                                  allowed: "0 < T <= \(ProductQuantizer.maximumAnisotropicThreshold)")
            }
            let subDimension = configuration.subquantizers > 0 ? configuration.dimension / configuration.subquantizers : 0
            guard subDimension <= ProductQuantizer.maximumAnisotropicSubDimension else {
                throw IndexError.invalidParameter(name: "anisotropic quantization (_aq) sub-vector dimension", value: "\(subDimension)",
                                                  allowed: "at most \(ProductQuantizer.maximumAnisotropicSubDimension) (more sub-quantizers: its codebook step solves a d/m x d/m system per codeword)")
            }
        }
        self.configuration = configuration
        pq = try ProductQuantizer(dimension: configuration.dimension, subquantizers: configuration.subquantizers, bits: configuration.bits)
        if let opq = configuration.opqSubquantizers {
            _ = try ProductQuantizer(dimension: configuration.dimension, subquantizers: opq, bits: 8)
        }
        centroids = Matrix(rows: configuration.lists, columns: configuration.dimension)
        refineCodec = configuration.refine.map { RefineCodec(kind: $0, dimension: configuration.dimension) }
        layout = CodeLayout(subquantizers: configuration.subquantizers, bits: configuration.bits,
                            refineBytes: refineCodec?.codeBytes ?? 0)
        lists = InvertedLists(lists: configuration.lists, layout: layout)
    }
}
