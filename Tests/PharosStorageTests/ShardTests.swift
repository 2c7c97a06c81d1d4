import Foundation
import PharosIndex
import PharosVectors
import Testing
@testable import PharosStorage

@Suite struct ShardTests {
    static let factories = ["IVF8,PQ8x4fs,RefineSQ8", "IVF8,PQ8"]

    @Test(arguments: factories)
    func writesAreSearchableBeforeAndAfterSealAndReopen(factory: String) throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        let base = Fixture.vectors(0..<600)
        let keys = Fixture.keys(0..<600)
        var shard: Shard? = try Shard.create(at: dir, trainedIndex: try Fixture.trained(factory), options: Fixture.manualOptions)
        try shard!.upsert(keys: Array(keys[0..<300]), vectors: base.rows(0..<300), metadata: (0..<300).map { [UInt8($0 % 256)] })
        try shard!.seal()
        try shard!.upsert(keys: Array(keys[300...]), vectors: base.rows(300..<600), metadata: (300..<600).map { [UInt8($0 % 256)] })
        let parameters = SearchParameters(nprobe: 8, threads: 2)
        let before = try shard!.search(base.rows(0..<40), k: 5, parameters: parameters)
        // The nearest stored entry of a stored vector is itself in nearly every case.
        let selfHits = (0..<40).filter { before[$0].first?.key == keys[$0] }.count
        #expect(selfHits >= 36)
        #expect(try shard!.entry(forKey: "img-7")?.metadata == [7])
        #expect(try shard!.entry(forKey: "img-407")?.metadata == [UInt8(407 % 256)])
        shard!.close()
        shard = nil

        let reopened = try Shard.open(at: dir, options: Fixture.manualOptions)
        #expect(reopened.recovery.replayedRecords == 1)
        #expect(try reopened.search(base.rows(0..<40), k: 5, parameters: parameters) == before)
        try reopened.seal()
        #expect(try reopened.search(base.rows(0..<40), k: 5, parameters: parameters) == before)
        #expect(reopened.statistics == .init(segments: 2, sealedEntries: 600, memoryEntries: 0, liveEntries: 600))
    }

    /// Writes that pause leave nothing in memory: once no write came for the idle delay, the
    /// growing segment is sealed (each pause its own segment), and searches answer as before.
    @Test func aPauseInWritesSealsWhatIsInMemory() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        var options = Shard.Options()
        options.idleSealDelay = .milliseconds(200)
        options.log = { _ in }
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF8,PQ8x4fs,RefineSQ8"), options: options)
        defer { shard.close() }
        let base = Fixture.vectors(0..<200)
        func waitForSegments(_ count: Int) -> Bool {
            for _ in 0..<400 where shard.statistics.segments < count { usleep(50_000) }   // at most 20 s (loaded CI machines)
            return shard.statistics.segments == count
        }
        try shard.upsert(keys: Fixture.keys(0..<100), vectors: base.rows(0..<100))
        #expect(shard.statistics.memoryEntries == 100)
        #expect(waitForSegments(1))
        #expect(shard.statistics == .init(segments: 1, sealedEntries: 100, memoryEntries: 0, liveEntries: 100))
        try shard.upsert(keys: Fixture.keys(100..<200), vectors: base.rows(100..<200))
        #expect(waitForSegments(2))
        #expect(shard.statistics.memoryEntries == 0)
        let hits = try shard.search(base.rows(0..<20), k: 1, parameters: SearchParameters(nprobe: 8))
        #expect((0..<20).filter { hits[$0].first?.key == "img-\($0)" }.count >= 18)
    }

    /// A sealed shard returns what the in-memory index returns for the same vectors.
    @Test(arguments: factories)
    func sealedSearchMatchesTheInMemoryIndex(factory: String) throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        let trained = try Fixture.trained(factory)
        let memory = try IndexFactory.load(from: { () -> String in
            let p = dir + "-index"
            try! IndexFactory.save(trained, to: p)
            return p
        }()) as! IVFPQIndex
        defer { Fixture.cleanup(dir + "-index") }
        let base = Fixture.vectors(0..<1000)
        try memory.add(base, ids: nil, threads: 2)
        let shard = try Shard.create(at: dir, trainedIndex: trained, options: Fixture.manualOptions)
        for start in stride(from: 0, to: 1000, by: 250) {
            try shard.upsert(keys: Fixture.keys(start..<start + 250), vectors: base.rows(start..<start + 250))
            try shard.seal()
        }
        try shard.compact(force: true)
        #expect(shard.statistics.segments == 1)
        let queries = Fixture.vectors(0..<50, stream: 3)
        let parameters = SearchParameters(nprobe: 3, threads: 2)
        let expected = try memory.search(queries, k: 10, parameters: parameters)
        let found = try shard.search(queries, k: 10, parameters: parameters)
        for q in 0..<50 {
            #expect(found[q].map(\.score) == Array(expected.scores(ofQuery: q)))
            let expectedKeys = Set(expected.ids(ofQuery: q).map { "img-\($0)" })
            #expect(Set(found[q].map(\.key)).symmetricDifference(expectedKeys).count <= 2)  // ties only
        }
    }

    @Test func upsertReplacesAndDeleteRemovesEverywhere() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8x4fs"), options: Fixture.manualOptions)
        let a = Fixture.vectors(0..<100), b = Fixture.vectors(100..<200)
        try shard.upsert(keys: Fixture.keys(0..<100), vectors: a)
        try shard.seal()
        let old = try shard.entry(forKey: "img-5")
        try shard.upsert(keys: Fixture.keys(0..<50), vectors: b.rows(0..<50))   // replace half
        #expect(try shard.entry(forKey: "img-5") != old)
        #expect(shard.statistics.liveEntries == 100)
        #expect(try shard.delete(keys: ["img-5", "img-60", "absent"]) == 2)
        #expect(try shard.entry(forKey: "img-5") == nil)
        #expect(try shard.entry(forKey: "img-60") == nil)
        #expect(shard.statistics.liveEntries == 98)
        let everything = try shard.search(Fixture.vectors(0..<3, stream: 5), k: 200, parameters: SearchParameters(nprobe: 4))
        for hits in everything {
            #expect(hits.count == 98)
            #expect(Set(hits.map(\.key)).count == 98)
            #expect(!hits.contains { $0.key == "img-5" || $0.key == "img-60" })
        }
    }

    @Test func badInputIsRefusedWithNamedErrorsAndNothingStored() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8"), options: Fixture.manualOptions)
        let v = Fixture.vectors(0..<2)
        #expect(throws: StorageError.invalidInput(field: "key 1", problem: "1025 bytes of UTF-8, at most 1024")) {
            try shard.upsert(keys: ["a", String(repeating: "x", count: 1025)], vectors: v)
        }
        #expect(throws: StorageError.invalidInput(field: "key 0", problem: "empty key")) { try shard.upsert(keys: ["", "b"], vectors: v) }
        #expect(throws: StorageError.invalidInput(field: "key 1", problem: "contains a NUL byte (keys travel as C strings on the wire)")) {
            try shard.upsert(keys: ["a", "b\u{0}c"], vectors: v)
        }
        #expect(throws: IndexError.dimensionMismatch(expected: 16, found: 3)) {
            try shard.upsert(keys: ["a", "b"], vectors: Matrix(rows: 2, columns: 3))
        }
        var nan = v
        nan.values[20] = .nan
        #expect(throws: IndexError.nonFiniteValue(row: 1, column: 4)) { try shard.upsert(keys: ["a", "b"], vectors: nan) }
        #expect(throws: StorageError.invalidInput(field: "vectors", problem: "2 vectors for 1 keys")) { try shard.upsert(keys: ["a"], vectors: v) }
        #expect(throws: StorageError.invalidInput(field: "metadata", problem: "value 0 holds 65537 bytes, at most 65536")) {
            try shard.upsert(keys: ["a", "b"], vectors: v, metadata: [[UInt8](repeating: 0, count: 65537), []])
        }
        #expect(throws: StorageError.invalidInput(field: "batch", problem: "100001 rows, at most 100000")) {
            try shard.delete(keys: Array(repeating: "k", count: 100_001))
        }
        #expect(shard.statistics.liveEntries == 0)
        #expect(throws: StorageError.invalidInput(field: "directory", problem: "\(dir) is not empty; refusing to create a shard over it")) {
            try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8"))
        }
    }

    /// A full disk fails the write, keeps everything stored, and the shard goes on serving.
    @Test func diskFullFailsTheWriteAndHarmsNothing() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        let (options, faults) = Fixture.faultyOptions()
        var shard: Shard? = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8"), options: options)
        try shard!.upsert(keys: Fixture.keys(0..<50), vectors: Fixture.vectors(0..<50))
        faults.failNextLogWrites(1)
        #expect(throws: StorageError.self) { try shard!.upsert(keys: Fixture.keys(50..<100), vectors: Fixture.vectors(50..<100)) }
        #expect(shard!.statistics.liveEntries == 50)
        #expect(try shard!.search(Fixture.vectors(0..<1), k: 3).first?.count == 3)
        // A failed seal keeps the entries in memory and in the log; the retry succeeds.
        faults.failNextSegmentWrites(1)
        #expect(throws: StorageError.self) { try shard!.seal() }
        #expect(shard!.statistics.liveEntries == 50)
        try shard!.upsert(keys: Fixture.keys(100..<120), vectors: Fixture.vectors(100..<120))
        try shard!.seal()
        #expect(shard!.statistics.segments == 1)
        shard!.close()
        shard = nil
        let reopened = try Shard.open(at: dir, options: Fixture.manualOptions)
        #expect(reopened.statistics.liveEntries == 70)
        #expect(try reopened.entry(forKey: "img-110") != nil)
        #expect(try reopened.entry(forKey: "img-60") == nil)
    }
}

/// Writes that land while a seal or compaction is writing its file are not lost in the swap.
@Suite struct ShardConcurrencyTests {
    final class Box<T>: @unchecked Sendable { var value: T; init(_ v: T) { value = v } }

    @Test func deletesAndUpsertsDuringSealAndCompactionAreKept() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        var options = Fixture.manualOptions
        let shardBox = Box<Shard?>(nil)
        let fired = Box<[Shard.MaintenanceEvent]>([])
        options.events = { event in
            guard let shard = shardBox.value else { return }
            switch event {
            case .sealSegmentWritten:
                fired.value.append(event)
                // img-1 is in the segment being sealed; img-2 is replaced.
                _ = try? shard.delete(keys: ["img-1"])
                try? shard.upsert(keys: ["img-2"], vectors: Fixture.vectors(900..<901))
            case .compactionSegmentWritten:
                fired.value.append(event)
                _ = try? shard.delete(keys: ["img-3", "img-150"])
            default: break
            }
        }
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8x4fs"), options: options)
        shardBox.value = shard
        try shard.upsert(keys: Fixture.keys(0..<100), vectors: Fixture.vectors(0..<100))
        try shard.seal()
        try shard.upsert(keys: Fixture.keys(100..<200), vectors: Fixture.vectors(100..<200))
        try shard.seal()
        shardBox.value = nil   // no writes during the next seal
        try shard.seal()
        shardBox.value = shard
        try shard.compact(force: true)
        shardBox.value = nil
        #expect(fired.value == [.sealSegmentWritten, .sealSegmentWritten, .compactionSegmentWritten])
        let expectedLive = 200 - 3   // img-1 (deleted twice), img-3, img-150; img-2 replaced
        func check(_ s: Shard) throws {
            #expect(s.statistics.liveEntries == expectedLive)
            for gone in ["img-1", "img-3", "img-150"] { #expect(try s.entry(forKey: gone) == nil) }
            let replaced = try s.index.encodeEntries(Fixture.vectors(900..<901), threads: 1)
            #expect(try s.entry(forKey: "img-2")?.code == replaced.codes)
            let hits = try s.search(Fixture.vectors(0..<1, stream: 4), k: 300, parameters: SearchParameters(nprobe: 4))[0]
            #expect(hits.count == expectedLive)
        }
        try check(shard)
        shard.close()
        try check(try Shard.open(at: dir, options: Fixture.manualOptions))
    }
}

@Suite struct ShardLockTests {
    @Test func aShardDirectoryOpensOnceAtATime() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8"), options: Fixture.manualOptions)
        #expect { try Shard.open(at: dir, options: Fixture.manualOptions) } throws: { "\($0)".contains("already open") }
        shard.close()
        let again = try Shard.open(at: dir, options: Fixture.manualOptions)
        again.close()
        #expect(throws: StorageError.closed) { try again.upsert(keys: ["a"], vectors: Fixture.vectors(0..<1)) }
    }

    /// A process spawned while the shard is open holds a copy of the lock's descriptor until
    /// its exec (here: for good, through a dup without close-on-exec). Closing the shard must
    /// still release the lock, or the next open in this process fails "already open".
    @Test func closingReleasesTheLockThatASpawnedChildStillHolds() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8"), options: Fixture.manualOptions)
        let lockPath = URL(fileURLWithPath: dir + "/LOCK").resolvingSymlinksInPath().path
        let lockFD = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").compactMap(Int32.init).first { fd in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")) == lockPath
        }
        let fd = try #require(lockFD, "the open shard's LOCK descriptor")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fd, 200)
        let arguments: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("5"), nil]
        defer { for a in arguments { free(a) } }
        var child: pid_t = 0
        try #require(posix_spawn(&child, "/bin/sleep", &actions, nil, arguments, environ) == 0)
        defer {
            kill(child, SIGKILL)
            var status: Int32 = 0
            waitpid(child, &status, 0)
        }
        shard.close()
        let again = try Shard.open(at: dir, options: Fixture.manualOptions)
        again.close()
    }
}

@Suite struct GroupCommitTests {
    /// Concurrent writers share fsyncs, and every acknowledged write is applied exactly once.
    @Test func concurrentWritersShareFsyncs() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        var options = Fixture.manualOptions
        options.faults.delayLogWrites(milliseconds: 5)   // a slow disk: writers queue behind each fsync
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8"), options: options)
        let writers = 8, perWriter = 40
        let vectors = Fixture.vectors(0..<writers * perWriter)
        let failures = NSLock()
        nonisolated(unsafe) var failed = 0
        // Real threads (a dispatch pool would run only as many writers as cores).
        let threads = (0..<writers).map { w in
            Thread {
                for i in 0..<perWriter {
                    let row = w * perWriter + i
                    do { try shard.upsert(keys: ["w\(w)-\(i)"], vectors: vectors.rows(row..<row + 1)) } catch { failures.withLock { failed += 1 } }
                }
            }
        }
        threads.forEach { $0.start() }
        while threads.contains(where: { !$0.isFinished }) { usleep(1000) }
        #expect(failed == 0)
        let counts = shard.logCounts
        #expect(counts.records == writers * perWriter)
        #expect(counts.syncs < counts.records / 2)
        #expect(shard.statistics.liveEntries == writers * perWriter)
        shard.close()
        let reopened = try Shard.open(at: dir, options: Fixture.manualOptions)
        #expect(reopened.recovery.replayedRecords == writers * perWriter)
        #expect(reopened.statistics.liveEntries == writers * perWriter)
    }
}

@Suite struct SegmentLifetimeTests {
    /// A segment merged away stays mapped and on disk while a reader (a search's snapshot)
    /// still holds it, and its file goes when the last holder lets go.
    @Test func mergedSegmentFilesOutliveTheirLastReader() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8x4fs"), options: Fixture.manualOptions)
        for start in [0, 50] {
            try shard.upsert(keys: Fixture.keys(start..<start + 50), vectors: Fixture.vectors(start..<start + 50))
            try shard.seal()
        }
        var held: [Segment]? = shard.lock.withReadLock { shard.sealed }
        let paths = held!.map(\.path)
        try shard.compact(force: true)
        #expect(shard.statistics.segments == 1)
        for path in paths { #expect(FileManager.default.fileExists(atPath: path)) }
        #expect(try held![0].key(at: 0).hasPrefix("img-"))   // still readable
        held = nil
        for path in paths { #expect(!FileManager.default.fileExists(atPath: path)) }
    }
}

@Suite struct PipelinedUpsertTests {
    struct Stop: Error {}

    /// Batches encode concurrently but commit in order: a key in every batch ends with the
    /// last batch's value; a failing batch stops the rest and nothing after it is committed.
    @Test func batchesCommitInOrderAndStopAtTheFirstError() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8x4fs"), options: Fixture.manualOptions)
        try shard.upsertInOrder(count: 9, inFlight: 3) { b in
            (["dup"] + Fixture.keys(b * 10 ..< b * 10 + 9), Fixture.vectors(b * 10 ..< b * 10 + 10), nil)
        }
        let last = try shard.index.encodeEntries(Fixture.vectors(80..<81), threads: 1)
        #expect(try shard.entry(forKey: "dup")?.code == last.codes)
        #expect(shard.statistics.liveEntries == 1 + 9 * 9)

        #expect(throws: Stop.self) {
            try shard.upsertInOrder(count: 6, inFlight: 2) { b in
                if b == 3 { throw Stop() }
                return (Fixture.keys(1000 + b * 10 ..< 1000 + b * 10 + 10), Fixture.vectors(b * 10 ..< b * 10 + 10), nil)
            }
        }
        for b in 0..<6 {
            #expect(try (shard.entry(forKey: "img-\(1000 + b * 10)") != nil) == (b < 3), "batch \(b)")
        }
    }
}

extension PipelinedUpsertTests {
    /// A write that fails (full disk) fails the batches queued behind it too, so in-order
    /// ingestion leaves exactly a prefix of its batches, and the shard takes writes again after.
    @Test(arguments: [2, 5, 9])
    func aFailedWriteLeavesAPrefixOfBatches(failingFrom: Int) throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        let (options, faults) = Fixture.faultyOptions()
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8"), options: options)
        // Slow writes let the batches behind the failing one queue up and race its failure.
        faults.delayLogWrites(milliseconds: 2)
        #expect(throws: StorageError.self) {
            try shard.upsertInOrder(count: 12, inFlight: 3, batch: { b in
                if b == failingFrom { faults.failNextLogWrites(1) }
                return (Fixture.keys(b * 10 ..< b * 10 + 10), Fixture.vectors(b * 10 ..< b * 10 + 10), nil)
            })
        }
        let present = (0..<12).map { b in (try? shard.entry(forKey: "img-\(b * 10)")) != nil }
        let prefix = present.prefix { $0 }.count
        #expect(!present.dropFirst(prefix).contains(true), "not a prefix: \(present)")
        #expect(prefix <= failingFrom)
        try shard.upsert(keys: ["after"], vectors: Fixture.vectors(0..<1))
        #expect(try shard.entry(forKey: "after") != nil)
    }
}

extension PipelinedUpsertTests {
    /// The window that made in-order ingestion leave a gap: a batch enqueued after an earlier
    /// one's write failed (but before its writer noticed) must be refused, not written.
    @Test func aBatchEnqueuedAfterAFailedWriteIsRefused() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        let (options, faults) = Fixture.faultyOptions()
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8"), options: options)
        func prepared(_ b: Int) throws -> WriteAheadLog.PreparedRecord {
            let entries = try shard.index.encodeEntries(Fixture.vectors(b * 10 ..< b * 10 + 10), threads: 1)
            return try WriteAheadLog.prepare(.upsert(keys: Fixture.keys(b * 10 ..< b * 10 + 10), entries: entries,
                                                     metadata: Array(repeating: [], count: 10)))
        }
        let start = shard.wal.failedWriteCount
        let first = try shard.wal.enqueue(try prepared(0), unlessWritesFailedSince: start)
        faults.failNextLogWrites(1)
        #expect(throws: StorageError.self) { try shard.wal.wait(for: first) }
        #expect(throws: StorageError.self) { try shard.wal.enqueue(try prepared(1), unlessWritesFailedSince: start) }
        // Writers that did not start before the failure are not affected by it.
        let unrelated = try shard.wal.enqueue(try prepared(2))
        #expect(try shard.wal.wait(for: unrelated) == 0)   // applied; no key replaced
        #expect(try shard.entry(forKey: "img-0") == nil)
        #expect(try shard.entry(forKey: "img-10") == nil)
        #expect(try shard.entry(forKey: "img-20") != nil)
    }
}
