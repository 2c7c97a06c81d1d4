import PharosVectors
import PharosWire
import Testing
@testable import PharosCoordinator

@Suite struct MergeTests {
    /// The k-way merge equals sorting the union by (score, key).
    @Test(arguments: [true, false])
    func mergeEqualsABruteForceSortOfTheUnion(higherIsBetter: Bool) {
        var rng = SplitMix64(seed: 7)
        for round in 0..<50 {
            let lists = (0..<(1 + Int(rng.next() % 5))).map { s in
                let n = Int(rng.next() % 12)
                var scores = (0..<n).map { _ in Float(rng.next() % 50) / 7 }
                scores.sort(by: higherIsBetter ? (>) : (<))
                return QueryHits(keys: (0..<n).map { "s\(s)-\(round)-\($0)" }, scores: scores,
                                 vectors: (0..<n).flatMap { [Float($0), Float(s)] })
            }
            let k = 1 + Int(rng.next() % 15)
            let merged = TopKMerge.merge(lists, k: k, higherIsBetter: higherIsBetter, dimension: 2)
            var union: [(key: String, score: Float)] = []
            for l in lists { for (key, score) in zip(l.keys, l.scores) { union.append((key, score)) } }
            union.sort { (a: (key: String, score: Float), b: (key: String, score: Float)) -> Bool in
                if a.score != b.score { return higherIsBetter ? a.score > b.score : a.score < b.score }
                return a.key < b.key
            }
            let best = union.prefix(k)
            #expect(merged.keys == best.map { $0.key })
            #expect(merged.scores == best.map { $0.score })
            // Vectors follow their keys.
            for (i, key) in merged.keys.enumerated() {
                let parts = key.split(separator: "-")
                #expect(merged.vectors[i * 2 + 1] == Float(String(parts[0].dropFirst()))!)
                #expect(merged.vectors[i * 2] == Float(parts[2])!)
            }
        }
    }

    @Test func expansionMatchesADirectComputation() {
        let query: [Float] = [1, 0, 0]
        let hits = QueryHits(keys: ["a", "b", "c"], scores: [0.9, 0.5, -0.2], vectors: [0, 1, 0, 0, 0, 1, 1, 1, 1])
        func unit(_ v: [Float]) -> [Float] { let n = v.reduce(0) { $0 + $1 * $1 }.squareRoot(); return v.map { $0 / n } }
        // AQE with n = 2: q + a + b.
        #expect(QueryExpansionMath.expand(query: query, hits: hits, expansion: .averageQE(n: 2), higherIsBetter: true) == unit([1, 1, 1]))
        // alpha-QE, alpha 3, n = 3: q + 0.9^3 a + 0.5^3 b + 0 * c (negative similarity).
        let expected = unit([1, Float(0.9 * 0.9 * 0.9), Float(0.5 * 0.5 * 0.5)])
        let got = QueryExpansionMath.expand(query: query, hits: hits, expansion: .alphaQE(n: 3, alpha: 3), higherIsBetter: true)
        for j in 0..<3 { #expect(abs(got[j] - expected[j]) < 1e-6) }
        // L2 scores become similarities 1 - d/2.
        let l2 = QueryHits(keys: ["a"], scores: [0.2], vectors: [0, 1, 0])
        let gotL2 = QueryExpansionMath.expand(query: query, hits: l2, expansion: .alphaQE(n: 1, alpha: 1), higherIsBetter: false)
        let expectedL2 = unit([1, 0.9, 0])
        for j in 0..<3 { #expect(abs(gotL2[j] - expectedL2[j]) < 1e-6) }
        // No vectors: the query itself.
        #expect(QueryExpansionMath.expand(query: query, hits: QueryHits(keys: [], scores: []), expansion: .averageQE(n: 5), higherIsBetter: true) == query)
    }

    @Test func badClusterFilesNameTheField() {
        let collection = ClusterMap.Collection(dimension: 8, metric: "cos", factory: "IVF4,PQ4")
        #expect(throws: ClusterMapError(path: "c.json", problem: "collection.metric = \"cos\", expected \"l2\" or \"ip\"")) {
            try ClusterMap(collection: collection, shards: [.init(name: "a", host: "h", port: 1)]).validate(path: "c.json")
        }
        let good = ClusterMap.Collection(dimension: 8, metric: "l2", factory: "IVF4,PQ4")
        #expect(throws: ClusterMapError(path: "c.json", problem: "assignment[1] = 5 names no shard (0..<1)")) {
            try ClusterMap(collection: good, buckets: 2, shards: [.init(name: "a", host: "h", port: 1)], assignment: [0, 5]).validate(path: "c.json")
        }
    }
}
