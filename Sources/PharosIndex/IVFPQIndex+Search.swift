import PharosKernels
import PharosVectors

/// Searching: the two entry points (own lists, or lists held elsewhere), the per-chunk
/// driver, the coarse search and the float look-up tables. The scans themselves are in
/// `IVFPQIndex+Scan8.swift` and `IVFPQIndex+FastScan.swift`, re-ranking in `+Refine`.
extension IVFPQIndex {
    public func search(_ queries: Matrix, k: Int, parameters: SearchParameters) throws -> SearchResult {
        try lock.withReadLock {
            try validateSearch(queries, k: k, parameters: parameters, sourceCount: 1)
            var result = try searchLocked(queries, k: k, parameters: parameters, sources: [lists])
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
    /// top-k is kept across all of them. Hits name their source and the entry's identity in
    /// it. At most `maximumSources` sources; a list a source cannot read fails the search
    /// with the source's error.
    public func search(_ queries: Matrix, k: Int, parameters: SearchParameters,
                       sources: [any InvertedListSource], probes: ProbeAssignment?) throws -> SourcedSearchResult {
        try lock.withReadLock {
            try validateSearch(queries, k: k, parameters: parameters, sourceCount: sources.count)
            if let probes { try validate(probes, queries: queries.rows, nprobe: parameters.nprobe) }
            let labelled = try searchLocked(queries, k: k, parameters: parameters, sources: sources, probes: probes)
            var result = labelled
            var owners = [Int32](repeating: -1, count: labelled.ids.count)
            for i in labelled.ids.indices where labelled.ids[i] >= 0 { owners[i] = Int32(Label.source(labelled.ids[i])) }
            var sourced = SourcedSearchResult(result: result, sources: owners)
            // Identities are asked source by source: taking an existential out of the array
            // costs a retain and a release, once per source instead of once per hit.
            result.ids.withUnsafeMutableBufferPointer { ids in
                sourced.forEachSource(in: 0..<queries.rows, sourceCount: sources.count) { s, positions in
                    let source = sources[s]
                    for i in positions {
                        let label = labelled.ids[i]
                        ids[i] = source.entryID(list: Label.list(label), offset: Label.offset(label))
                    }
                }
            }
            sourced.result = result
            return sourced
        }
    }

    /// Sources one search can scan.
    public static var maximumSources: Int { Label.maximumSources }

    public func assign(_ queries: Matrix, nprobe: Int) throws -> ProbeAssignment {
        try lock.withReadLock {
            try validate(queries)
            try SearchParameters(nprobe: nprobe).validate(k: 1)
            guard trained else { throw IndexError.notTrained }
            let rotated = rotation?.apply(queries) ?? queries
            let probesPerQuery = Swift.min(nprobe, configuration.lists)
            var lists: [Int32] = [], biases: [Float] = []
            lists.reserveCapacity(queries.rows * probesPerQuery)
            biases.reserveCapacity(queries.rows * probesPerQuery)
            // In the chunks a search uses, so that each chunk's coarse products are computed the
            // same way (matrix-vector or matrix-matrix) and the lists are the ones it would find.
            for first in stride(from: 0, to: queries.rows, by: IVFPQIndex.queryChunk) {
                let chunk = first ..< Swift.min(queries.rows, first + IVFPQIndex.queryChunk)
                let (p, b) = coarseSearch(rotated, chunk: chunk, nprobe: probesPerQuery)
                lists += p
                biases += b
            }
            return try ProbeAssignment(perQuery: probesPerQuery, lists: lists, biases: biases)
        }
    }

    /// Given lists must be what `assign` makes for this index: min(nprobe, lists) per query,
    /// list numbers in range, each once per query.
    private func validate(_ probes: ProbeAssignment, queries: Int, nprobe: Int) throws {
        let expected = Swift.min(nprobe, configuration.lists)
        guard probes.queryCount == queries, probes.perQuery == expected else {
            throw IndexError.invalidParameter(name: "probes", value: "\(probes.perQuery) lists for each of \(probes.queryCount) queries",
                                              allowed: "\(expected) (min(nprobe, \(configuration.lists) lists)) for each of \(queries) queries")
        }
        if let bad = probes.lists.firstIndex(where: { $0 < 0 || Int($0) >= configuration.lists }) {
            throw IndexError.invalidParameter(name: "probes[\(bad)]", value: "list \(probes.lists[bad])", allowed: "0..<\(configuration.lists)")
        }
        if let bad = probes.biases.firstIndex(where: { !$0.isFinite }) {
            throw IndexError.invalidParameter(name: "probe biases[\(bad)]", value: "\(probes.biases[bad])", allowed: "finite")
        }
        for q in 0..<queries {
            var seen = Set<Int32>()
            for list in probes.lists[q * expected ..< (q + 1) * expected] where !seen.insert(list).inserted {
                throw IndexError.invalidParameter(name: "probes of query \(q)", value: "list \(list) twice", allowed: "each list once")
            }
        }
    }

    /// The checks both entry points make (the caller holds the read lock).
    private func validateSearch(_ queries: Matrix, k: Int, parameters: SearchParameters, sourceCount: Int) throws {
        try validate(queries)
        try parameters.validate(k: k)
        guard sourceCount <= Label.maximumSources else {
            throw IndexError.invalidParameter(name: "list sources", value: "\(sourceCount)", allowed: "0...\(Label.maximumSources)")
        }
        if configuration.refine != nil, k * parameters.refineFactor > IVFPQIndex.maximumShortlist {
            throw IndexError.invalidParameter(name: "k x refineFactor", value: "\(k * parameters.refineFactor)",
                                              allowed: "1...\(IVFPQIndex.maximumShortlist)")
        }
        guard trained else { throw IndexError.notTrained }
    }

    /// Packs (source, list, offset) into the 63-bit labels that scans push into heaps: the
    /// engine's own bookkeeping, turned into (source, entry identity) before results leave it.
    ///
    /// Ties on distance are broken by the smaller label, so results do not depend on the
    /// order in which sources or lists are scanned.
    enum Label {
        /// Sources one search can scan (11 bits).
        static let maximumSources = 1 << 11
        /// The label of entry `offset` of `list` in `source`.
        @inline(__always) static func make(source: Int, list: Int, offset: Int) -> Int64 {
            Int64(source) << 52 | Int64(list) << 32 | Int64(offset)
        }
        /// The source of a label.
        @inline(__always) static func source(_ label: Int64) -> Int { Int(label >> 52) }
        /// The list of a label.
        @inline(__always) static func list(_ label: Int64) -> Int { Int(label >> 32) & 0xf_ffff }
        /// The offset in its list of a label.
        @inline(__always) static func offset(_ label: Int64) -> Int { Int(label & 0xffff_ffff) }
    }

    /// The search proper, with labels as ids; the first error any chunk met is thrown.
    private func searchLocked(_ queries: Matrix, k: Int, parameters: SearchParameters,
                              sources: [any InvertedListSource], probes given: ProbeAssignment? = nil) throws -> SearchResult {
        var result = SearchResult(queryCount: queries.rows, k: k, metric: metric)
        guard queries.rows > 0 else { return result }
        let rotated = rotation?.apply(queries) ?? queries
        let nprobe = Swift.min(parameters.nprobe, configuration.lists)
        let shortlist = refineCodec == nil ? k : k * parameters.refineFactor
        // One slot per unit of parallel work: scans cannot throw across the parallel loop.
        var failures = [(any Error)?](repeating: nil, count: Swift.max(nprobe, (queries.rows + IVFPQIndex.queryChunk - 1) / IVFPQIndex.queryChunk))
        result.ids.withSendablePointer { outIDs in
            result.scores.withSendablePointer { outScores in
                failures.withSendablePointer { failed in
                    if queries.rows >= parameters.threads || nprobe == 1 {
                        // Many queries: chunks of queries spread over the threads.
                        Parallel.forEachChunk(count: queries.rows, chunkSize: IVFPQIndex.queryChunk, threads: parameters.threads) { chunk in
                            do {
                                let (probes, biases) = given.map { Self.slice($0, chunk) } ?? self.coarseSearch(rotated, chunk: chunk, nprobe: nprobe)
                                let tables = self.pq.bits == 4 ? self.fastScanTables(rotated, chunk: chunk, probes: probes, biases: biases, nprobe: nprobe) : nil
                                var heaps = (0..<chunk.count).map { _ in ResultHeap(capacity: shortlist) }
                                try self.scan(rotated, chunk: chunk, probes: probes, biases: biases, nprobe: nprobe,
                                              probeRange: 0..<nprobe, tables: tables, sources: sources, heaps: &heaps)
                                try self.finish(queries, chunk: chunk, heaps: &heaps, k: k, sources: sources, labels: outIDs, scores: outScores)
                            } catch {
                                failed.pointer[chunk.lowerBound / IVFPQIndex.queryChunk] = error
                            }
                        }
                        return
                    }
                    // Fewer queries than threads (a single interactive query): the probed lists
                    // are split over the threads, each keeping its own heaps, then merged. The
                    // heaps keep the k smallest (distance, label) pairs, a total order, so the
                    // merged result equals the single-threaded one exactly.
                    let chunk = 0..<queries.rows
                    let (probes, biases) = given.map { Self.slice($0, chunk) } ?? coarseSearch(rotated, chunk: chunk, nprobe: nprobe)
                    let tables = pq.bits == 4 ? fastScanTables(rotated, chunk: chunk, probes: probes, biases: biases, nprobe: nprobe) : nil
                    let parts = Swift.min(parameters.threads, nprobe)
                    let partSize = (nprobe + parts - 1) / parts
                    var partHeaps = [[ResultHeap]](repeating: [], count: (nprobe + partSize - 1) / partSize)
                    partHeaps.withSendablePointer { out in
                        Parallel.forEachChunk(count: nprobe, chunkSize: partSize, threads: parts) { probeRange in
                            var heaps = (0..<chunk.count).map { _ in ResultHeap(capacity: shortlist) }
                            do {
                                try self.scan(rotated, chunk: chunk, probes: probes, biases: biases, nprobe: nprobe,
                                              probeRange: probeRange, tables: tables, sources: sources, heaps: &heaps)
                            } catch {
                                failed.pointer[probeRange.lowerBound / partSize] = error
                            }
                            out.pointer[probeRange.lowerBound / partSize] = heaps
                        }
                    }
                    guard !(0..<partHeaps.count).contains(where: { failed.pointer[$0] != nil }) else { return }
                    var heaps = (0..<chunk.count).map { _ in ResultHeap(capacity: shortlist) }
                    for part in partHeaps {
                        for qi in 0..<chunk.count {
                            var h = part[qi]
                            let (d, l) = h.sorted()
                            for (dist, label) in zip(d, l) { heaps[qi].push(dist, label) }
                        }
                    }
                    do {
                        try finish(queries, chunk: chunk, heaps: &heaps, k: k, sources: sources, labels: outIDs, scores: outScores)
                    } catch {
                        failed.pointer[0] = error
                    }
                }
            }
        }
        if let failure = failures.lazy.compactMap({ $0 }).first { throw failure }
        return result
    }

    /// The given lists of the queries in `chunk`, as `coarseSearch` returns them.
    private static func slice(_ probes: ProbeAssignment, _ chunk: Range<Int>) -> (probes: [Int32], biases: [Float]) {
        let range = chunk.lowerBound * probes.perQuery ..< chunk.upperBound * probes.perQuery
        return (Array(probes.lists[range]), Array(probes.biases[range]))
    }

    /// Scans `probeRange` of every query's probed lists into its heap.
    private func scan(_ rotated: Matrix, chunk: Range<Int>, probes: [Int32], biases: [Float], nprobe: Int,
                      probeRange: Range<Int>, tables: FastScanTables?, sources: [any InvertedListSource],
                      heaps: inout [ResultHeap]) throws {
        if let tables {
            try scan4(tables, chunk: chunk, probes: probes, nprobe: nprobe, probeRange: probeRange, sources: sources, heaps: &heaps)
        } else {
            try scan8(rotated, chunk: chunk, probes: probes, biases: biases, nprobe: nprobe, probeRange: probeRange,
                      sources: sources, heaps: &heaps)
        }
    }

    /// Re-ranks (with refine codes) and writes each query's k best labels and scores.
    private func finish(_ queries: Matrix, chunk: Range<Int>, heaps: inout [ResultHeap], k: Int,
                        sources: [any InvertedListSource], labels ids: SendablePointer<Int64>, scores: SendablePointer<Float>) throws {
        var groups = spareListGroups.withLock { $0.popLast() } ?? ListGroups(lists: configuration.lists, sources: sources.count)
        groups.fit(sources: sources.count)
        defer { spareListGroups.withLock { if $0.count < 8 { $0.append(groups) } } }
        for qi in 0..<chunk.count {
            let q = chunk.lowerBound + qi
            var (distances, labels) = heaps[qi].sorted()
            var refined = ResultHeap(capacity: k)
            if let codec = refineCodec {
                try rerank(query: queries, row: q, codec: codec, labels: labels, sources: sources, groups: &groups, into: &refined)
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
    func coarseSearch(_ queries: Matrix, chunk: Range<Int>, nprobe: Int) -> (probes: [Int32], biases: [Float]) {
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
            if chunk.count <= IVFPQIndex.matrixVectorQueries, let coarse = coarseCodes,
               CoarseCodes.worthIt(lists: n, dimension: d, nprobe: nprobe) {
                shortlistedCoarseSearch(q0, count: chunk.count, nprobe: nprobe, codes: coarse, probes: &probes, biases: &biases)
                return
            }
            var scores = [Float](repeating: 0, count: chunk.count * n)
            scores.withUnsafeMutableBufferPointer { s in
                centroids.values.withUnsafeBufferPointer { cb in
                    if chunk.count <= IVFPQIndex.matrixVectorQueries {
                        // A few queries (interactive searches): a matrix-vector product each.
                        // GEMM would first copy the whole centroid matrix into its packed
                        // layout (8 MB at 4096 x 512) for every call, most of the search's time.
                        for qi in 0..<chunk.count {
                            BLAS.gemv(m: n, n: d, alpha: metric == .l2 ? -2 : -1, a: cb.baseAddress!, lda: d,
                                      x: q0 + qi * d, y: s.baseAddress! + qi * n)
                        }
                    } else {
                        BLAS.gemmABt(m: chunk.count, n: n, k: d, alpha: metric == .l2 ? -2 : -1, a: q0, lda: d,
                                     b: cb.baseAddress!, ldb: d, c: s.baseAddress!, ldc: n)
                    }
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

    /// The coarse search of a few queries in two passes: int8 products with every centroid
    /// shortlist `CoarseCodes.shortlist` lists per query, which are then scored exactly (float
    /// dot products, the exact norms), and the best `nprobe` kept. Reads a quarter of the bytes
    /// of the float pass; the same lists unless the int8 error pushed one of the nearest out of
    /// a shortlist several times longer than nprobe.
    private func shortlistedCoarseSearch(_ q0: UnsafePointer<Float>, count: Int, nprobe: Int, codes: CoarseCodes,
                                         probes: inout [Int32], biases: inout [Float]) {
        let d = dimension, n = configuration.lists, metric = self.metric
        let shortlist = CoarseCodes.shortlist(nprobe: nprobe, lists: n)
        var approximate = [Float](repeating: 0, count: n)
        centroids.values.withUnsafeBufferPointer { cb in
            approximate.withUnsafeMutableBufferPointer { a in
                for qi in 0..<count {
                    let q = q0 + qi * d
                    codes.innerProducts(query: q, into: a.baseAddress!)
                    // Smaller is nearer: -<q, c> (inner product), |c|^2 - 2 <q, c> (L2, without |q|^2).
                    if metric == .l2 {
                        for j in 0..<n { a[j] = centroidNorms[j] - 2 * a[j] }
                    } else {
                        for j in 0..<n { a[j] = -a[j] }
                    }
                    var candidates = ResultHeap(capacity: shortlist)
                    candidates.withHeap { pharos_heap_push_many($0, a.baseAddress!, n, nil, 0, PharosSkipMask()) }
                    let qNorm = metric == .l2 ? pharos_dot(q, q, d) : 0
                    var best = ResultHeap(capacity: nprobe)
                    for list in candidates.sorted().ids {
                        let dot = pharos_dot(q, cb.baseAddress! + Int(list) * d, d)
                        best.push(metric == .l2 ? qNorm + centroidNorms[Int(list)] - 2 * dot : -dot, list)
                    }
                    let (dist, ids) = best.sorted()
                    for (p, (dv, id)) in zip(dist, ids).enumerated() {
                        probes[qi * nprobe + p] = Int32(id)
                        biases[qi * nprobe + p] = dv
                    }
                }
            }
        }
    }

    /// Float look-up table of list `l` for one query: `lut[s * ksub + j]` = the distance
    /// contribution of code j in subspace s (without the list's bias).
    func lookupTable(list l: Int, innerProducts: UnsafePointer<Float>, into lut: UnsafeMutablePointer<Float>) {
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
}
