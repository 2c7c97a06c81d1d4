import Foundation
import PharosIndex
import PharosVectors
import Testing

/// `pharos index build/search/recall` as a library, over real files.
@Suite struct IndexFilesTests {
    @Test func buildSearchAndRecallOverFiles() throws {
        let work = NSTemporaryDirectory() + "pharos-index-files-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let data = SyntheticDataset(dimension: 16, clusters: 10, normalized: false, seed: 4)
        for (name, rows) in [("base", data.vectors(0..<2000, stream: 0)), ("queries", data.vectors(0..<20, stream: 2))] {
            let w = try VectorFileWriter(path: "\(work)/\(name).fvecs", dimension: 16)
            try w.write(rows)
            try w.finish()
        }
        let built = try IndexFiles.build(factory: "Flat", metric: .l2, base: work + "/base.fvecs", train: nil, trainCount: 500, threads: 1,
                                         into: work + "/index")
        #expect(built.index.count == 2000)
        // An exact index searched for k = 10 is its own ground truth: recall 1.
        let searched = try IndexFiles.search(directory: work + "/index", queries: work + "/queries.fvecs", k: 10,
                                             parameters: SearchParameters(), out: work + "/result.ivecs")
        #expect(searched.queries == 20)
        let recall = try IndexFiles.recall(result: work + "/result.ivecs", truth: work + "/result.ivecs")
        #expect(recall.map(\.at) == [1, 10] && recall.allSatisfy { $0.recall == 1 })
        // Files of different query counts are refused, naming both.
        let short = try VectorFileWriter(path: work + "/short.ivecs", dimension: 10)
        try short.write(int32Rows: [Int32](repeating: 0, count: 10))
        try short.finish()
        #expect { try IndexFiles.recall(result: work + "/result.ivecs", truth: work + "/short.ivecs") } throws: {
            "\($0)".contains("result.ivecs has 20 rows but") && "\($0)".contains("short.ivecs has 1")
        }
    }
}
