import Foundation
import PharosIndex
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

    @Test func expansionMatchesADirectComputation() throws {
        let query: [Float] = [1, 0, 0]
        let hits = QueryHits(keys: ["a", "b", "c"], scores: [0.9, 0.5, -0.2], vectors: [0.6, 0.8, 0, 2, 0, 0, -1, 0, 0])
        func unit(_ v: [Float]) -> [Float] { let n = v.reduce(0) { $0 + $1 * $1 }.squareRoot(); return v.map { $0 / n } }
        func close(_ a: [Float], _ b: [Float]) -> Bool { zip(a, b).allSatisfy { abs($0 - $1) < 1e-5 } }
        // AQE, n = 2, unit-norm collection: normalise(q + a + b).
        #expect(close(QueryExpansionMath.expand(query: query, hits: hits, expansion: .averageQE(n: 2), space: try VectorSpace(dimension: 3, metric: .innerProduct, normalization: .l2)), unit([3.6, 0.8, 0])))
        // AQE, n = 2, raw vectors: the mean of q, a, b.
        #expect(close(QueryExpansionMath.expand(query: query, hits: hits, expansion: .averageQE(n: 2), space: try VectorSpace(dimension: 3, metric: .innerProduct)), [3.6 / 3, 0.8 / 3, 0]))
        // alpha-QE, alpha 3, n = 3: cosines 0.6, 1, -1 -> weights 0.216, 1, 0.
        let weighted: [Float] = [1 + 0.216 * 0.6 + 2, 0.216 * 0.8, 0]
        #expect(close(QueryExpansionMath.expand(query: query, hits: hits, expansion: .alphaQE(n: 3, alpha: 3), space: try VectorSpace(dimension: 3, metric: .innerProduct, normalization: .l2)), unit(weighted)))
        #expect(close(QueryExpansionMath.expand(query: query, hits: hits, expansion: .alphaQE(n: 3, alpha: 3), space: try VectorSpace(dimension: 3, metric: .innerProduct)),
                      weighted.map { $0 / (1 + 0.216 + 1) }))
        // No vectors: the query itself.
        #expect(QueryExpansionMath.expand(query: query, hits: QueryHits(keys: [], scores: []), expansion: .averageQE(n: 5), space: try VectorSpace(dimension: 3, metric: .innerProduct, normalization: .l2)) == query)
    }

    @Test func badClusterFilesNameTheField() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("pharos-metric-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try Data(#"{"collection": {"dimension": 8, "metric": "cos", "factory": "IVF4,PQ4"}, "buckets": 4, "shards": [{"name": "a", "host": "h", "port": 1}]}"#.utf8)
            .write(to: URL(fileURLWithPath: file))
        #expect(throws: ClusterMapError(path: file, problem: "collection.metric = \"cos\", expected \"l2\" or \"ip\"")) {
            try ClusterMap.load(file)
        }
        let good = ClusterMap.Collection(dimension: 8, metric: .l2, factory: "IVF4,PQ4")
        #expect(throws: ClusterMapError(path: "c.json", problem: "assignment[1] = 5 names no shard (0..<1)")) {
            try ClusterMap(collection: good, buckets: 2, shards: [.init(name: "a", host: "h", port: 1)], assignment: [0, 5]).validate(path: "c.json")
        }
    }

    /// A coordinator's own wait may be longer than the protocol lets a request carry: what it
    /// forwards to shards is clamped, so shards never refuse a write for its deadline.
    @Test func forwardedDeadlinesStayWithinTheProtocolLimit() {
        #expect(Coordinator.forwardable(.seconds(900)) == RequestLimits().maximumDeadlineMilliseconds)
        #expect(Coordinator.forwardable(.milliseconds(1500)) == 1500)
        #expect(Coordinator.forwardable(.zero) == 0)
    }
}
