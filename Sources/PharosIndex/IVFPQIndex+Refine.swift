import PharosVectors

/// Re-ranking: the shortlist re-scored with refine codes against the original query.
extension IVFPQIndex {
    /// Re-scores `labels` with refine codes against the original (unrotated) query. Labels are
    /// visited grouped by (source, list), so each list is opened once; the heap keeps the k
    /// smallest (distance, label) pairs, a total order, so the visiting order does not matter.
    func rerank(query queries: Matrix, row q: Int, codec: RefineCodec, labels: ArraySlice<Int64>,
                sources: [any InvertedListSource], into heap: inout ResultHeap) throws {
        let d = dimension, bytes = codec.codeBytes, metric = self.metric
        var scratch = [Float](repeating: 0, count: d)
        let ordered = labels.sorted()
        try queries.values.withUnsafeBufferPointer { qb in
            try scratch.withUnsafeMutableBufferPointer { out in
                let query = qb.baseAddress! + q * d
                let prepared = codec.prepare(query, metric: metric)
                var start = 0
                while start < ordered.count {
                    let group = ordered[start] >> 32   // source and list
                    var end = start + 1
                    while end < ordered.count && ordered[end] >> 32 == group { end += 1 }
                    let range = start ..< end
                    try sources[Label.source(ordered[start])].withList(Label.list(ordered[start])) { view in
                        guard let refine = view.refine else {
                            throw IndexError.invalidParameter(name: "list source", value: "no refine codes", allowed: "a source of this index's layout")
                        }
                        for label in ordered[range] {
                            let code = refine + Label.offset(label) * bytes
                            let distance = prepared.map { codec.distance(prepared: $0, code) }
                                ?? codec.distance(query, code, metric: metric, scratch: out.baseAddress!)
                            heap.push(distance, label)
                        }
                    }
                    start = end
                }
            }
        }
    }
}
