import Foundation
import PharosIndex
import PharosVectors
import Testing
@testable import PharosStorage

/// Acknowledged writes live in the log until a segment holds them. Damage that removes whole
/// records (a file cut at a record boundary, a file deleted) used to replay silently without
/// them; now open and verify refuse the directory, naming the file and the missing LSNs.
@Suite struct LogContinuityTests {
    /// A shard whose log holds three files of 100 records' worth each (every open starts a
    /// new file), nothing sealed.
    static func threeLogFiles(_ dir: String) throws -> [String] {
        var shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8"), options: Fixture.manualOptions)
        for round in 0..<3 {
            for b in 0..<10 {
                let start = round * 100 + b * 10
                try shard.upsert(keys: Fixture.keys(start..<start + 10), vectors: Fixture.vectors(start..<start + 10))
            }
            shard.close()
            shard = try Shard.open(at: dir, options: Fixture.manualOptions)
        }
        shard.close()
        let logs = try WriteAheadLog.sequences(in: dir + "/wal").map { WriteAheadLog.path(dir + "/wal", $0) }
        #expect(logs.count == 3)
        return logs
    }

    static func refused(_ dir: String, naming parts: [String]) {
        for attempt in ["open", "verify"] {
            do {
                if attempt == "open" { _ = try Shard.open(at: dir, options: Fixture.manualOptions) } else { _ = try ShardVerifier.verify(dir) }
                Issue.record("\(attempt) accepted a log with missing records")
            } catch {
                for part in parts { #expect("\(error)".contains(part), "\(attempt): \(error)") }
            }
        }
    }

    @Test func anOlderLogFileCutAtARecordBoundaryIsRefused() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        let logs = try Self.threeLogFiles(dir)
        // Keep the header and nothing else: a clean cut, no torn bytes to notice.
        #expect(truncate(logs[1], off_t(WriteAheadLog.fileHeaderBytes)) == 0)
        Self.refused(dir, naming: [logs[2], "records 11...20 are missing"])
    }

    @Test func aDeletedMiddleLogFileIsRefused() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        let logs = try Self.threeLogFiles(dir)
        #expect(unlink(logs[1]) == 0)
        Self.refused(dir, naming: [(logs[1] as NSString).lastPathComponent, "are gone"])
    }

    @Test func aDeletedFirstLogFileIsRefused() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        let logs = try Self.threeLogFiles(dir)
        #expect(unlink(logs[0]) == 0)
        Self.refused(dir, naming: [(logs[0] as NSString).lastPathComponent, "missing"])
    }

    /// A failed write gives its LSNs back, so the log stays gap-free and reopens; the records
    /// after it are all there.
    @Test func failedWritesLeaveNoGapInTheLog() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        let (options, faults) = Fixture.faultyOptions()
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8"), options: options)
        try shard.upsert(keys: Fixture.keys(0..<10), vectors: Fixture.vectors(0..<10))
        faults.failNextLogWrites(3)
        for b in 1...3 {
            #expect(throws: StorageError.self) { try shard.upsert(keys: Fixture.keys(b * 10 ..< b * 10 + 10), vectors: Fixture.vectors(0..<10)) }
        }
        try shard.upsert(keys: Fixture.keys(40..<50), vectors: Fixture.vectors(40..<50))
        shard.close()
        let reopened = try Shard.open(at: dir, options: Fixture.manualOptions)
        #expect(reopened.recovery.replayedRecords == 2)
        #expect(reopened.statistics.liveEntries == 20)
        #expect(try reopened.entry(forKey: "img-45") != nil && reopened.entry(forKey: "img-15") == nil)
    }

    /// A seal right after opening, before anything was written, must not skip a log file
    /// number: here it fails after rotating, a write follows, and the directory still opens.
    @Test func aSealBeforeAnyWriteLeavesNoGapInLogFileNumbers() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        var (options, faults) = Fixture.faultyOptions()
        options.log = { _ in }
        var shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8"), options: options)
        try shard.upsert(keys: Fixture.keys(0..<10), vectors: Fixture.vectors(0..<10))
        shard.close()
        shard = try Shard.open(at: dir, options: options)   // replays; the next log file is not created yet
        faults.failNextSegmentWrites(1)
        #expect(throws: StorageError.self) { try shard.seal() }
        try shard.upsert(keys: Fixture.keys(10..<20), vectors: Fixture.vectors(10..<20))
        shard.close()
        let reopened = try Shard.open(at: dir, options: Fixture.manualOptions)
        #expect(reopened.statistics.liveEntries == 20)
        reopened.close()
    }

    /// Sealing moves the manifest's LSN on; what stays in the log still checks out after any
    /// number of seals and reopens.
    @Test func theManifestRecordsWhereTheLogStarts() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        var shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8"), options: Fixture.manualOptions)
        for round in 0..<4 {
            try shard.upsert(keys: Fixture.keys(round * 10 ..< round * 10 + 10), vectors: Fixture.vectors(0..<10))
            if round % 2 == 0 { try shard.seal() }
            shard.close()
            shard = try Shard.open(at: dir, options: Fixture.manualOptions)
        }
        #expect(try Manifest.read(directory: dir).logStartLSN == 4)   // records 1 and 3 are sealed
        #expect(shard.statistics.liveEntries == 40)
        shard.close()
    }
}

/// Background sealing on a full disk backs off instead of rewriting a segment on every write,
/// and says so once.
@Suite struct MaintenanceBackoffTests {
    @Test func failingSealsBackOffAndAreLoggedOnce() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        var (options, faults) = Fixture.faultyOptions()
        let messages = Messages()
        options.automaticMaintenance = true
        options.sealThresholdEntries = 20
        options.maintenanceRetryDelay = .seconds(60)   // nothing retries within this test
        options.log = { messages.append($0) }
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8"), options: options)
        defer { shard.close() }
        faults.failNextSegmentWrites(1000)
        for b in 0..<30 {
            try shard.upsert(keys: Fixture.keys(b * 10 ..< b * 10 + 10), vectors: Fixture.vectors(b * 10 ..< b * 10 + 10))
            shard.maintenanceQueue.sync {}   // let a scheduled attempt finish before the next write
        }
        #expect(shard.maintenanceFailureCount == 1, "retried without backing off")
        #expect(messages.all.filter { $0.contains("background maintenance failed") }.count == 1, "\(messages.all)")
        #expect(shard.statistics.liveEntries == 300)   // every write landed meanwhile
    }
}

final class Messages: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }
}

/// Failed writes give their LSNs back; with many writers at once, a record that reuses a
/// number must still get its own outcome: every acknowledged write is stored, every refused
/// one is not, and no writer waits forever.
@Suite struct ConcurrentLogFailureTests {
    @Test(.timeLimit(.minutes(2))) func acknowledgementsMatchWhatIsStoredUnderFailingWrites() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        let (options, faults) = Fixture.faultyOptions()
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8"), options: options)
        let outcomes = Messages()
        let writers = 6, perWriter = 40
        let done = DispatchGroup()
        for w in 0..<writers {
            done.enter()
            Thread {
                defer { done.leave() }
                for i in 0..<perWriter {
                    let key = "w\(w)-\(i)"
                    if i % 7 == 3 { faults.failNextLogWrites(1) }
                    do {
                        try shard.upsert(keys: [key], vectors: Fixture.vectors(w * perWriter + i ..< w * perWriter + i + 1))
                        outcomes.append("ok \(key)")
                    } catch {
                        outcomes.append("failed \(key)")
                    }
                }
            }.start()
        }
        done.wait()
        shard.close()
        let reopened = try Shard.open(at: dir, options: Fixture.manualOptions)
        let all = outcomes.all
        #expect(all.count == writers * perWriter)
        var acknowledged = 0
        for line in all {
            let parts = line.split(separator: " ")
            let stored = try reopened.entry(forKey: String(parts[1])) != nil
            if parts[0] == "ok" { acknowledged += 1 }
            #expect(stored == (parts[0] == "ok"), "\(line) but stored: \(stored)")
        }
        #expect(acknowledged > 0 && acknowledged < all.count)
        #expect(reopened.statistics.liveEntries == acknowledged)
    }
}
