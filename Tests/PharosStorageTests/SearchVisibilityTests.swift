import Foundation
import PharosIndex
import PharosVectors
import Testing
@testable import PharosStorage

/// The case that found the deletion-bitmap overread: deletes, then appends to the same lists,
/// then every fresh key searched right away for its own vector at full nprobe with exact
/// re-ranking. Before the fix a few percent of them were never returned.
@Suite struct SearchVisibilityTests {
    @Test(arguments: ["IVF16,PQ8x4fs,RefineFlat", "IVF16,PQ8,RefineFlat"])
    func freshKeysAreFoundAfterDeletesInTheirLists(factory: String) throws {
        let dir = Fixture.directory("visibility")
        defer { Fixture.cleanup(dir) }
        let trained = try Fixture.trained(factory)
        let shard = try Shard.create(at: dir, trainedIndex: trained, options: Fixture.manualOptions)
        var rng = SplitMix64(seed: 17)
        let total = 3000
        for start in stride(from: 0, to: total, by: 100) {
            try shard.upsert(keys: Fixture.keys(start..<start + 100), vectors: Fixture.vectors(start..<start + 100))
        }
        var stream = total
        for _ in 0..<10 {  // replace and delete batches of random keys
            let replaced = (0..<50).map { _ in "img-\(rng.next() % UInt64(total))" }
            let unique = Array(Set(replaced)).sorted()
            try shard.upsert(keys: unique, vectors: Fixture.vectors(stream..<stream + unique.count))
            stream += unique.count
            _ = try shard.delete(keys: (0..<50).map { _ in "img-\(rng.next() % UInt64(total))" })
        }
        let parameters = SearchParameters(nprobe: 16, refineFactor: 256, threads: 1)
        var missed: [String] = []
        for i in 0..<300 {
            let key = "fresh-\(i)", vector = Fixture.vectors(stream..<stream + 1)
            stream += 1
            try shard.upsert(keys: [key], vectors: vector)
            if try shard.search(vector, k: 1, parameters: parameters).first?.first?.key != key { missed.append(key) }
        }
        #expect(missed.isEmpty, "\(missed.count) of 300 fresh keys not found for their own vector: \(missed.prefix(8))")
        try shard.seal()
        let fresh = Fixture.vectors(stream - 300..<stream)
        let afterSeal = try shard.search(fresh, k: 1, parameters: parameters)
        let missedAfterSeal = (0..<300).filter { afterSeal[$0].first?.key != "fresh-\($0)" }
        #expect(missedAfterSeal.isEmpty)
    }
}
