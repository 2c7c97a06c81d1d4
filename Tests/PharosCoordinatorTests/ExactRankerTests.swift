import PharosCluster
import PharosCoordinator
import PharosIndex
import PharosVectors
import PharosWire
import XCTest

/// `pharos eval --database`'s exact ranking: its bounded-heap selection must give exactly the
/// order of a full sort, ties broken by row, whatever k.
final class ExactRankerTests: XCTestCase {
    func testRankingEqualsAFullSortIncludingTies() throws {
        var rng = SplitMix64(seed: 7)
        let rows = 3_000, dimension = 8
        // Few distinct values, so many scores tie and the row order decides.
        var values = (0..<(rows * dimension)).map { _ in Float(Int(rng.nextUnitFloat() * 4)) / 4 }
        for column in 0..<dimension { values[5 * dimension + column] = values[column] }   // row 5 equals row 0
        let database = Matrix(rows: rows, columns: dimension, values: values)
        let keys = (0..<rows).map { "k\($0)" }
        let ranker = try ExactRanker(database: database, keys: keys, whitening: nil)
        for query in [0, 5, 17, 2_999] {
            let q = database.row(query)
            let scores = (0..<rows).map { row in zip(q, database.row(row)).reduce(Float(0)) { $0 + $1.0 * $1.1 } }
            let expected = (0..<rows).sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }.map { keys[$0] }
            for k in [1, 10, 999, rows, rows + 5] {
                XCTAssertEqual(ranker.ranking(q, k: k, expansion: .none), Array(expected.prefix(k)), "query \(query), k \(k)")
            }
        }
        XCTAssertEqual(ranker.ranking(database.row(0), k: 0, expansion: .none), [])
    }
}
