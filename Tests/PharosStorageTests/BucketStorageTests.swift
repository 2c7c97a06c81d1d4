import Foundation
import PharosIndex
import PharosRouting
import PharosVectors
import Testing
@testable import PharosStorage

/// Buckets inside a shard: a search naming some buckets answers exactly as a shard holding
/// only those buckets would; a bucket read pages through the live entries once each; entries
/// copied by their codes are byte-identical on the receiving shard; a dropped bucket is gone.
@Suite struct BucketStorageTests {
    static let buckets = 64

    /// A shard with 2,400 keys over a sealed segment and the growing one, with replacements and deletes.
    static func populated(_ dir: String, factory: String) throws -> (Shard, live: [String: Int]) {
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained(factory), options: Fixture.manualOptions)
        var live: [String: Int] = [:]  // key -> row of the synthetic set it holds
        for start in stride(from: 0, to: 2400, by: 400) {
            try shard.upsert(keys: Fixture.keys(start..<start + 400), vectors: Fixture.vectors(start..<start + 400))
            for i in start..<start + 400 { live["img-\(i)"] = i }
            if start == 1200 { try shard.seal() }
        }
        let replaced = Fixture.keys(100..<160)
        try shard.upsert(keys: replaced, vectors: Fixture.vectors(5000..<5060))
        for (j, key) in replaced.enumerated() { live[key] = 5000 + j }
        let deleted = Fixture.keys(1300..<1400) + Fixture.keys(2000..<2050)
        try shard.delete(keys: deleted)
        for key in deleted { live[key] = nil }
        return (shard, live)
    }

    @Test(arguments: ["IVF16,PQ8x4fs,RefineFlat", "IVF16,PQ8,RefineSQ8"])
    func aSearchNamingBucketsAnswersAsAShardHoldingOnlyThem(factory: String) throws {
        let dir = Fixture.directory("filtered"), only = Fixture.directory("only")
        defer { Fixture.cleanup(dir); Fixture.cleanup(only) }
        let (shard, live) = try Self.populated(dir, factory: factory)
        let served = BucketSet(count: Self.buckets, buckets: stride(from: 0, to: Self.buckets, by: 2))
        // The reference: a shard given the same entries of the served buckets only, by their codes.
        let reference = try Shard.create(at: only, trainedIndex: try Fixture.trained(factory), options: Fixture.manualOptions)
        let entries = try shard.bucketEntries(in: served, after: nil, limit: 100_000)
        try reference.upsert(encoded: entries)
        #expect(Set(entries.map(\.key)) == Set(live.keys.filter { served.contains(KeyHash.bucket(of: $0, buckets: Self.buckets)) }))
        let queries = Fixture.vectors(9000..<9040)
        let parameters = SearchParameters(nprobe: 4, refineFactor: 8, threads: 1)
        let filtered = try shard.search(queries, k: 10, parameters: parameters, buckets: served)
        let expected = try reference.search(queries, k: 10, parameters: parameters)
        for q in 0..<queries.rows {
            #expect(filtered[q].map(\.key) == expected[q].map(\.key), "query \(q)")
            #expect(filtered[q].allSatisfy { served.contains(KeyHash.bucket(of: $0.key, buckets: Self.buckets)) })
        }
        // Every bucket named: the same answer as no filter at all.
        #expect(try shard.search(queries, k: 10, parameters: parameters, buckets: .all(count: Self.buckets)).map { $0.map(\.key) }
            == shard.search(queries, k: 10, parameters: parameters).map { $0.map(\.key) })
        // No bucket named: nothing.
        #expect(try shard.search(queries, k: 10, parameters: parameters, buckets: BucketSet(count: Self.buckets)).allSatisfy(\.isEmpty))
    }

    @Test func aBucketReadPagesThroughLiveEntriesOnceEachAndCopiesAreIdentical() throws {
        let dir = Fixture.directory("read"), target = Fixture.directory("target")
        defer { Fixture.cleanup(dir); Fixture.cleanup(target) }
        let (shard, live) = try Self.populated(dir, factory: "IVF16,PQ8x4fs,RefineFlat")
        let moved = BucketSet(count: Self.buckets, buckets: [3, 17, 40])
        var pages: [[Shard.BucketEntry]] = []
        var cursor: (hash: UInt64, key: String)?
        for _ in 0..<1000 {
            let page = try shard.bucketEntries(in: moved, after: cursor, limit: 7)
            guard let last = page.last else { break }
            pages.append(page)
            cursor = (last.hash, last.key)
        }
        let read = pages.flatMap { $0 }
        let expected = live.keys.filter { moved.contains(KeyHash.bucket(of: $0, buckets: Self.buckets)) }
        #expect(read.count == expected.count && Set(read.map(\.key)) == Set(expected))
        #expect(zip(read, read.dropFirst()).allSatisfy { ($0.hash, $0.key) < ($1.hash, $1.key) })
        let receiver = try Shard.create(at: target, trainedIndex: try Fixture.trained("IVF16,PQ8x4fs,RefineFlat"), options: Fixture.manualOptions)
        for page in pages { try receiver.upsert(encoded: page) }
        try receiver.seal()
        for entry in read {
            #expect(try receiver.entry(forKey: entry.key) == shard.entry(forKey: entry.key))
            #expect(try receiver.vector(forKey: entry.key) == shard.vector(forKey: entry.key))
        }
        // Dropping the buckets leaves every other key as it was.
        let before = try shard.statistics.liveEntries
        #expect(try shard.deleteEntries(in: moved) == expected.count)
        #expect(shard.statistics.liveEntries == before - expected.count)
        for key in expected { #expect(try shard.entry(forKey: key) == nil) }
        #expect(try shard.bucketEntries(in: moved, after: nil, limit: 10).isEmpty)
        let counts = try shard.entriesPerBucket(buckets: Self.buckets)
        #expect(counts.reduce(0, +) == live.count - expected.count && moved.members.allSatisfy { counts[$0] == 0 })
    }

    @Test func encodedEntriesThatDoNotFitTheTrainedStateAreRefused() throws {
        let dir = Fixture.directory("refuse")
        defer { Fixture.cleanup(dir) }
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF16,PQ8x4fs,RefineFlat"), options: Fixture.manualOptions)
        let good = Shard.StoredEntry(list: 1, code: [UInt8](repeating: 3, count: 8), refine: [UInt8](repeating: 0, count: 64), metadata: [])
        func entry(_ change: (inout Shard.StoredEntry) -> Void) -> [Shard.BucketEntry] {
            var stored = good
            change(&stored)
            return [Shard.BucketEntry(key: "k", hash: KeyHash.of("k"), stored: stored)]
        }
        #expect(throws: StorageError.self) { try shard.upsert(encoded: entry { $0.list = 16 }) }
        #expect(throws: StorageError.self) { try shard.upsert(encoded: entry { $0.list = -1 }) }
        #expect(throws: StorageError.self) { try shard.upsert(encoded: entry { $0.code = [1, 2] }) }
        #expect(throws: StorageError.self) { try shard.upsert(encoded: entry { $0.code[0] = 16 }) }
        #expect(throws: StorageError.self) { try shard.upsert(encoded: entry { $0.refine = [] }) }
        #expect(shard.statistics.liveEntries == 0)
        try shard.upsert(encoded: entry { _ in })
        #expect(shard.statistics.liveEntries == 1)
    }
}

/// A move's target stores the streamed entries as one segment (`importEntries`): they answer
/// as the same entries upserted by their codes would, survive a reopen, and records logged
/// before the import (the drop that began the copy deleted these very keys) never remove them
/// on replay.
@Suite struct BucketImportTests {
    @Test func importedEntriesAnswerAsUpsertedOnesAndSurviveReopen() throws {
        let source = Fixture.directory("import-source"), dir = Fixture.directory("import"), reference = Fixture.directory("import-ref")
        defer { Fixture.cleanup(source); Fixture.cleanup(dir); Fixture.cleanup(reference) }
        let factory = "IVF16,PQ8x4fs,RefineSQ8"
        let (populated, _) = try BucketStorageTests.populated(source, factory: factory)
        let moved = BucketSet(count: BucketStorageTests.buckets, buckets: Array(0..<32))
        let entries = try populated.bucketEntries(in: moved, after: nil, limit: 100_000)
        let trained = try Fixture.trained(factory)
        let upserted = try Shard.create(at: reference, trainedIndex: trained, options: Fixture.manualOptions)
        try upserted.upsert(encoded: entries)

        var shard = try Shard.create(at: dir, trainedIndex: trained, options: Fixture.manualOptions)
        // What a previous attempt left, then the drop that begins the copy: logged deletes of
        // the same keys, still in the log when the import comes.
        try shard.upsert(encoded: Array(entries.prefix(300)))
        #expect(try shard.deleteEntries(in: moved) == 300)
        // A client write of another bucket, and one of a moved key (which the caller leaves out).
        try shard.upsert(keys: ["other"], vectors: Fixture.vectors(7000..<7001))
        #expect(try shard.importEntries(Array(entries.dropFirst(1))) == entries.count - 1)
        try shard.upsert(encoded: [entries[0]])

        let queries = Fixture.vectors(9000..<9030)
        let parameters = SearchParameters(nprobe: 16, refineFactor: 8, threads: 1)
        func answers(_ s: Shard) throws -> [[String]] { try s.search(queries, k: 10, parameters: parameters, buckets: moved).map { $0.map(\.key) } }
        let expected = try answers(upserted)
        #expect(try answers(shard) == expected)
        #expect(shard.statistics.liveEntries == entries.count + 1)
        for _ in 0..<2 {
            shard.close()
            shard = try Shard.open(at: dir, options: Fixture.manualOptions)
            #expect(shard.statistics.liveEntries == entries.count + 1, "after reopening")
            #expect(try answers(shard) == expected)
            for e in entries.prefix(50) { #expect(try shard.entry(forKey: e.key) == e.stored) }
        }
        // Imported entries are ordinary ones: replaced and deleted by later writes.
        try shard.upsert(keys: [entries[5].key], vectors: Fixture.vectors(7001..<7002))
        #expect(try shard.delete(keys: [entries[6].key]) == 1)
        #expect(shard.statistics.liveEntries == entries.count)
        shard.close()
        _ = try ShardVerifier.verify(dir)
    }

    /// The drop's deletes are the only records since the last seal (the growing segment is
    /// empty when the import comes): they must not replay over the import either.
    @Test func deletesLoggedAfterASealDoNotReplayOverAnImport() throws {
        let dir = Fixture.directory("import-after-seal")
        defer { Fixture.cleanup(dir) }
        var shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF16,PQ8x4fs,RefineSQ8"), options: Fixture.manualOptions)
        try shard.upsert(keys: Fixture.keys(0..<300), vectors: Fixture.vectors(0..<300))
        let moved = BucketSet(count: 8, buckets: [1, 2, 3])
        let entries = try shard.bucketEntries(in: moved, after: nil, limit: 300)
        try shard.seal()
        #expect(try shard.deleteEntries(in: moved) == entries.count)
        #expect(try shard.importEntries(entries) == entries.count)
        shard.close()
        shard = try Shard.open(at: dir, options: Fixture.manualOptions)
        #expect(shard.statistics.liveEntries == 300, "after reopening")
        for e in entries.prefix(20) { #expect(try shard.entry(forKey: e.key) == e.stored) }
        shard.close()
    }

    @Test func anImportAddsNewKeysOnlyAndAFailedOneStoresNothing() throws {
        let dir = Fixture.directory("import-refused")
        defer { Fixture.cleanup(dir) }
        let (options, faults) = Fixture.faultyOptions()
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF16,PQ8x4fs,RefineSQ8"), options: options)
        try shard.upsert(keys: Fixture.keys(0..<200), vectors: Fixture.vectors(0..<200))
        let entries = try shard.bucketEntries(in: .all(count: 8), after: nil, limit: 200)
        #expect { try shard.importEntries([entries[3]]) } throws: { "\($0)".contains("already stored here") }
        var fresh = entries.prefix(20).map { e in Shard.BucketEntry(key: "new-" + e.key, hash: KeyHash.of("new-" + e.key), stored: e.stored) }
        #expect { try shard.importEntries(fresh + [fresh[0]]) } throws: { "\($0)".contains("appears twice") }
        fresh[4].stored.list = 99
        #expect { try shard.importEntries(fresh) } throws: { "\($0)".contains("list 99") }
        fresh[4].stored.list = 0
        faults.failNextSegmentWrites(1)
        #expect(throws: StorageError.self) { try shard.importEntries(fresh) }
        #expect(shard.statistics.liveEntries == 200, "nothing stored by a failed import")
        #expect(try shard.importEntries(fresh) == 20)
        #expect(shard.statistics.liveEntries == 220)
    }
}
