import PharosVectors
import Testing
@testable import PharosIndex

@Suite struct FlatIndexTests {
    @Test(arguments: [Metric.l2, Metric.innerProduct])
    func matchesBruteForce(metric: Metric) throws {
        let base = TestData.clustered(700), queries = TestData.clustered(25, stream: 1)
        let index = FlatIndex(dimension: 16, metric: metric)
        try index.add(base, ids: nil, threads: 2)
        let result = try index.search(queries, k: 10, parameters: SearchParameters(threads: 2))
        let truth = TestData.bruteForce(base, queries, k: 10, metric: metric)
        for q in 0..<queries.rows {
            #expect(Array(result.ids(ofQuery: q)) == truth[q])
            let best = base.row(Int(truth[q][0]))
            let expected = metric == .l2 ? VectorMath.squaredL2(queries.row(q), best) : VectorMath.dot(queries.row(q), best)
            #expect(abs(result.scores[q * 10] - expected) < 1e-3 * max(1, abs(expected)))
        }
    }

    @Test func resultsDoNotDependOnThreadCount() throws {
        let base = TestData.clustered(5000), queries = TestData.clustered(150, stream: 1)
        let index = FlatIndex(dimension: 16, metric: .l2)
        try index.add(base, ids: nil, threads: 1)
        let one = try index.search(queries, k: 20, parameters: SearchParameters(threads: 1))
        for threads in [2, 3, 8] {
            #expect(try index.search(queries, k: 20, parameters: SearchParameters(threads: threads)) == one)
        }
    }

    @Test func implicitIdsTurnExplicitWithoutChangingResults() throws {
        let index = FlatIndex(dimension: 2, metric: .l2)
        try index.add(Matrix(rowArrays: [[0, 0], [1, 0]]), ids: nil, threads: 1)
        try index.add(Matrix(rowArrays: [[2, 0]]), ids: [2], threads: 1)  // still 0, 1, 2, ...
        #expect(index.bytesPerVector == 2 * 4 + 4)
        try index.add(Matrix(rowArrays: [[3, 0]]), ids: [100], threads: 1)
        #expect(index.bytesPerVector == 2 * 4 + 4 + 8)
        #expect(throws: IndexError.duplicateID(1)) { try index.add(Matrix(rowArrays: [[9, 9]]), ids: [1], threads: 1) }
        let r = try index.search(Matrix(rowArrays: [[2.9, 0]]), k: 4, parameters: SearchParameters())
        #expect(r.ids == [100, 2, 1, 0])
        #expect(try index.reconstruct(100) == [3, 0])
        #expect(try index.reconstruct(1) == [1, 0])
        #expect(index.count == 4)
    }

    @Test func fewerVectorsThanKPadsWithMinusOne() throws {
        let index = FlatIndex(dimension: 2, metric: .l2)
        try index.add(Matrix(rowArrays: [[0, 0], [1, 1]]), ids: [10, 20], threads: 1)
        let r = try index.search(Matrix(rowArrays: [[0.9, 0.9]]), k: 4, parameters: SearchParameters())
        #expect(r.ids == [20, 10, -1, -1])
        #expect(try index.reconstruct(10) == [0, 0])
        #expect(throws: IndexError.unknownID(99)) { try index.reconstruct(99) }
    }

    @Test func rejectsBadInputWithoutChangingContents() throws {
        let index = FlatIndex(dimension: 3, metric: .l2)
        try index.add(Matrix(rowArrays: [[1, 2, 3]]), ids: [1], threads: 1)
        #expect(throws: IndexError.dimensionMismatch(expected: 3, found: 2)) {
            try index.add(Matrix(rowArrays: [[1, 2]]), ids: nil, threads: 1)
        }
        #expect(throws: IndexError.nonFiniteValue(row: 1, column: 2)) {
            try index.add(Matrix(rowArrays: [[1, 2, 3], [1, 2, .nan]]), ids: [2, 3], threads: 1)
        }
        #expect(throws: IndexError.duplicateID(1)) {
            try index.add(Matrix(rowArrays: [[4, 5, 6]]), ids: [1], threads: 1)
        }
        #expect(throws: IndexError.idCountMismatch(vectors: 1, ids: 2)) {
            try index.add(Matrix(rowArrays: [[4, 5, 6]]), ids: [7, 8], threads: 1)
        }
        #expect(throws: IndexError.self) { try index.search(Matrix(rowArrays: [[1, 2, .infinity]]), k: 1, parameters: SearchParameters()) }
        #expect(throws: IndexError.self) { try index.search(Matrix(rowArrays: [[1, 2, 3]]), k: 0, parameters: SearchParameters()) }
        #expect(index.count == 1)
        #expect(try index.search(Matrix(rows: 0, columns: 3), k: 2, parameters: SearchParameters()).ids.isEmpty)
    }
}
