import Foundation
import PharosIndex
import PharosStorage
import PharosVectors

/// Shared fixtures: a trained index per configuration (trained once), vectors, temp folders.
enum Fixture {
    static let dimension = 16
    static let dataset = SyntheticDataset(dimension: dimension, clusters: 24, normalized: false, seed: 99)

    /// Vectors `range` of the synthetic set (deterministic).
    static func vectors(_ range: Range<Int>, stream: UInt64 = 0) -> Matrix {
        dataset.vectors(range, stream: stream)
    }

    /// A trained, empty index for `factory`.
    static func trained(_ factory: String) throws -> IVFPQIndex {
        let index = try IndexFactory.make(factory, dimension: dimension, metric: .l2) as! IVFPQIndex
        try index.train(vectors(0..<3000, stream: 7), threads: 2)
        return index
    }

    /// A fresh, empty directory under the system temp folder; removed by `cleanup`.
    static func directory(_ name: String = #function) -> String {
        let path = NSTemporaryDirectory() + "pharos-storage-\(name.filter { $0.isLetter || $0.isNumber })-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.removeItem(atPath: path)
        return path
    }

    static func cleanup(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

    /// Options for deterministic tests: no background work, problems collected silently.
    static var manualOptions: Shard.Options {
        var o = Shard.Options()
        o.automaticMaintenance = false
        o.log = { _ in }
        return o
    }

    /// Manual options with a fault injector the test controls.
    static func faultyOptions() -> (Shard.Options, StorageFaults) {
        var options = manualOptions
        let faults = StorageFaults()
        options.faults = faults
        return (options, faults)
    }

    static func keys(_ range: Range<Int>, prefix: String = "img") -> [String] { range.map { "\(prefix)-\($0)" } }
}
