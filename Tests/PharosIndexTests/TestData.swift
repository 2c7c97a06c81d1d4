import Foundation
import PharosVectors
@testable import PharosIndex

/// Small deterministic clustered data sets shared by the index tests.
enum TestData {
    static func clustered(_ count: Int, dimension: Int = 16, normalized: Bool = false, stream: UInt64 = 0, seed: UInt64 = 11) -> Matrix {
        SyntheticDataset(dimension: dimension, clusters: 20, spread: 0.4, normalized: normalized, seed: seed)
            .vectors(0..<count, stream: stream)
    }

    /// The obviously-correct reference: score every vector, sort by (distance, id).
    static func bruteForce(_ base: Matrix, _ queries: Matrix, k: Int, metric: Metric) -> [[Int64]] {
        (0..<queries.rows).map { q in
            let query = queries.row(q)
            let scored = (0..<base.rows).map { i -> (Float, Int64) in
                let v = base.row(i)
                return (metric == .l2 ? VectorMath.squaredL2(query, v) : -VectorMath.dot(query, v), Int64(i))
            }
            return scored.sorted { $0 < $1 }.prefix(k).map { $0.1 }
        }
    }

    static func temporaryDirectory() -> String {
        let path = NSTemporaryDirectory() + "pharos-index-tests-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
