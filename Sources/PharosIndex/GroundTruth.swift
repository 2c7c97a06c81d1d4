import PharosVectors

/// Exact neighbours and recall: the yardstick for every approximate configuration.
public enum GroundTruth {
    /// Exact `k` nearest neighbours of each query, streaming the base file in batches so that
    /// memory stays bounded by one batch plus the per-query heaps.
    public static func compute(base: VectorFileReader, queries: Matrix, k: Int, metric: Metric,
                               threads: Int, batch: Int = 200_000,
                               progress: ((Int) -> Void)? = nil) throws -> SearchResult {
        guard (1...SearchParameters.maximumK).contains(k) else {
            throw IndexError.invalidParameter(name: "k", value: "\(k)", allowed: "1...\(SearchParameters.maximumK)")
        }
        guard queries.columns == base.dimension else {
            throw IndexError.invalidParameter(name: "queries", value: "\(queries.columns)-D",
                                              allowed: "\(base.dimension)-D like the base vectors of \(base.path)")
        }
        var merged = SearchResult(queryCount: queries.rows, k: k, metric: metric)
        var heaps = (0..<queries.rows).map { _ in ResultHeap(capacity: k) }
        try base.forEachBatch(of: batch) { rows, first in
            let flat = FlatIndex(dimension: rows.columns, metric: metric)
            try flat.add(rows, ids: (0..<Int64(rows.rows)).map { Int64(first) + $0 }, threads: threads)
            let partial = flat.searchLocked(queries, k: Swift.min(k, rows.rows), threads: threads)
            for q in 0..<queries.rows {
                for r in 0..<partial.k where partial.ids[q * partial.k + r] >= 0 {
                    // Internal distances: smaller is better.
                    let score = partial.scores[q * partial.k + r]
                    heaps[q].push(metric == .innerProduct ? -score : score, partial.ids[q * partial.k + r])
                }
            }
            progress?(first + rows.rows)
        }
        for q in 0..<queries.rows {
            let (dist, ids) = heaps[q].sorted()
            for (r, (dv, id)) in zip(dist, ids).enumerated() {
                merged.ids[q * k + r] = id
                merged.scores[q * k + r] = metric.score(fromDistance: dv)
            }
        }
        return merged
    }

    /// Recall@r as in ann-benchmarks' "k-NN recall": the fraction of the true top-r found in
    /// the returned top-r, averaged over queries.
    /// - Parameters:
    ///   - result: returned ids, `queries x resultK` row-major.
    ///   - truth: true ids, `queries x truthK` row-major.
    public static func recall(at r: Int, result: [Int64], resultK: Int, truth: [Int64], truthK: Int) -> Double {
        precondition(r <= resultK && r <= truthK, "recall@\(r) needs at least \(r) results and \(r) true neighbours")
        let queries = result.count / resultK
        precondition(truth.count / truthK == queries, "result and truth cover different numbers of queries")
        var hits = 0
        for q in 0..<queries {
            let expected = Set(truth[q * truthK ..< q * truthK + r])
            hits += result[q * resultK ..< q * resultK + r].filter { expected.contains($0) }.count
        }
        return Double(hits) / Double(Swift.max(1, queries * r))
    }

    /// Recall 1@r as faiss's benchmarks report it: the fraction of queries whose true nearest
    /// neighbour appears among the first r results.
    public static func oneRecall(at r: Int, result: [Int64], resultK: Int, truth: [Int64], truthK: Int) -> Double {
        let queries = result.count / resultK
        var hits = 0
        for q in 0..<queries where result[q * resultK ..< q * resultK + Swift.min(r, resultK)].contains(truth[q * truthK]) {
            hits += 1
        }
        return Double(hits) / Double(Swift.max(1, queries))
    }

    /// Recall@1/10/100 (those within `k` and the truth's width) of results named by keys
    /// `keyPrefix` + row number, one list per query, against the exact neighbour rows of the
    /// `.ivecs` file `truth`. A key of another form counts as a miss.
    public static func recall(ofKeys results: [[String]], k: Int, keyPrefix: String, truth: String) throws -> [(at: Int, recall: Double)] {
        let truthFile = try VectorFileReader(path: truth)
        let truthIDs = try truthFile.readInt32Rows(0..<results.count).map(Int64.init)
        let ids = results.flatMap { row in
            (0..<k).map { r in r < row.count && row[r].hasPrefix(keyPrefix) ? Int64(row[r].dropFirst(keyPrefix.count)) ?? -1 : -1 }
        }
        return [1, 10, 100].filter { $0 <= k && $0 <= truthFile.dimension }.map { at in
            (at, recall(at: at, result: ids, resultK: k, truth: truthIDs, truthK: truthFile.dimension))
        }
    }
}
