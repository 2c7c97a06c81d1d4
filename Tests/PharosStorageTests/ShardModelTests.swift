import Foundation
import PharosIndex
import PharosVectors
import Testing
@testable import PharosStorage

/// Randomised sequences of upserts, deletes, seals, compactions and restarts, checked after
/// every step against a dictionary that says what each key should hold.
@Suite struct ShardModelTests {
    enum Step: CaseIterable { case upsert, delete, seal, compact, compactAll, reopen }

    /// With `RefineFlat` scores are exact, so visibility is checked by rank and score as well.
    @Test(arguments: [(UInt64(1), "IVF4,PQ8x4fs,RefineSQ8"), (2, "IVF4,PQ8"), (3, "IVF6,PQ4x4fs"),
                      (4, "IVF4,PQ8x4fs,RefineFlat"), (5, "IVF6,PQ8,RefineFlat")])
    func randomSequencesMatchTheModel(seed: UInt64, factory: String) throws {
        let dir = Fixture.directory("model\(seed)")
        defer { Fixture.cleanup(dir) }
        let trained = try Fixture.trained(factory)
        var options = Fixture.manualOptions
        options.compactionSegmentTrigger = 3
        var shard = try Shard.create(at: dir, trainedIndex: trained, options: options)
        var model: [String: Shard.StoredEntry] = [:]
        // Each live key's vector, and every version that a replace or delete retired.
        var liveVectors: [String: [Float]] = [:]
        var retired: [[Float]] = []
        var rng = SplitMix64(seed: seed)
        let keySpace = 150
        var vectorStream = 0
        var taken: [Step: Int] = [:]
        var merges = 0
        for stepNumber in 0..<160 {
            let roll = Int(rng.next() % 100)
            let step: Step = roll < 50 ? .upsert : roll < 72 ? .delete : roll < 84 ? .seal : roll < 90 ? .compact : roll < 94 ? .compactAll : .reopen
            taken[step, default: 0] += 1
            switch step {
            case .upsert:
                let n = 1 + Int(rng.next() % 24)
                let keys = (0..<n).map { _ in "key-\(rng.next() % UInt64(keySpace))" }
                let vectors = Fixture.vectors(vectorStream..<vectorStream + n, stream: 11)
                vectorStream += n
                let metadata = (0..<n).map { [UInt8(stepNumber % 256), UInt8($0)] }
                try shard.upsert(keys: keys, vectors: vectors, metadata: metadata)
                let encoded = try trained.encodeEntries(vectors, threads: 1)
                let m = trained.layout.subquantizers, r = trained.layout.refineBytes
                for (i, key) in keys.enumerated() {
                    if let old = liveVectors[key] { retired.append(old) }
                    liveVectors[key] = Array(vectors.row(i))
                    model[key] = .init(list: Int(encoded.lists[i]), code: Array(encoded.codes[i * m ..< (i + 1) * m]),
                                       refine: Array(encoded.refine[i * r ..< (i + 1) * r]), metadata: metadata[i])
                }
            case .delete:
                let keys = (0..<(1 + Int(rng.next() % 8))).map { _ in "key-\(rng.next() % UInt64(keySpace))" }
                let present = Set(keys).filter { model[$0] != nil }.count
                #expect(try shard.delete(keys: keys) == present)
                for key in keys {
                    model[key] = nil
                    if let old = liveVectors.removeValue(forKey: key) { retired.append(old) }
                }
            case .seal:
                try shard.seal()
            case .compact:
                if try shard.compact() { merges += 1 }
            case .compactAll:
                if try shard.compact(force: true) { merges += 1 }
            case .reopen:
                shard.close()
                shard = try Shard.open(at: dir, options: options)
            }
            #expect(shard.statistics.liveEntries == model.count, "step \(stepNumber) (\(step))")
            // Merged-away segment files are gone once nothing uses them (no search holds one here).
            let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/segments").filter { $0.hasSuffix(".seg") }
            #expect(files.count == shard.statistics.segments, "step \(stepNumber): \(files)")
            if stepNumber % 8 == 7 || step == .reopen || step == .compactAll {
                try check(shard, against: model, keySpace: keySpace, step: stepNumber)
                if trained.configuration.refine == .flat {
                    try checkVisibility(shard, liveVectors: liveVectors, retired: retired, step: stepNumber)
                }
            }
        }
        try check(shard, against: model, keySpace: keySpace, step: -1)
        if trained.configuration.refine == .flat {
            try checkVisibility(shard, liveVectors: liveVectors, retired: retired, step: -1)
        }
        // The sequence exercised every kind of step, and compactions really merged.
        #expect(Set(taken.keys) == Set(Step.allCases))
        #expect(merges >= 3)
    }

    private func check(_ shard: Shard, against model: [String: Shard.StoredEntry], keySpace: Int, step: Int) throws {
        for k in 0..<keySpace {
            let key = "key-\(k)"
            #expect(try shard.entry(forKey: key) == model[key], "step \(step): \(key)")
        }
        // An exhaustive search returns every live key exactly once and nothing else.
        let lists = shard.index.listCount
        let hits = try shard.search(Fixture.vectors(0..<2, stream: 12), k: keySpace + 10, parameters: SearchParameters(nprobe: lists))
        for row in hits {
            #expect(row.count == model.count, "step \(step)")
            #expect(Set(row.map(\.key)) == Set(model.keys), "step \(step)")
        }
    }

    /// Search visibility with exact scores: every live key is rank 1 for its own vector, and
    /// every hit of any query (a live vector or a retired version) scores as the key's *current*
    /// vector does, so no deleted or replaced version is ever returned.
    private func checkVisibility(_ shard: Shard, liveVectors: [String: [Float]], retired: [[Float]], step: Int) throws {
        guard !liveVectors.isEmpty else { return }
        let liveKeys = liveVectors.keys.sorted()
        let queryRows = liveKeys.map { liveVectors[$0]! } + retired.suffix(40)
        let queries = Matrix(rows: queryRows.count, columns: Fixture.dimension, values: queryRows.flatMap { $0 })
        // k covers every entry and refineFactor 1 re-ranks all of them exactly.
        let k = liveKeys.count
        let hits = try shard.search(queries, k: k, parameters: SearchParameters(nprobe: shard.index.listCount, refineFactor: 1))
        for (q, row) in hits.enumerated() {
            let query = queryRows[q]
            #expect(row.count == k, "step \(step), query \(q): \(row.count) hits of \(k) live entries")
            if q < liveKeys.count {
                #expect(row.first?.key == liveKeys[q], "step \(step): \(liveKeys[q]) is not rank 1 for its own vector (\(row.prefix(2)))")
            }
            for hit in row {
                guard let current = liveVectors[hit.key] else {
                    Issue.record("step \(step): deleted key \(hit.key) returned")
                    continue
                }
                let exact = VectorMath.squaredL2(query, current)
                #expect(abs(hit.score - exact) <= 1e-3 * max(1, exact),
                        "step \(step): \(hit.key) scored \(hit.score), its current version \(exact): an old version was returned")
            }
        }
    }
}
