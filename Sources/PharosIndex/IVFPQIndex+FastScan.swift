import PharosKernels
import PharosVectors

/// 4-bit fast scan: byte tables quantized per query, lists grouped so each list's blocks
/// serve every query of a chunk in one pass, the SIMD kernel, the integer pre-filter.
extension IVFPQIndex {
    /// Byte look-up tables of every (query, probed list) pair of a chunk, quantized per query
    /// with one common scale so that distances from different lists stay comparable.
    struct FastScanTables: Sendable {
        /// `chunk.count * nprobe` tables of `mPadded * 16` bytes (`chunk.count` when shared).
        var quantized: [UInt8]
        /// Per (query, probe): list bias + sum of the table rows' minima.
        var offsets: [Float]
        /// Per query: distance = sum * scale + offset.
        var scales: [Float]
        /// Whether each query has one table for all its probes (inner product: lists differ by
        /// their bias only): `quantized` then holds one table per query, not one per probe.
        var sharedAcrossProbes: Bool

        /// Where the table of (query `qi` of the chunk, probe `p`) starts in `quantized`.
        func tableStart(query qi: Int, probe p: Int, nprobe: Int, lutBytes: Int) -> Int {
            sharedAcrossProbes ? qi * lutBytes : (qi * nprobe + p) * lutBytes
        }
    }

    func fastScanTables(_ queries: Matrix, chunk: Range<Int>, probes: [Int32], biases: [Float], nprobe: Int) -> FastScanTables {
        let m = pq.subquantizers, ksub = 16, d = dimension, mp = mPadded
        let lutBytes = mp * 16
        // Inner product: one table per query serves all its probes (lists differ by their bias).
        let shared = metric == .innerProduct
        var tables = FastScanTables(quantized: [UInt8](repeating: 0, count: chunk.count * (shared ? 1 : nprobe) * lutBytes),
                                    offsets: [Float](repeating: 0, count: chunk.count * nprobe),
                                    scales: [Float](repeating: 1, count: chunk.count), sharedAcrossProbes: shared)
        var ip = [Float](repeating: 0, count: m * ksub)
        var luts = [Float](repeating: 0, count: nprobe * m * ksub)
        queries.values.withUnsafeBufferPointer { qb in
            ip.withUnsafeMutableBufferPointer { ipb in
                luts.withUnsafeMutableBufferPointer { lutb in
                    for qi in 0..<chunk.count {
                        pq.innerProductTable(qb.baseAddress! + (chunk.lowerBound + qi) * d, into: ipb.baseAddress!)
                        // Probes are filled in order; -1 only at the end.
                        let valid = (0..<nprobe).first { probes[qi * nprobe + $0] < 0 } ?? nprobe
                        if shared {
                            guard valid > 0 else { continue }
                            lookupTable(list: 0, innerProducts: ipb.baseAddress!, into: lutb.baseAddress!)
                            var minima: Float = 0
                            let start = tables.tableStart(query: qi, probe: 0, nprobe: nprobe, lutBytes: lutBytes)
                            tables.quantized.withUnsafeMutableBufferPointer { qz in
                                let first = qz.baseAddress! + start
                                tables.scales[qi] = pharos_fs4_quantize_luts(lutb.baseAddress!, 1, m, mp, first, &minima)
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
    func scan4(_ tables: FastScanTables, chunk: Range<Int>, probes: [Int32], nprobe: Int,
               probeRange: Range<Int>, sources: [any InvertedListSource], heaps: inout [ResultHeap]) throws {
        guard !probeRange.isEmpty else { return }
        var scratch = FastScanScratch()
        let first = probeRange.lowerBound, rest = probeRange.dropFirst()
        // Alone first: the nearest list holds most true neighbours, so the heap's threshold is
        // tight before the bulk of the scan and the integer pre-filter rejects more.
        for qi in 0..<chunk.count where probes[qi * nprobe + first] >= 0 {
            try scanList(Int(probes[qi * nprobe + first]), pairs: [(probes[qi * nprobe + first], Int32(qi), Int32(first))],
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
            try scanList(l, pairs: pairs[Int(listStart[l]) ..< Int(listStart[l + 1])], tables: tables,
                     nprobe: nprobe, sources: sources, heaps: &heaps, scratch: &scratch)
        }
    }

    typealias FastScanPair = (list: Int32, query: Int32, probe: Int32)

    /// Buffers reused across the lists of one chunk.
    struct FastScanScratch {
        /// Each pair's table, in the chunk's tables (pointers: no table is copied per list).
        var luts: [UnsafePointer<UInt8>?] = []
        var sums: [UInt16] = []
    }

    /// Scans list `l` of every source once for every (query, probe) pair in `pairs`, in
    /// segments of blocks.
    private func scanList(_ l: Int, pairs: ArraySlice<FastScanPair>, tables: FastScanTables, nprobe: Int,
                          sources: [any InvertedListSource], heaps: inout [ResultHeap], scratch: inout FastScanScratch) throws {
        // Sources are borrowed through a buffer (no retain and release per source and list).
        try sources.withUnsafeBufferPointer { sources in
            guard sources.contains(where: { $0.entryCount(ofList: l) > 0 }) else { return }
            try scanList(l, pairs: pairs, tables: tables, nprobe: nprobe, sources: sources, heaps: &heaps, scratch: &scratch)
        }
    }

    /// `scanList` over sources already borrowed.
    private func scanList(_ l: Int, pairs: ArraySlice<FastScanPair>, tables: FastScanTables, nprobe: Int,
                          sources: UnsafeBufferPointer<any InvertedListSource>, heaps: inout [ResultHeap],
                          scratch: inout FastScanScratch) throws {
        let mp = mPadded, lutBytes = mp * 16
        let segment = IVFPQIndex.scanSegmentBlocks
        if scratch.sums.count < pairs.count * segment * 32 { scratch.sums = [UInt16](repeating: 0, count: pairs.count * segment * 32) }
        try tables.quantized.withUnsafeBufferPointer { quantized in
        scratch.luts.removeAll(keepingCapacity: true)
        for pair in pairs {
            scratch.luts.append(quantized.baseAddress! + tables.tableStart(query: Int(pair.query), probe: Int(pair.probe),
                                                                           nprobe: nprobe, lutBytes: lutBytes))
        }
        try scratch.luts.withUnsafeBufferPointer { lutPtr in
            try scratch.sums.withUnsafeMutableBufferPointer { sumPtr in
                for s in sources.indices where sources[s].entryCount(ofList: l) > 0 {
                    try sources[s].withList(l) { view in
                        let count = view.count
                        guard count > 0, let blocks = view.codes else { return }
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
        }
    }
}
