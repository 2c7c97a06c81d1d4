import PharosKernels
import PharosVectors

extension IVFPQIndex {
    /// 8-bit codes: a float table per (query, list), the ADC kernel over each source's copy
    /// of the list, deleted entries skipped at the heap push.
    func scan8(_ queries: Matrix, chunk: Range<Int>, probes: [Int32], biases: [Float], nprobe: Int,
               probeRange: Range<Int>, sources: [any InvertedListSource], heaps: inout [ResultHeap]) throws {
        let m = pq.subquantizers, ksub = pq.centroidsPerSubspace, d = dimension
        var ip = [Float](repeating: 0, count: m * ksub)
        var lut = [Float](repeating: 0, count: m * ksub)
        var distances = [Float]()
        try queries.values.withUnsafeBufferPointer { qb in
            try ip.withUnsafeMutableBufferPointer { ipb in
                try lut.withUnsafeMutableBufferPointer { lutb in
                    for qi in 0..<chunk.count {
                        pq.innerProductTable(qb.baseAddress! + (chunk.lowerBound + qi) * d, into: ipb.baseAddress!)
                        // Inner product: one table serves every list (the list enters as its bias).
                        if metric == .innerProduct { lookupTable(list: 0, innerProducts: ipb.baseAddress!, into: lutb.baseAddress!) }
                        for p in probeRange {
                            let l = Int(probes[qi * nprobe + p])
                            guard l >= 0 else { continue }
                            var tableReady = false
                            for s in sources.indices where sources[s].entryCount(ofList: l) > 0 {
                                try sources[s].withList(l) { view in
                                    guard view.count > 0 else { return }
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
    }
}
