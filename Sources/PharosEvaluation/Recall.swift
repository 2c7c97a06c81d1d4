/// recall@k of rankings against exact neighbours (the fraction of each query's true top-k
/// found in its returned top-k, averaged), and precision-style recall@k for labelled sets.
public enum Recall {
    /// Mean over queries of |returned[:k] ∩ truth[:k]| / min(k, |truth|).
    public static func atK(_ k: Int, returned: [[String]], exact: [[String]]) -> Double {
        precondition(returned.count == exact.count && k > 0)
        var sum = 0.0, counted = 0
        for (r, t) in zip(returned, exact) where !t.isEmpty {
            let truth = Set(t.prefix(k))
            sum += Double(r.prefix(k).count { truth.contains($0) }) / Double(truth.count)
            counted += 1
        }
        return counted == 0 ? 0 : sum / Double(counted)
    }

    /// Mean over queries with positives of whether any positive is in the top k (the
    /// "recall@k" of landmark retrieval papers).
    public static func anyPositiveAtK(_ k: Int, rankings: [[String]], truth: RetrievalGroundTruth) -> Double {
        var hits = 0, counted = 0
        for (ranking, query) in zip(rankings, truth.queries) {
            let positives = Set(query.easy + query.hard)
            guard !positives.isEmpty else { continue }
            counted += 1
            let junk = Set(query.junk)
            if ranking.lazy.filter({ !junk.contains($0) }).prefix(k).contains(where: positives.contains) { hits += 1 }
        }
        return counted == 0 ? 0 : Double(hits) / Double(counted)
    }
}
