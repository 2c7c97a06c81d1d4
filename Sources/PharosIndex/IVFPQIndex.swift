import PharosKernels
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

        /// Creates a configuration.
        public init(dimension: Int, metric: Metric, opqSubquantizers: Int? = nil, lists: Int,
                    subquantizers: Int, bits: Int, refine: RefineCodec.Kind? = nil) {
            self.dimension = dimension
            self.metric = metric
            self.opqSubquantizers = opqSubquantizers
            self.lists = lists
            self.subquantizers = subquantizers
            self.bits = bits
            self.refine = refine
        }

        /// The factory string naming this configuration.
        public var factoryString: String {
            var parts: [String] = []
            if let opq = opqSubquantizers { parts.append("OPQ\(opq)") }
            if lists > 1 { parts.append("IVF\(lists)") }
            parts.append("PQ\(subquantizers)" + (bits == 4 ? "x4fs" : ""))
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

    private let lock = ReadWriteLock()
    private var trained = false
    private var rotation: OPQRotation?
    private var centroids: Matrix
    private var centroidNorms: [Float] = []
    private var pq: ProductQuantizer
    private var refineCodec: RefineCodec?
    /// L2 only: `lists * M * ksub` terms |c_mj|^2 + 2 <centroid_l,m, c_mj> (faiss's precomputed table).
    private var l2Table: [Float] = []
    private let lists: InvertedLists
    private var total: Int { lists.count }
    /// id -> (list << 32 | offset); built on the first `reconstruct`, then maintained.
    private var directMap: [Int64: UInt64]?

    /// Queries per work chunk (fixed: results are independent of the thread count).
    static let queryChunk = 128
    /// Fast-scan blocks scanned per kernel call, so the per-query sums stay in L1/L2.
    static let scanSegmentBlocks = 64
    /// Upper bound on the candidates re-ranked per query (`k * refineFactor`): bounds the
    /// per-query heaps of a chunk.
    static let maximumShortlist = 16384
    /// Precomputed L2 tables larger than this many floats are computed per list instead.
    static let maximumTableFloats = 64 << 20

    /// How each entry's codes are laid out in a list (shared with storage segments).
    public let layout: CodeLayout
    private var mPadded: Int { layout.paddedSubquantizers }
    private var blockBytes: Int { layout.blockBytes }

    /// An untrained index.
    public init(_ configuration: Configuration) throws {
        guard configuration.dimension > 0 else {
            throw IndexError.invalidParameter(name: "dimension", value: "\(configuration.dimension)", allowed: ">= 1")
        }
        guard configuration.lists >= 1, configuration.lists <= 1 << 20 else {
            throw IndexError.invalidParameter(name: "lists", value: "\(configuration.lists)", allowed: "1...\(1 << 20)")
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

    // MARK: Training

    public func train(_ sample: Matrix, threads: Int) throws {
        try validate(sample)
        let c = configuration
        let needed = Swift.max(c.lists, pq.centroidsPerSubspace)
        guard sample.rows >= needed else {
            throw IndexError.notEnoughTrainingData(needed: needed, found: sample.rows, what: c.factoryString)
        }
        try lock.withWriteLock {
            var x = sample
            if let opq = c.opqSubquantizers {
                let r = try OPQRotation(training: sample, subquantizers: opq, bits: 8, threads: threads)
                rotation = r
                x = r.apply(sample)
            }
            if c.lists > 1 {
                var config = KMeans.Configuration(clusters: c.lists)
                config.iterations = 10  // faiss's default for coarse quantizers
                config.threads = threads
                centroids = try KMeans(training: x, configuration: config).centroids
            }
            centroidNorms = VectorMath.squaredNorms(centroids)
            // Codebooks learn residuals of (a sample of) the training set, as faiss does.
            var rng = SplitMix64(seed: 4321)
            let pqSample = x.rows > pq.centroidsPerSubspace * 256
                ? x.gathering(rows: rng.sample(pq.centroidsPerSubspace * 256, from: x.rows)) : x
            let residuals = residualsOf(pqSample, assignment: assign(pqSample, threads: threads))
            try pq.train(residuals, threads: threads)
            refineCodec?.train(sample)
            buildL2Table()
            trained = true
        }
    }

    private func buildL2Table() {
        l2Table = []
        let ksub = pq.centroidsPerSubspace, m = pq.subquantizers
        guard metric == .l2, configuration.lists * m * ksub <= IVFPQIndex.maximumTableFloats else { return }
        var table = [Float](repeating: 0, count: configuration.lists * m * ksub)
        table.withUnsafeMutableBufferPointer { t in
            for l in 0..<configuration.lists { listTerms(l, into: t.baseAddress! + l * m * ksub) }
        }
        l2Table = table
    }

    /// `out[s * ksub + j] = |c_sj|^2 + 2 <centroid_l,s, c_sj>` for list `l`.
    private func listTerms(_ l: Int, into out: UnsafeMutablePointer<Float>) {
        let ksub = pq.centroidsPerSubspace, m = pq.subquantizers, dsub = pq.subDimension
        pq.codebooks.withUnsafeBufferPointer { cb in
            centroids.values.withUnsafeBufferPointer { cen in
                let centroid = cen.baseAddress! + l * dimension
                for s in 0..<m {
                    for j in 0..<ksub {
                        let word = cb.baseAddress! + (s * ksub + j) * dsub
                        out[s * ksub + j] = pharos_dot(word, word, dsub) + 2 * pharos_dot(centroid + s * dsub, word, dsub)
                    }
                }
            }
        }
    }

    /// Coarse assignment of (already rotated) rows.
    private func assign(_ x: Matrix, threads: Int) -> [Int32] {
        guard configuration.lists > 1 else { return [Int32](repeating: 0, count: x.rows) }
        var assignment = [Int32](), distances = [Float]()
        KMeans.assign(x, centroids: centroids, threads: threads, assignment: &assignment, distances: &distances)
        return assignment
    }

    private func residualsOf(_ x: Matrix, assignment: [Int32]) -> Matrix {
        guard configuration.lists > 1 else { return x }
        var r = x
        let d = dimension
        for i in 0..<x.rows {
            let l = Int(assignment[i])
            for j in 0..<d { r.values[i * d + j] -= centroids.values[l * d + j] }
        }
        return r
    }

    // MARK: Adding

    public func add(_ vectors: Matrix, ids newIDs: [Int64]?, threads: Int) throws {
        let batch = try encodeEntries(vectors, threads: threads)
        try lock.withWriteLock {
            let ids = newIDs ?? (0..<Int64(vectors.rows)).map { Int64(total) + $0 }
            guard ids.count == vectors.rows else { throw IndexError.idCountMismatch(vectors: vectors.rows, ids: ids.count) }
            if let map = directMap {
                var seen = Set<Int64>()
                for id in ids where map[id] != nil || !seen.insert(id).inserted { throw IndexError.duplicateID(id) }
            }
            batch.forEachEntry { row, list, code, refineCode in
                let offset = lists.append(list: list, id: ids[row], code: code, refineCode: refineCode)
                directMap?[ids[row]] = UInt64(list) << 32 | UInt64(offset)
            }
        }
    }

    /// Encodes vectors without storing them: each row's list, PQ code and refine code.
    ///
    /// The storage layer encodes outside its locks with this, logs the result, then appends
    /// it to its own lists; `add` is this followed by an append.
    public func encodeEntries(_ vectors: Matrix, threads: Int) throws -> EncodedEntries {
        try validate(vectors)
        let x = try lock.withReadLock {
            guard trained else { throw IndexError.notTrained }
            return rotation?.apply(vectors) ?? vectors
        }
        let assignment = assign(x, threads: threads)
        let codes = pq.encode(residualsOf(x, assignment: assignment), threads: threads)
        var refineCodes = [UInt8]()
        refineCodec?.encode(vectors, appendingTo: &refineCodes)
        return EncodedEntries(lists: assignment, codes: codes, refine: refineCodes, layout: layout)
    }

    // MARK: Searching

    public func search(_ queries: Matrix, k: Int, parameters: SearchParameters) throws -> SearchResult {
        try validate(queries)
        try parameters.validate(k: k)
        if configuration.refine != nil, k * parameters.refineFactor > IVFPQIndex.maximumShortlist {
            throw IndexError.invalidParameter(name: "k x refineFactor", value: "\(k * parameters.refineFactor)",
                                              allowed: "1...\(IVFPQIndex.maximumShortlist)")
        }
        return try lock.withReadLock {
            guard trained else { throw IndexError.notTrained }
            var result = searchLocked(queries, k: k, parameters: parameters, sources: [lists])
            for i in result.ids.indices where result.ids[i] >= 0 {
                let label = result.ids[i]
                result.ids[i] = lists.id(list: Label.list(label), offset: Label.offset(label))
            }
            return result
        }
    }

    /// Searches lists held elsewhere (a shard's segments) with this index's trained state.
    ///
    /// Each list number is scanned in every source, skipping entries marked deleted, and one
    /// top-k is kept across all of them. The result's ids are labels naming (source, list,
    /// offset); decode them with `IVFPQIndex.Label`. At most `Label.maximumSources` sources.
    public func search(_ queries: Matrix, k: Int, parameters: SearchParameters,
                       sources: [any InvertedListSource]) throws -> SearchResult {
        try validate(queries)
        try parameters.validate(k: k)
        precondition(sources.count <= Label.maximumSources, "at most \(Label.maximumSources) list sources")
        if configuration.refine != nil, k * parameters.refineFactor > IVFPQIndex.maximumShortlist {
            throw IndexError.invalidParameter(name: "k x refineFactor", value: "\(k * parameters.refineFactor)",
                                              allowed: "1...\(IVFPQIndex.maximumShortlist)")
        }
        return try lock.withReadLock {
            guard trained else { throw IndexError.notTrained }
            return searchLocked(queries, k: k, parameters: parameters, sources: sources)
        }
    }

    /// Packs (source, list, offset) into the 63-bit labels that scans push into heaps.
    ///
    /// Ties on distance are broken by the smaller label, so results do not depend on the
    /// order in which sources or lists are scanned.
    public enum Label {
        /// Sources one search can scan (11 bits).
        public static let maximumSources = 1 << 11
        /// The label of entry `offset` of `list` in `source`.
        @inline(__always) public static func make(source: Int, list: Int, offset: Int) -> Int64 {
            Int64(source) << 52 | Int64(list) << 32 | Int64(offset)
        }
        /// The source of a label.
        @inline(__always) public static func source(_ label: Int64) -> Int { Int(label >> 52) }
        /// The list of a label.
        @inline(__always) public static func list(_ label: Int64) -> Int { Int(label >> 32) & 0xf_ffff }
        /// The offset in its list of a label.
        @inline(__always) public static func offset(_ label: Int64) -> Int { Int(label & 0xffff_ffff) }
    }

    private func searchLocked(_ queries: Matrix, k: Int, parameters: SearchParameters,
                              sources: [any InvertedListSource]) -> SearchResult {
        var result = SearchResult(queryCount: queries.rows, k: k, metric: metric)
        guard queries.rows > 0 else { return result }
        let rotated = rotation?.apply(queries) ?? queries
        let nprobe = Swift.min(parameters.nprobe, configuration.lists)
        let shortlist = refineCodec == nil ? k : k * parameters.refineFactor
        result.ids.withSendablePointer { outIDs in
            result.scores.withSendablePointer { outScores in
                if queries.rows >= parameters.threads || nprobe == 1 {
                    // Many queries: chunks of queries spread over the threads.
                    Parallel.forEachChunk(count: queries.rows, chunkSize: IVFPQIndex.queryChunk, threads: parameters.threads) { chunk in
                        let (probes, biases) = self.coarseSearch(rotated, chunk: chunk, nprobe: nprobe)
                        let tables = self.pq.bits == 4 ? self.fastScanTables(rotated, chunk: chunk, probes: probes, biases: biases, nprobe: nprobe) : nil
                        var heaps = (0..<chunk.count).map { _ in ResultHeap(capacity: shortlist) }
                        self.scan(rotated, chunk: chunk, probes: probes, biases: biases, nprobe: nprobe,
                                  probeRange: 0..<nprobe, tables: tables, sources: sources, heaps: &heaps)
                        self.finish(queries, chunk: chunk, heaps: &heaps, k: k, sources: sources, labels: outIDs, scores: outScores)
                    }
                } else {
                    // Fewer queries than threads (a single interactive query): the probed lists
                    // are split over the threads, each keeping its own heaps, then merged. The
                    // heaps keep the k smallest (distance, label) pairs, a total order, so the
                    // merged result equals the single-threaded one exactly.
                    let chunk = 0..<queries.rows
                    let (probes, biases) = coarseSearch(rotated, chunk: chunk, nprobe: nprobe)
                    let tables = pq.bits == 4 ? fastScanTables(rotated, chunk: chunk, probes: probes, biases: biases, nprobe: nprobe) : nil
                    let parts = Swift.min(parameters.threads, nprobe)
                    let partSize = (nprobe + parts - 1) / parts
                    var partHeaps = [[ResultHeap]](repeating: [], count: (nprobe + partSize - 1) / partSize)
                    partHeaps.withSendablePointer { out in
                        Parallel.forEachChunk(count: nprobe, chunkSize: partSize, threads: parts) { probeRange in
                            var heaps = (0..<chunk.count).map { _ in ResultHeap(capacity: shortlist) }
                            self.scan(rotated, chunk: chunk, probes: probes, biases: biases, nprobe: nprobe,
                                      probeRange: probeRange, tables: tables, sources: sources, heaps: &heaps)
                            out.pointer[probeRange.lowerBound / partSize] = heaps
                        }
                    }
                    var heaps = (0..<chunk.count).map { _ in ResultHeap(capacity: shortlist) }
                    for part in partHeaps {
                        for qi in 0..<chunk.count {
                            var h = part[qi]
                            let (d, l) = h.sorted()
                            for (dist, label) in zip(d, l) { heaps[qi].push(dist, label) }
                        }
                    }
                    finish(queries, chunk: chunk, heaps: &heaps, k: k, sources: sources, labels: outIDs, scores: outScores)
                }
            }
        }
        return result
    }

    /// Scans `probeRange` of every query's probed lists into its heap.
    private func scan(_ rotated: Matrix, chunk: Range<Int>, probes: [Int32], biases: [Float], nprobe: Int,
                      probeRange: Range<Int>, tables: FastScanTables?, sources: [any InvertedListSource],
                      heaps: inout [ResultHeap]) {
        if let tables {
            scan4(tables, chunk: chunk, probes: probes, nprobe: nprobe, probeRange: probeRange, sources: sources, heaps: &heaps)
        } else {
            scan8(rotated, chunk: chunk, probes: probes, biases: biases, nprobe: nprobe, probeRange: probeRange,
                  sources: sources, heaps: &heaps)
        }
    }

    /// Re-ranks (with refine codes) and writes each query's k best labels and scores.
    private func finish(_ queries: Matrix, chunk: Range<Int>, heaps: inout [ResultHeap], k: Int,
                        sources: [any InvertedListSource], labels ids: SendablePointer<Int64>, scores: SendablePointer<Float>) {
        for qi in 0..<chunk.count {
            let q = chunk.lowerBound + qi
            var (distances, labels) = heaps[qi].sorted()
            var refined = ResultHeap(capacity: k)
            if let codec = refineCodec {
                rerank(query: queries, row: q, codec: codec, labels: labels, sources: sources, into: &refined)
                (distances, labels) = refined.sorted()
            }
            for (r, (dist, label)) in zip(distances.prefix(k), labels.prefix(k)).enumerated() {
                ids.pointer[q * k + r] = label
                scores.pointer[q * k + r] = metric.score(fromDistance: dist)
            }
        }
    }

    /// The `nprobe` nearest lists of each query in `chunk` and their distances (the bias every
    /// code distance of that list starts from).
    private func coarseSearch(_ queries: Matrix, chunk: Range<Int>, nprobe: Int) -> (probes: [Int32], biases: [Float]) {
        let d = dimension, n = configuration.lists, metric = self.metric
        var probes = [Int32](repeating: -1, count: chunk.count * nprobe)
        var biases = [Float](repeating: .infinity, count: chunk.count * nprobe)
        queries.values.withUnsafeBufferPointer { qb in
            let q0 = qb.baseAddress! + chunk.lowerBound * d
            if n == 1 {
                for qi in 0..<chunk.count {
                    probes[qi] = 0
                    biases[qi] = metric == .l2 ? pharos_dot(q0 + qi * d, q0 + qi * d, d) : 0
                }
                return
            }
            var scores = [Float](repeating: 0, count: chunk.count * n)
            scores.withUnsafeMutableBufferPointer { s in
                centroids.values.withUnsafeBufferPointer { cb in
                    BLAS.gemmABt(m: chunk.count, n: n, k: d, alpha: metric == .l2 ? -2 : -1, a: q0, lda: d,
                                 b: cb.baseAddress!, ldb: d, c: s.baseAddress!, ldc: n)
                }
                for qi in 0..<chunk.count {
                    let row = s.baseAddress! + qi * n
                    let qNorm = metric == .l2 ? pharos_dot(q0 + qi * d, q0 + qi * d, d) : 0
                    if metric == .l2 { for j in 0..<n { row[j] += centroidNorms[j] + qNorm } }
                    var heap = ResultHeap(capacity: nprobe)
                    heap.withHeap { pharos_heap_push_many($0, row, n, nil, 0, PharosSkipMask()) }
                    let (dist, ids) = heap.sorted()
                    for (p, (dv, id)) in zip(dist, ids).enumerated() {
                        probes[qi * nprobe + p] = Int32(id)
                        biases[qi * nprobe + p] = dv
                    }
                }
            }
        }
        return (probes, biases)
    }

    /// Float look-up table of list `l` for one query: `lut[s * ksub + j]` = the distance
    /// contribution of code j in subspace s (without the list's bias).
    private func lookupTable(list l: Int, innerProducts: UnsafePointer<Float>, into lut: UnsafeMutablePointer<Float>) {
        let size = pq.subquantizers * pq.centroidsPerSubspace
        if metric == .innerProduct {
            pharos_lut_combine(nil, innerProducts, -1, size, lut)
        } else if !l2Table.isEmpty {
            l2Table.withUnsafeBufferPointer { pharos_lut_combine($0.baseAddress! + l * size, innerProducts, -2, size, lut) }
        } else {
            listTerms(l, into: lut)
            pharos_lut_combine(lut, innerProducts, -2, size, lut)
        }
    }

    private func scan8(_ queries: Matrix, chunk: Range<Int>, probes: [Int32], biases: [Float], nprobe: Int,
                       probeRange: Range<Int>, sources: [any InvertedListSource], heaps: inout [ResultHeap]) {
        let m = pq.subquantizers, ksub = pq.centroidsPerSubspace, d = dimension
        var ip = [Float](repeating: 0, count: m * ksub)
        var lut = [Float](repeating: 0, count: m * ksub)
        var distances = [Float]()
        queries.values.withUnsafeBufferPointer { qb in
            ip.withUnsafeMutableBufferPointer { ipb in
                lut.withUnsafeMutableBufferPointer { lutb in
                    for qi in 0..<chunk.count {
                        pq.innerProductTable(qb.baseAddress! + (chunk.lowerBound + qi) * d, into: ipb.baseAddress!)
                        // Inner product: one table serves every list (the list enters as its bias).
                        if metric == .innerProduct { lookupTable(list: 0, innerProducts: ipb.baseAddress!, into: lutb.baseAddress!) }
                        for p in probeRange {
                            let l = Int(probes[qi * nprobe + p])
                            guard l >= 0 else { continue }
                            var tableReady = false
                            for (s, source) in sources.enumerated() {
                                let view = source.view(ofList: l)
                                guard view.count > 0 else { continue }
                                if metric == .l2 && !tableReady {
                                    lookupTable(list: l, innerProducts: ipb.baseAddress!, into: lutb.baseAddress!)
                                    tableReady = true
                                }
                                let n = view.count
                                if distances.count < n { distances = [Float](repeating: 0, count: n) }
                                distances.withUnsafeMutableBufferPointer { out in
                                    pharos_pq8_distances(lutb.baseAddress!, m, view.codes!, n, biases[qi * nprobe + p], out.baseAddress!)
                                    heaps[qi].withHeap {
                                        pharos_heap_push_many($0, out.baseAddress!, n, nil, Label.make(source: s, list: l, offset: 0),
                                                              view.skipMask())
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Byte look-up tables of every (query, probed list) pair of a chunk, quantized per query
    /// with one common scale so that distances from different lists stay comparable.
    struct FastScanTables: Sendable {
        /// `chunk.count * nprobe` tables of `mPadded * 16` bytes.
        var quantized: [UInt8]
        /// Per (query, probe): list bias + sum of the table rows' minima.
        var offsets: [Float]
        /// Per query: distance = sum * scale + offset.
        var scales: [Float]
    }

    private func fastScanTables(_ queries: Matrix, chunk: Range<Int>, probes: [Int32], biases: [Float], nprobe: Int) -> FastScanTables {
        let m = pq.subquantizers, ksub = 16, d = dimension, mp = mPadded
        let lutBytes = mp * 16
        var tables = FastScanTables(quantized: [UInt8](repeating: 0, count: chunk.count * nprobe * lutBytes),
                                    offsets: [Float](repeating: 0, count: chunk.count * nprobe),
                                    scales: [Float](repeating: 1, count: chunk.count))
        var ip = [Float](repeating: 0, count: m * ksub)
        var luts = [Float](repeating: 0, count: nprobe * m * ksub)
        queries.values.withUnsafeBufferPointer { qb in
            ip.withUnsafeMutableBufferPointer { ipb in
                luts.withUnsafeMutableBufferPointer { lutb in
                    for qi in 0..<chunk.count {
                        pq.innerProductTable(qb.baseAddress! + (chunk.lowerBound + qi) * d, into: ipb.baseAddress!)
                        // Probes are filled in order; -1 only at the end.
                        let valid = (0..<nprobe).first { probes[qi * nprobe + $0] < 0 } ?? nprobe
                        if metric == .innerProduct {
                            // The table is the same for every list (lists differ by their bias
                            // only): quantize it once and copy it to each probe.
                            guard valid > 0 else { continue }
                            lookupTable(list: 0, innerProducts: ipb.baseAddress!, into: lutb.baseAddress!)
                            var minima: Float = 0
                            tables.quantized.withUnsafeMutableBufferPointer { qz in
                                let first = qz.baseAddress! + qi * nprobe * lutBytes
                                tables.scales[qi] = pharos_fs4_quantize_luts(lutb.baseAddress!, 1, m, mp, first, &minima)
                                for p in 1..<valid { (first + p * lutBytes).update(from: first, count: lutBytes) }
                            }
                            for p in 0..<valid { tables.offsets[qi * nprobe + p] = biases[qi * nprobe + p] + minima }
                            continue
                        }
                        for p in 0..<valid {
                            let l = Int(probes[qi * nprobe + p])
                            lookupTable(list: l, innerProducts: ipb.baseAddress!, into: lutb.baseAddress! + p * m * ksub)
                            tables.offsets[qi * nprobe + p] = biases[qi * nprobe + p]
                        }
                        tables.quantized.withUnsafeMutableBufferPointer { qz in
                            tables.offsets.withUnsafeMutableBufferPointer { off in
                                tables.scales[qi] = pharos_fs4_quantize_luts(lutb.baseAddress!, valid, m, mp,
                                                                             qz.baseAddress! + qi * nprobe * lutBytes,
                                                                             off.baseAddress! + qi * nprobe)
                            }
                        }
                    }
                }
            }
        }
        return tables
    }

    /// Fast scan of `probeRange` of each query's probes: each query's first probe of the range
    /// (its nearest list when the range starts at 0) alone, then the rest grouped by list.
    private func scan4(_ tables: FastScanTables, chunk: Range<Int>, probes: [Int32], nprobe: Int,
                       probeRange: Range<Int>, sources: [any InvertedListSource], heaps: inout [ResultHeap]) {
        guard !probeRange.isEmpty else { return }
        var scratch = FastScanScratch()
        let first = probeRange.lowerBound, rest = probeRange.dropFirst()
        // Alone first: the nearest list holds most true neighbours, so the heap's threshold is
        // tight before the bulk of the scan and the integer pre-filter rejects more.
        for qi in 0..<chunk.count where probes[qi * nprobe + first] >= 0 {
            scanList(Int(probes[qi * nprobe + first]), pairs: [(probes[qi * nprobe + first], Int32(qi), Int32(first))],
                     tables: tables, nprobe: nprobe, sources: sources, heaps: &heaps, scratch: &scratch)
        }
        // The other probes grouped by list (a counting sort: queries stay in ascending order
        // within a list), so that each list's blocks are read once for all queries of the chunk.
        var listStart = [Int32](repeating: 0, count: configuration.lists + 1)
        for qi in 0..<chunk.count {
            for p in rest where probes[qi * nprobe + p] >= 0 { listStart[Int(probes[qi * nprobe + p]) + 1] += 1 }
        }
        for l in 0..<configuration.lists { listStart[l + 1] += listStart[l] }
        var fill = listStart
        var pairs = [FastScanPair](repeating: (0, 0, 0), count: Int(listStart[configuration.lists]))
        for qi in 0..<chunk.count {
            for p in rest where probes[qi * nprobe + p] >= 0 {
                let l = Int(probes[qi * nprobe + p])
                pairs[Int(fill[l])] = (Int32(l), Int32(qi), Int32(p))
                fill[l] += 1
            }
        }
        for l in 0..<configuration.lists where listStart[l + 1] > listStart[l] {
            scanList(l, pairs: pairs[Int(listStart[l]) ..< Int(listStart[l + 1])], tables: tables,
                     nprobe: nprobe, sources: sources, heaps: &heaps, scratch: &scratch)
        }
    }

    typealias FastScanPair = (list: Int32, query: Int32, probe: Int32)

    /// Buffers reused across the lists of one chunk.
    struct FastScanScratch {
        var luts: [UInt8] = []
        var sums: [UInt16] = []
        var views: [InvertedListView] = []
    }

    /// A small direct-mapped cache of list views for re-ranking one query: its shortlist
    /// comes from its nprobe lists, so nearly every label hits and the source's `view` call
    /// (a protocol call) is made about once per list.
    struct RecentViews {
        private var keys = [Int64](repeating: -1, count: 64)
        private var views = [InvertedListView](repeating: .empty, count: 64)

        mutating func view(_ label: Int64, sources: [any InvertedListSource]) -> InvertedListView {
            let key = label >> 32   // source and list
            let slot = Int(truncatingIfNeeded: (key ^ (key >> 6)) & 63)
            if keys[slot] != key {
                views[slot] = sources[Label.source(label)].view(ofList: Label.list(label))
                keys[slot] = key
            }
            return views[slot]
        }
    }

    /// Scans list `l` of every source once for every (query, probe) pair in `pairs`, in
    /// segments of blocks.
    private func scanList(_ l: Int, pairs: ArraySlice<FastScanPair>, tables: FastScanTables, nprobe: Int,
                          sources: [any InvertedListSource], heaps: inout [ResultHeap], scratch: inout FastScanScratch) {
        scratch.views.removeAll(keepingCapacity: true)
        for source in sources { scratch.views.append(source.view(ofList: l)) }
        let views = scratch.views
        guard views.contains(where: { $0.count > 0 }) else { return }
        let mp = mPadded, lutBytes = mp * 16
        scratch.luts.removeAll(keepingCapacity: true)
        for pair in pairs {
            let base = (Int(pair.query) * nprobe + Int(pair.probe)) * lutBytes
            scratch.luts.append(contentsOf: tables.quantized[base ..< base + lutBytes])
        }
        let segment = IVFPQIndex.scanSegmentBlocks
        if scratch.sums.count < pairs.count * segment * 32 { scratch.sums = [UInt16](repeating: 0, count: pairs.count * segment * 32) }
        scratch.luts.withUnsafeBufferPointer { lutPtr in
            scratch.sums.withUnsafeMutableBufferPointer { sumPtr in
                for (s, view) in views.enumerated() where view.count > 0 {
                    let count = view.count, blocks = view.codes!
                    let blockCount = (count + 31) / 32
                    var b = 0
                    while b < blockCount {
                        let nb = Swift.min(segment, blockCount - b)
                        pharos_fs4_scan(lutPtr.baseAddress!, pairs.count, mp, blocks + b * blockBytes, nb, sumPtr.baseAddress!)
                        let valid = Swift.min(nb * 32, count - b * 32)
                        for (g, pair) in pairs.enumerated() {
                            let qi = Int(pair.query)
                            heaps[qi].withHeap {
                                pharos_heap_push_u16($0, sumPtr.baseAddress! + g * nb * 32, valid, tables.scales[qi],
                                                     tables.offsets[qi * nprobe + Int(pair.probe)],
                                                     Label.make(source: s, list: l, offset: b * 32),
                                                     view.skipMask(from: b * 32))
                            }
                        }
                        b += nb
                    }
                }
            }
        }
    }

    /// Re-scores `labels` with refine codes against the original (unrotated) query.
    private func rerank(query queries: Matrix, row q: Int, codec: RefineCodec, labels: ArraySlice<Int64>,
                        sources: [any InvertedListSource], into heap: inout ResultHeap) {
        let d = dimension, bytes = codec.codeBytes, metric = self.metric
        var scratch = [Float](repeating: 0, count: d)
        queries.values.withUnsafeBufferPointer { qb in
            scratch.withUnsafeMutableBufferPointer { out in
                let query = qb.baseAddress! + q * d
                let prepared = codec.prepare(query, metric: metric)
                var views = RecentViews()
                for label in labels {
                    let view = views.view(label, sources: sources)
                    let code = view.refine! + Label.offset(label) * bytes
                    let distance: Float
                    if let prepared {
                        distance = codec.distance(prepared: prepared, code)
                    } else {
                        distance = codec.distance(query, code, metric: metric, scratch: out.baseAddress!)
                    }
                    heap.push(distance, label)
                }
            }
        }
    }

    // MARK: Reconstruction

    public func reconstruct(_ id: Int64) throws -> [Float] {
        let location: UInt64? = try lock.withWriteLock {
            guard trained else { throw IndexError.notTrained }
            if directMap == nil {
                var map = [Int64: UInt64](minimumCapacity: total)
                for l in 0..<configuration.lists {
                    for (offset, id) in lists.ids(ofList: l).enumerated() { map[id] = UInt64(l) << 32 | UInt64(offset) }
                }
                directMap = map
            }
            return directMap![id]
        }
        guard let location else { throw IndexError.unknownID(id) }
        return lock.withReadLock {
            let l = Int(location >> 32)
            return reconstructLocked(list: l, offset: Int(location & 0xffff_ffff), view: lists.view(ofList: l))
        }
    }

    /// The approximation of an entry held elsewhere (a segment): entry `offset` of `view`,
    /// which is list `list`. Refine codes are used when present, else the PQ code.
    public func reconstruct(list: Int, offset: Int, view: InvertedListView) throws -> [Float] {
        precondition(offset < view.count, "offset \(offset) beyond a list of \(view.count)")
        return try lock.withReadLock {
            guard trained else { throw IndexError.notTrained }
            return reconstructLocked(list: list, offset: offset, view: view)
        }
    }

    private func reconstructLocked(list l: Int, offset: Int, view: InvertedListView) -> [Float] {
        var out = [Float](repeating: 0, count: dimension)
        if let codec = refineCodec {
            out.withUnsafeMutableBufferPointer { codec.decode(view.refine! + offset * codec.codeBytes, into: $0.baseAddress!) }
            return out
        }
        var code = [UInt8](repeating: 0, count: pq.subquantizers)
        code.withUnsafeMutableBufferPointer { layout.load(at: offset, from: view.codes!, into: $0.baseAddress!) }
        code.withUnsafeBufferPointer { cp in out.withUnsafeMutableBufferPointer { pq.decode(cp.baseAddress!, into: $0.baseAddress!) } }
        for j in 0..<dimension { out[j] += centroids.values[l * dimension + j] }
        if let rotation { return rotation.reverse(Matrix(rows: 1, columns: dimension, values: out)).values }
        return out
    }

    // MARK: Serialisation

    public func encode(into writer: inout IndexFileWriter) {
        lock.withReadLock {
            writer.section("TRND") { w in
                w.write(trained ? 1 : 0)
                w.write(rotation?.matrix.values ?? [])
                w.write(centroids.values)
                w.write(pq.codebooks)
                if let refineCodec { refineCodec.encodeParameters(&w) }
            }
            writer.section("LIST") { w in
                w.write(total)
                for l in 0..<configuration.lists {
                    w.write(Array(lists.ids(ofList: l)))
                    w.write(Array(lists.codes(ofList: l)))
                    w.write(Array(lists.refineCodes(ofList: l)))
                }
            }
        }
    }

    /// Restores state written by `encode`, validating every size against the configuration.
    func decode(from reader: inout IndexFileReader) throws {
        try lock.withWriteLock {
            let d = dimension, ksub = pq.centroidsPerSubspace
            var t = try reader.section("TRND")
            trained = try t.readInt("trained flag", in: 0...1) == 1
            let rot = try t.readFloats("rotation")
            if configuration.opqSubquantizers != nil && trained {
                guard rot.count == d * d else { throw t.corrupt("rotation holds \(rot.count) floats, expected \(d * d)") }
                rotation = OPQRotation(matrix: Matrix(rows: d, columns: d, values: rot))
            }
            centroids = Matrix(rows: configuration.lists, columns: d,
                               values: try t.readFloats("centroids", expected: configuration.lists * d))
            centroidNorms = VectorMath.squaredNorms(centroids)
            pq.codebooks = try t.readFloats("codebooks", expected: trained ? pq.subquantizers * ksub * pq.subDimension : 0)
            if refineCodec != nil {
                refineCodec = try RefineCodec.decodeParameters(&t, dimension: d)
            }
            try t.expectEnd()
            var l = try reader.section("LIST")
            let expectedTotal = try l.readInt("vector count", in: 0...Int(Int32.max) * 64)
            var seen = 0
            let refineBytes = refineCodec?.codeBytes ?? 0
            for i in 0..<configuration.lists {
                let ids = try l.readInt64s("list \(i) ids")
                guard ids.count < 1 << 32 else { throw l.corrupt("list \(i) holds \(ids.count) vectors, at most 2^32") }
                lists.replace(list: i, ids: ids,
                              codes: try l.readBytes("list \(i) codes", expected: layout.codeBytes(count: ids.count)),
                              refine: try l.readBytes("list \(i) refine codes", expected: ids.count * refineBytes))
                seen += ids.count
            }
            try l.expectEnd()
            guard seen == expectedTotal else { throw l.corrupt("lists hold \(seen) vectors, header says \(expectedTotal)") }
            buildL2Table()
        }
    }
}
