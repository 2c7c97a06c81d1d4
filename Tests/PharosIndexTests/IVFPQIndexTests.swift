import PharosKernels
import PharosTestSupport
import PharosVectors
import Testing
@testable import PharosIndex

@Suite struct IVFPQIndexTests {
    static let base = TestData.clustered(4000, dimension: 32)
    static let queries = TestData.clustered(60, dimension: 32, stream: 1)

    func built(_ factory: String, metric: Metric = .l2, base: Matrix = IVFPQIndexTests.base) throws -> any VectorIndex {
        let index = try IndexFactory.make(factory, dimension: base.columns, metric: metric)
        try index.train(base, threads: 2)
        try index.add(base, ids: (0..<Int64(base.rows)).map { $0 * 3 + 1 }, threads: 2)
        return index
    }

    /// With every list probed, an 8-bit index returns exactly the top-k of the naive
    /// asymmetric distance: |query - reconstruction|^2 (or -<query, reconstruction>).
    @Test(arguments: [Metric.l2, Metric.innerProduct])
    func eightBitScoresEqualNaiveADC(metric: Metric) throws {
        let base = metric == .innerProduct ? TestData.clustered(4000, dimension: 32, normalized: true) : Self.base
        let index = try built("IVF16,PQ8", metric: metric, base: base)
        let result = try index.search(Self.queries, k: 10, parameters: SearchParameters(nprobe: 16, threads: 2))
        let ids = (0..<Int64(base.rows)).map { $0 * 3 + 1 }
        let reconstructions = try ids.map { try index.reconstruct($0) }
        for q in 0..<20 {
            let query = Self.queries.row(q)
            let naive = zip(ids, reconstructions).map { id, r -> (Float, Int64) in
                (metric == .l2 ? VectorMath.squaredL2(query, r) : -VectorMath.dot(query, r), id)
            }.sorted { $0 < $1 }
            for r in 0..<10 {
                let expectedScore = metric.score(fromDistance: naive[r].0)
                #expect(abs(result.scores[q * 10 + r] - expectedScore) < 1e-3 * max(1, abs(expectedScore)))
            }
            // Ids agree except where two candidates tie within float rounding.
            let overlap = Set(result.ids(ofQuery: q)).intersection(naive.prefix(10).map(\.1)).count
            #expect(overlap >= 9)
        }
    }

    @Test func fastScanApproximatesNaiveADC() throws {
        let index = try built("IVF16,PQ16x4fs")
        let result = try index.search(Self.queries, k: 10, parameters: SearchParameters(nprobe: 16, threads: 1))
        let ids = (0..<Int64(Self.base.rows)).map { $0 * 3 + 1 }
        let reconstructions = try ids.map { try index.reconstruct($0) }
        var overlap = 0
        var relativeError: Float = 0
        let checked = 20
        for q in 0..<checked {
            let query = Self.queries.row(q)
            let naive = zip(ids, reconstructions).map { (VectorMath.squaredL2(query, $1), $0) }.sorted { $0 < $1 }
            overlap += Set(result.ids(ofQuery: q)).intersection(naive.prefix(10).map(\.1)).count
            // Quantized tables: scores stay close to the float ADC distance of the same vector.
            let first = result.scores[q * 10]
            let exact = naive.first { $0.1 == result.ids[q * 10] }!.0
            let error = abs(first - exact) / max(1, exact)
            #expect(error < 0.15)
            relativeError += error / Float(checked)
        }
        #expect(relativeError < 0.04)
        #expect(Double(overlap) / Double(checked * 10) > 0.85)
    }

    @Test func fastScanAgreesAcrossKernelLevels() throws {
        let index = try built("PQ8x4fs")
        let (simd, portable) = try KernelLevels.both { try index.search(Self.queries, k: 15, parameters: SearchParameters(threads: 1)) }
        #expect(simd == portable)
    }

    @Test(arguments: ["IVF32,PQ8", "IVF32,PQ16x4fs,RefineSQ8", "OPQ8,IVF16,PQ8x4fs,RefineFP16", "PQ4,RefineFlat"])
    func resultsDoNotDependOnThreadCount(factory: String) throws {
        let index = try built(factory)
        let one = try index.search(Self.queries, k: 12, parameters: SearchParameters(nprobe: 4, threads: 1))
        for threads in [2, 3] {
            #expect(try index.search(Self.queries, k: 12, parameters: SearchParameters(nprobe: 4, threads: threads)) == one)
        }
    }

    /// Fewer queries than threads takes the path that splits the probed lists over threads;
    /// it must give exactly the single-threaded result.
    @Test(arguments: ["IVF32,PQ8", "IVF32,PQ16x4fs,RefineSQ8", "IVF32,PQ8,RefineFP16"])
    func splittingListsOverThreadsChangesNothing(factory: String) throws {
        let index = try built(factory)
        for rows in [1, 2, 3] {
            let q = Self.queries.rows(0..<rows)
            let one = try index.search(q, k: 10, parameters: SearchParameters(nprobe: 13, threads: 1))
            for threads in [2, 4, 16] {
                #expect(try index.search(q, k: 10, parameters: SearchParameters(nprobe: 13, threads: threads)) == one)
            }
        }
        #expect(try index.search(Self.queries.rows(0..<0), k: 3, parameters: SearchParameters()).ids.isEmpty)
    }

    @Test func refineApproachesExactSearch() throws {
        let truth = TestData.bruteForce(Self.base, Self.queries, k: 10, metric: .l2).map { $0.map { $0 * 3 + 1 } }
        func recall(_ factory: String, refineFactor: Int) throws -> Double {
            let index = try built(factory)
            let r = try index.search(Self.queries, k: 10, parameters: SearchParameters(nprobe: 32, refineFactor: refineFactor))
            var hits = 0
            for q in 0..<Self.queries.rows { hits += Set(r.ids(ofQuery: q)).intersection(truth[q]).count }
            return Double(hits) / Double(Self.queries.rows * 10)
        }
        let plain = try recall("IVF32,PQ4x4fs", refineFactor: 1)
        let refined = try recall("IVF32,PQ4x4fs,RefineFlat", refineFactor: 20)
        #expect(refined > plain)
        #expect(refined > 0.97)
        #expect(try recall("IVF32,PQ4x4fs,RefineSQ8", refineFactor: 20) > 0.9)
    }

    @Test func concurrentSearchesWithDifferentParametersDoNotInterfere() async throws {
        let index = try built("IVF32,PQ8,RefineSQ8")
        let settings = [(1, 1), (4, 2), (32, 8), (8, 4)]
        let expected = try settings.map { try index.search(Self.queries, k: 10, parameters: SearchParameters(nprobe: $0.0, refineFactor: $0.1, threads: 1)) }
        try await withThrowingTaskGroup(of: (Int, SearchResult).self) { group in
            for _ in 0..<3 {
                for (i, s) in settings.enumerated() {
                    group.addTask {
                        return (i, try index.search(Self.queries, k: 10, parameters: SearchParameters(nprobe: s.0, refineFactor: s.1, threads: 1)))
                    }
                }
            }
            for try await (i, result) in group { #expect(result == expected[i]) }
        }
    }

    @Test func searchBeforeTrainingAndBadParametersAreRejected() throws {
        let index = try IndexFactory.make("IVF8,PQ4", dimension: 32, metric: .l2)
        #expect(throws: IndexError.notTrained) { try index.add(Self.base, ids: nil, threads: 1) }
        #expect(throws: IndexError.notTrained) { try index.search(Self.queries, k: 1, parameters: SearchParameters()) }
        #expect(throws: IndexError.self) { try index.train(Self.base.rows(0..<100), threads: 1) }  // < 256 for PQ
        let trained = try built("IVF8,PQ4")
        #expect(throws: IndexError.self) { try trained.search(Self.queries, k: 10, parameters: SearchParameters(nprobe: 0)) }
        #expect(throws: IndexError.self) { try trained.search(Self.queries, k: 100_000, parameters: SearchParameters()) }
        #expect(throws: IndexError.dimensionMismatch(expected: 32, found: 16)) {
            try trained.search(TestData.clustered(2, dimension: 16), k: 1, parameters: SearchParameters())
        }
        // nprobe larger than the list count is clamped, not an error.
        #expect(try trained.search(Self.queries, k: 5, parameters: SearchParameters(nprobe: 1000)).ids.allSatisfy { $0 >= 0 })
        #expect(throws: IndexError.unknownID(2)) { try trained.reconstruct(2) }
        // Duplicate ids are refused once the id map exists.
        #expect(throws: IndexError.duplicateID(1)) { try trained.add(Self.base.rows(0..<1), ids: [1], threads: 1) }
    }

    @Test(arguments: ["Flat", "OPQ4,IVF16,PQ8x4fs,RefineSQ8", "IVF16,PQ8"])
    func emptyBatchesAreHarmless(factory: String) throws {
        let index = try built(factory)
        try index.add(Matrix(rows: 0, columns: 32), ids: nil, threads: 2)
        try index.add(Matrix(rows: 0, columns: 32), ids: [], threads: 2)
        #expect(index.count == Self.base.rows)
        #expect(try index.search(Matrix(rows: 0, columns: 32), k: 5, parameters: SearchParameters()).ids.isEmpty)
    }

    /// A coordinator finds each query's lists once (`assign`) and shards scan them: the same
    /// hits, bit for bit, as a search that finds its own lists, one query at a time or many,
    /// with every factory shape (OPQ rotates before the coarse search). Lists that this index
    /// cannot have assigned are refused, naming the problem.
    @Test(arguments: ["IVF32,PQ8", "IVF32,PQ16x4fs,RefineSQ8", "OPQ8,IVF16,PQ8x4fs,RefineFP16"])
    func givenListsSearchExactlyAsFoundOnes(factory: String) throws {
        let index = try built(factory) as! IVFPQIndex
        let parameters = SearchParameters(nprobe: 5, threads: 2)
        for queries in [Self.queries.rows(0..<1), Self.queries.rows(0..<3), Self.queries] {
            let found = try index.search(queries, k: 10, parameters: parameters, sources: [index.lists])
            let probes = try index.assign(queries, nprobe: 5)
            #expect(probes.perQuery == 5 && probes.queryCount == queries.rows)
            let given = try index.search(queries, k: 10, parameters: parameters, sources: [index.lists], probes: probes)
            #expect(given == found, "\(queries.rows) queries")
        }
        let one = Self.queries.rows(0..<1)
        let probes = try index.assign(one, nprobe: 5)
        func refusal(_ lists: [Int32], _ biases: [Float], nprobe: Int = 5) -> String? {
            do {
                _ = try index.search(one, k: 10, parameters: SearchParameters(nprobe: nprobe), sources: [index.lists],
                                     probes: try ProbeAssignment(perQuery: lists.count, lists: lists, biases: biases))
                return nil
            } catch { return "\(error)" }
        }
        #expect(refusal(probes.lists, probes.biases) == nil)
        #expect(refusal(probes.lists, probes.biases, nprobe: 6)?.contains("min(nprobe") == true)
        #expect(refusal([99] + probes.lists.dropFirst(), probes.biases)?.contains("list 99") == true)
        #expect(refusal([-1] + probes.lists.dropFirst(), probes.biases)?.contains("list -1") == true)
        #expect(refusal([probes.lists[1]] + probes.lists.dropFirst(), probes.biases)?.contains("twice") == true)
        #expect(refusal(probes.lists, [.nan] + probes.biases.dropFirst())?.contains("finite") == true)
        #expect(throws: IndexError.self) { try ProbeAssignment(perQuery: 5, lists: [1, 2, 3], biases: [0, 0, 0]) }
    }

    /// Interactive queries (a few per call) shortlist their lists with int8 centroids and
    /// score the shortlist exactly: the lists are the nearest ones the float pass over every
    /// centroid finds (a batch's path), with the same distances, and the same at every kernel
    /// level.
    @Test(arguments: [Metric.l2, Metric.innerProduct])
    func fewQueriesFindTheNearestListsThroughTheInt8Pass(metric: Metric) throws {
        let normalized = metric == .innerProduct
        let base = TestData.clustered(6000, dimension: 32, normalized: normalized)
        let index = try IndexFactory.make("IVF256,PQ8x4fs", dimension: 32, metric: metric) as! IVFPQIndex
        try index.train(base, threads: 2)
        #expect(index.coarseCodes != nil && CoarseCodes.worthIt(lists: 256, dimension: 32, nprobe: 8))
        let queries = TestData.clustered(40, dimension: 32, normalized: normalized, stream: 1)
        let batch = try index.assign(queries, nprobe: 8)   // 40 queries: the float pass over every centroid
        var same = 0
        for q in 0..<40 {
            let one = try index.assign(queries.rows(q ..< q + 1), nprobe: 8)   // the int8 pass, then exact scores
            let expected = batch.lists[q * 8 ..< (q + 1) * 8]
            if Set(one.lists) == Set(expected) { same += 1 }
            let close = zip(one.biases, batch.biases[q * 8 ..< (q + 1) * 8]).allSatisfy { abs($0 - $1) <= 1e-4 * Swift.max(1, abs($1)) }
            #expect(close, "query \(q): \(one.biases) vs \(Array(batch.biases[q * 8 ..< (q + 1) * 8]))")
        }
        #expect(same == 40)
        let levels = try KernelLevels.both { try index.assign(queries.rows(0..<3), nprobe: 8) }
        #expect(levels.portable == levels.simd)
    }

    @Test func refineShortlistIsBounded() throws {
        let index = try IndexFactory.make("PQ4,RefineSQ8", dimension: 32, metric: .l2)
        #expect(throws: IndexError.invalidParameter(name: "k x refineFactor", value: "131072", allowed: "1...65536")) {
            try index.search(Self.queries, k: 16384, parameters: SearchParameters(refineFactor: 8))
        }
    }

    @Test func bytesPerVectorCountsCodesIdsAndRefine() throws {
        #expect(try IndexFactory.make("IVF8,PQ8", dimension: 32, metric: .l2).bytesPerVector == 8 + 8)
        #expect(try IndexFactory.make("IVF8,PQ7x4fs", dimension: 28, metric: .l2).bytesPerVector == 4 + 8)
        #expect(try IndexFactory.make("PQ8x4fs,RefineSQ8", dimension: 32, metric: .l2).bytesPerVector == 4 + 8 + 32)
    }
}
