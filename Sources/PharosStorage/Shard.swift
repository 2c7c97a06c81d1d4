#if canImport(Glibc)
import PharosDurability
import Glibc
#endif
import Foundation
import PharosIndex
import PharosKernels
import PharosVectors

/// One shard's durable store: a data directory of a trained state, a manifest, a
/// write-ahead log and immutable segment files, searched as one index.
///
/// - `upsert` and `delete` return once their log record is fsynced (group commit) and
///   applied: an acknowledged write survives `kill -9`.
/// - New entries go to an in-memory growing segment, sealed in the background into a segment
///   file; small segments are compacted together, dropping deleted entries.
/// - Searches scan the growing segment and every segment file with the index engine's
///   kernels, one top-k across all, skipping deleted entries, and return keys.
///
/// Directory layout: `TRAINED` (the trained, empty index), `MANIFEST`, `wal/*.log`,
/// `segments/*.seg` and `segments/*.del`; see docs/STORAGE-FORMAT.md.
public final class Shard: @unchecked Sendable {
    // @unchecked: segment lists and the growing segment are guarded by `lock`; manifest
    // bookkeeping by `maintenanceLock` (held for a whole seal or compaction, which are
    // serial); the log has its own lock.

    /// Tunables of a shard; the defaults suit ingestion of millions of vectors.
    public struct Options: Sendable {
        /// Seal the growing segment once it holds this many entries.
        public var sealThresholdEntries = 250_000
        /// Seal and compact in the background when thresholds are passed (otherwise only on
        /// explicit `seal()` / `compact()` calls, which tests use for determinism).
        public var automaticMaintenance = true
        /// Compact when more segment files than this exist.
        public var compactionSegmentTrigger = 8
        /// Rewrite a segment once this fraction of its entries is deleted.
        public var compactionDeletedFraction = 0.25
        /// Threads used to encode vectors on upsert.
        public var encodeThreads = 1
        /// After background maintenance fails (a full disk), it is not tried again for this
        /// long, doubling on each further failure up to `maintenanceRetryLimit`.
        public var maintenanceRetryDelay: Duration = .seconds(1)
        /// The longest wait between retries of failing background maintenance.
        public var maintenanceRetryLimit: Duration = .seconds(300)
        /// Fault injection (tests).
        public var faults = StorageFaults()
        /// Where recovery and background problems are reported.
        public var log: @Sendable (String) -> Void = { message in
            FileHandle.standardError.write(Data(("pharos-storage: " + message + "\n").utf8))
        }

        /// Called at each step of sealing, compaction and manifest replacement (see
        /// `MaintenanceEvent`), on the thread doing it: crash tests kill the process there,
        /// concurrency tests write there.
        public var events: (@Sendable (MaintenanceEvent) -> Void)?

        /// Default options.
        public init() {}
    }

    /// The steps of background work that `Options.events` reports.
    public enum MaintenanceEvent: String, Sendable, CaseIterable {
        /// The growing segment was frozen and a new log file started.
        case sealFrozen = "seal.frozen"
        /// A sealed segment file is durable under its final name, not yet in the manifest.
        case sealSegmentWritten = "seal.segment-written"
        /// A merged segment file is durable, not yet in the manifest.
        case compactionSegmentWritten = "compaction.segment-written"
        /// New deletion bitmaps are durable, the manifest not yet replaced.
        case deletionsWritten = "persist.deletions-written"
        /// The new manifest is durable; obsolete log files are not yet removed.
        case manifestWritten = "persist.manifest-written"
        /// Obsolete files were removed.
        case filesRemoved = "persist.files-removed"
    }

    /// One search result.
    public struct Hit: Sendable, Equatable {
        /// The entry's key.
        public var key: String
        /// Inner product (higher is better) or squared L2 distance (lower is better).
        public var score: Float
    }

    /// A stored entry, as encoded.
    public struct StoredEntry: Sendable, Equatable {
        /// Its inverted list.
        public var list: Int
        /// Its PQ code, one byte per sub-quantizer.
        public var code: [UInt8]
        /// Its refine code (empty without refinement).
        public var refine: [UInt8]
        /// Its metadata bytes.
        public var metadata: [UInt8]

        /// Creates an entry description.
        public init(list: Int, code: [UInt8], refine: [UInt8], metadata: [UInt8]) {
            self.list = list
            self.code = code
            self.refine = refine
            self.metadata = metadata
        }
    }

    /// What opening found and repaired.
    public struct Recovery: Sendable, Equatable {
        /// Log records re-applied.
        public var replayedRecords = 0
        /// Torn or corrupt log tails cut off (file and bytes).
        public var truncatedTails: [String] = []
        /// Leftover files removed (unfinished seals or compactions).
        public var removedFiles: [String] = []
    }

    /// Counts describing the shard.
    public struct Statistics: Sendable, Equatable {
        /// Segment files.
        public var segments: Int
        /// Entries in segment files (deleted ones included).
        public var sealedEntries: Int
        /// Entries in memory (growing and sealing segments, deleted included).
        public var memoryEntries: Int
        /// Entries that searches can return.
        public var liveEntries: Int
    }

    static let trainedFileName = "TRAINED"
    static let logDirectory = "wal"
    static let segmentDirectory = "segments"

    /// The data directory.
    public let directory: String
    /// The trained state every entry is encoded with.
    public let index: IVFPQIndex
    /// What opening found.
    public private(set) var recovery = Recovery()
    let options: Options
    let trainedVersion: UInt64
    let lock = ReadWriteLock()
    var growing: GrowingSegment
    /// A growing segment being written to a segment file (still searched until swapped).
    var sealing: GrowingSegment?
    var sealed: [Segment] = []
    var wal: WriteAheadLog!

    // Maintenance bookkeeping, under `maintenanceLock`.
    let maintenanceLock = NSLock()
    var manifest: Manifest
    /// First log file holding records of `growing` (and of `sealing`, `sealingLogStart`), and
    /// the LSN of its first record.
    var growingLogStart: UInt64
    var growingLogStartLSN: UInt64
    var sealingLogStart: UInt64 = 0
    var sealingLogStartLSN: UInt64 = 0
    var sealingSkip: Set<Int> = []
    /// Segments merged away whose files can go once a manifest without them is durable.
    var retiredSegments: [Segment] = []
    let maintenanceQueue = DispatchQueue(label: "pharos.shard.maintenance")
    private let scheduleLock = NSLock()
    private var maintenanceScheduled = false
    private var isClosed = false
    /// Background maintenance failures in a row, and when it may run again (under `scheduleLock`).
    private var maintenanceFailures = 0
    private var maintenanceRetryAt: ContinuousClock.Instant?
    /// Held while open so that two processes never share a directory.
    private var directoryLock: DirectoryLock?

    var segmentsPath: String { directory + "/" + Shard.segmentDirectory }
    var logPath: String { directory + "/" + Shard.logDirectory }

    // MARK: Create and open

    /// A directory claimed for one process before a shard exists in it: the `LOCK` held from
    /// the first moment, so two servers can never both start on the same (still empty)
    /// directory. A shard created or opened with the claim keeps using its lock.
    public final class DirectoryClaim: @unchecked Sendable {
        // @unchecked: immutable after init.
        /// The claimed directory.
        public let directory: String
        fileprivate let lock: DirectoryLock

        /// Creates `directory` if needed and locks it; throws when another process (or
        /// another claim or shard in this one) holds it.
        public init(_ directory: String) throws {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw StorageError.io(path: directory, operation: "create directory", reason: "\(error)")
            }
            self.directory = directory
            lock = try DirectoryLock(directory + "/" + Shard.lockFileName)
        }

        /// What the directory holds besides the lock file.
        public func contents() throws -> [String] {
            do {
                return try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0 != Shard.lockFileName }.sorted()
            } catch {
                throw StorageError.io(path: directory, operation: "list", reason: "\(error)")
            }
        }
    }

    /// The lock file's name inside a shard directory.
    public static let lockFileName = "LOCK"
    /// Present while a shard directory is being emptied by `destroy`: a crash midway leaves it,
    /// and `destroy` is run again before the directory is used.
    public static let dropMarkerName = "DROPPING"

    /// Removes everything a shard keeps in the claimed directory (the shard must be closed),
    /// leaving it empty but for the lock. Crash-safe: a marker is made durable first and
    /// removed last, so a directory is either still a whole shard or marked for this.
    public static func destroy(_ claim: DirectoryClaim) throws {
        let directory = claim.directory, fm = FileManager.default
        let marker = directory + "/" + dropMarkerName
        try FileIO.writeAtomically(Array("dropping the collection; remove everything here but LOCK\n".utf8), to: marker)
        for name in try claim.contents() where name != dropMarkerName {
            do { try fm.removeItem(atPath: directory + "/" + name) } catch {
                throw StorageError.io(path: directory + "/" + name, operation: "remove", reason: "\(error)")
            }
        }
        FileIO.syncDirectory(containing: marker)
        unlink(marker)
        FileIO.syncDirectory(containing: marker)
    }

    /// Creates a shard in `directory` (new or empty) for the trained, empty `trainedIndex`.
    public static func create(at directory: String, trainedIndex: IVFPQIndex, options: Options = Options(),
                              claim: DirectoryClaim? = nil) throws -> Shard {
        guard trainedIndex.isTrained, trainedIndex.count == 0 else {
            throw StorageError.invalidInput(field: "trained index", problem: trainedIndex.isTrained
                ? "holds \(trainedIndex.count) vectors; a shard starts from a trained, empty index"
                : "is not trained")
        }
        let fm = FileManager.default
        if let existing = try? fm.contentsOfDirectory(atPath: directory), existing.contains(where: { $0 != lockFileName }) {
            throw StorageError.invalidInput(field: "directory", problem: "\(directory) is not empty; refusing to create a shard over it")
        }
        // Held from before the first file is written until the shard below takes it over.
        let claim = try claim ?? DirectoryClaim(directory)
        // Marked like a directory being dropped until the MANIFEST is durable: a create that
        // fails (a full disk) or is killed midway leaves no half-made shard that every later
        // start would refuse; the drop is finished instead (here, or when a node starts).
        let marker = directory + "/" + dropMarkerName
        do {
            try FileIO.writeAtomically(Array("creating a shard; remove everything here but LOCK\n".utf8), to: marker)
            for sub in ["/" + logDirectory, "/" + segmentDirectory] {
                do { try fm.createDirectory(atPath: directory + sub, withIntermediateDirectories: true) } catch {
                    throw StorageError.io(path: directory + sub, operation: "create directory", reason: "\(error)")
                }
            }
            let trainedPath = directory + "/" + trainedFileName
            try IndexFactory.save(trainedIndex, to: trainedPath)
            let manifest = Manifest(trainedVersion: try fileChecksum(trainedPath), nextSegmentID: 1, logStart: 1, logStartLSN: 1, segments: [])
            try manifest.write(directory: directory, faults: options.faults)
            FileIO.syncDirectory(containing: directory + "/" + Manifest.fileName)
            guard unlink(marker) == 0 || errno == ENOENT else {
                throw StorageError.io(path: marker, operation: "remove", reason: FileIO.errnoText())
            }
            FileIO.syncDirectory(containing: marker)
        } catch {
            try? destroy(claim)
            throw error
        }
        return try Shard(directory: directory, options: options, claim: claim)
    }

    /// Opens the shard in `directory`: maps its segments, replays its log (cutting off a
    /// torn tail) and removes leftovers of interrupted seals and compactions.
    public static func open(at directory: String, options: Options = Options(), claim: DirectoryClaim? = nil) throws -> Shard {
        try Shard(directory: directory, options: options, claim: claim)
    }

    private init(directory: String, options: Options, claim: DirectoryClaim?) throws {
        self.directory = directory
        self.options = options
        let fm = FileManager.default
        let manifestPath = directory + "/" + Manifest.fileName
        guard fm.fileExists(atPath: manifestPath) else {
            if fm.fileExists(atPath: directory + "/" + Shard.trainedFileName) {
                throw StorageError.notAShard(path: directory, problem: "\(Manifest.fileName) is missing, so which segment files and log records are current is unknown; restore it from a backup or re-ingest into a new shard (see docs/STORAGE-FORMAT.md, \"Recovery\")")
            }
            throw StorageError.notAShard(path: directory, problem: "no \(Manifest.fileName) (create a shard first)")
        }
        directoryLock = try claim?.lock ?? DirectoryLock(directory + "/" + Shard.lockFileName)
        let manifest = try Manifest.read(directory: directory)
        (index, trainedVersion) = try Shard.loadTrained(directory: directory, expected: manifest.trainedVersion)
        self.manifest = manifest
        growing = GrowingSegment(lists: index.configuration.lists, layout: index.layout)
        growingLogStart = manifest.logStart
        growingLogStartLSN = manifest.logStartLSN
        for entry in manifest.segments {
            sealed.append(try openSegment(entry))
        }
        // Replay the log files the manifest does not cover, in order, after checking that they
        // hold every record from the manifest's LSN on (nothing is changed before that check).
        let log = try WriteAheadLog.readChain(logPath, from: manifest.logStart, firstLSN: manifest.logStartLSN,
                                              layout: index.layout, lists: index.configuration.lists)
        recovery.removedFiles = try removeUnreferencedFiles(manifest: manifest, keepingLogFrom: manifest.logStart, atOpen: true)
        if let unfinished = log.unfinishedFile {
            // Created but its header never became durable: it holds no record.
            unlink(unfinished)
            FileIO.syncDirectory(containing: unfinished)
            recovery.removedFiles.append(unfinished)
        }
        for (_, path, file) in log.files {
            for (_, record) in file.records { _ = applyUnlocked(record) }
            recovery.replayedRecords += file.records.count
            if let tail = file.tornTail {
                try WriteAheadLog.truncate(path, to: tail.offset)
                let note = "\(path): cut \(tail.bytes) bytes after the last whole record at byte \(tail.offset) (\(tail.reason))"
                recovery.truncatedTails.append(note)
                options.log("recovery: " + note)
            }
        }
        let lastLSN = log.lastLSN
        let newSequence = (log.files.last?.sequence ?? manifest.logStart - 1) + 1
        if log.files.isEmpty {
            growingLogStart = newSequence
            growingLogStartLSN = lastLSN + 1
        } else if growingLogStartLSN == 0 {
            growingLogStartLSN = log.files[0].file.headerFirstLSN ?? 0
        }
        wal = try WriteAheadLog(directory: logPath, sequence: newSequence, nextLSN: lastLSN + 1, faults: options.faults) { [unowned self] record in
            self.lock.withWriteLock { self.applyUnlocked(record) }
        }
    }

    private static func loadTrained(directory: String, expected: UInt64) throws -> (IVFPQIndex, UInt64) {
        let path = directory + "/" + trainedFileName
        guard let index = try IndexFactory.load(from: path) as? IVFPQIndex else {
            throw StorageError.notAShard(path: path, problem: "the trained state is not an IVF-PQ index")
        }
        let version = try fileChecksum(path)
        guard version == expected else {
            throw StorageError.corrupt(path: path, block: "whole file", problem: "checksum \(version) differs from the trained-state version \(expected) in the manifest")
        }
        return (index, version)
    }

    static func fileChecksum(_ path: String) throws -> UInt64 {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw StorageError.io(path: path, operation: "read", reason: "cannot read the file")
        }
        return UInt64(data.withUnsafeBytes { checksum($0) })
    }

    func openSegment(_ entry: Manifest.SegmentEntry) throws -> Segment {
        var deletions: DeletionBitmap?
        if entry.deletionGeneration > 0 {
            deletions = try DeletionBitmap.read(segmentsPath + "/" + DeletionBitmap.fileName(segment: entry.id, generation: entry.deletionGeneration),
                                                segment: entry.id, entries: entry.entries, deleted: entry.deleted)
        }
        let segment = try Segment(path: segmentsPath + "/" + Segment.fileName(entry.id), id: entry.id, trainedVersion: trainedVersion,
                                  layout: index.layout, lists: index.configuration.lists, deletions: deletions)
        guard segment.entries == entry.entries else {
            throw StorageError.corrupt(path: segment.path, block: "header", problem: "holds \(segment.entries) entries, the manifest says \(entry.entries)")
        }
        return segment
    }

    /// Stops background work, refuses further writes and releases the directory. Data
    /// already acknowledged is durable.
    public func close() {
        scheduleLock.withLock { isClosed = true }
        maintenanceQueue.sync {}
        maintenanceLock.withLock { directoryLock = nil }
    }

    // MARK: Writes

    /// Inserts or replaces `keys[i]` with `vectors` row i (and `metadata[i]`); returns once
    /// the batch is durable. Nothing is stored when it throws.
    /// Returns how many of the keys replaced an entry already stored.
    @discardableResult
    public func upsert(keys: [String], vectors: Matrix, metadata: [[UInt8]]? = nil) throws -> Int {
        try commit(try prepareUpsert(keys: keys, vectors: vectors, metadata: metadata))
    }

    /// A validated, encoded batch, ready for `commit`.
    public struct PreparedUpsert: Sendable {
        fileprivate let record: WriteAheadLog.PreparedRecord
        /// Rows in the batch.
        public let count: Int
    }

    /// The first half of `upsert`: checks the batch against every limit and encodes it.
    /// Safe to run for several batches at once (on other threads) while others commit.
    public func prepareUpsert(keys: [String], vectors: Matrix, metadata: [[UInt8]]? = nil) throws -> PreparedUpsert {
        try checkOpen()
        try Shard.validate(keys: keys)
        guard vectors.rows == keys.count else {
            throw StorageError.invalidInput(field: "vectors", problem: "\(vectors.rows) vectors for \(keys.count) keys")
        }
        let values = metadata ?? Array(repeating: [], count: keys.count)
        guard values.count == keys.count else {
            throw StorageError.invalidInput(field: "metadata", problem: "\(values.count) values for \(keys.count) keys")
        }
        if let i = values.firstIndex(where: { $0.count > StorageLimits.maximumMetadataBytes }) {
            throw StorageError.invalidInput(field: "metadata", problem: "value \(i) holds \(values[i].count) bytes, at most \(StorageLimits.maximumMetadataBytes)")
        }
        let entries = try index.encodeEntries(vectors, threads: options.encodeThreads)
        return PreparedUpsert(record: try WriteAheadLog.prepare(.upsert(keys: keys, entries: entries, metadata: values)), count: keys.count)
    }

    /// The second half of `upsert`: logs the batch and returns once it is durable and
    /// applied. Batches committed one after another take effect in that order.
    /// Returns how many of its keys replaced an entry already stored.
    @discardableResult
    public func commit(_ prepared: PreparedUpsert) throws -> Int {
        try checkOpen()
        let replaced = try wal.wait(for: try wal.enqueue(prepared.record))
        scheduleMaintenanceIfNeeded()
        return replaced
    }

    /// Upserts batches `0..<count` made by `batch`, keeping `inFlight` of them being read and
    /// encoded at once while committing them strictly in order (so a key repeated across
    /// batches ends with its last value, as with sequential upserts). `committed(i)` is called
    /// after batch i is durable. Stops at the first error and rethrows it; batches before it
    /// are durable, none after it is committed.
    public func upsertInOrder(count: Int, inFlight: Int = 2,
                              batch: @escaping @Sendable (Int) throws -> (keys: [String], vectors: Matrix, metadata: [[UInt8]]?),
                              committed: @escaping @Sendable (Int) -> Void = { _ in }) throws {
        precondition(inFlight >= 1, "at least one batch in flight")
        let turn = NSCondition()
        nonisolated(unsafe) var next = 0
        // The earliest failed batch and its error: batches before it still commit.
        nonisolated(unsafe) var failure: (index: Int, error: any Error)?
        // Plain threads, not a dispatch pool: a worker waiting for its turn must not hold a
        // pool thread that the other worker's parallel encoding needs.
        let done = DispatchGroup()
        // Checked as each batch enqueues: a write failing (this sequence's or another
        // writer's) ends the sequence there, even for a batch enqueued just after it.
        let failedWritesBefore = wal.failedWriteCount
        for worker in 0..<Swift.min(inFlight, Swift.max(1, count)) {
            done.enter()
            Thread { [self] in
                defer { done.leave() }
                var i = worker
                while i < count {
                    do {
                        let made = try batch(i)
                        let prepared = try prepareUpsert(keys: made.keys, vectors: made.vectors, metadata: made.metadata)
                        turn.lock()
                        while next != i && !(failure.map { $0.index < i } ?? false) { turn.wait() }
                        if failure.map({ $0.index < i }) ?? false {
                            turn.unlock()
                            return
                        }
                        // Enqueue in turn (LSN order = batch order), then let the next batch
                        // enqueue while this one waits: both can share one fsync.
                        let ticket: UInt64
                        do { ticket = try wal.enqueue(prepared.record, unlessWritesFailedSince: failedWritesBefore) } catch {
                            turn.unlock()
                            throw error
                        }
                        next += 1
                        turn.broadcast()
                        turn.unlock()
                        _ = try wal.wait(for: ticket)
                        scheduleMaintenanceIfNeeded()
                        committed(i)
                    } catch {
                        turn.withLock {
                            if failure.map({ i < $0.index }) ?? true { failure = (i, error) }
                            turn.broadcast()
                        }
                        return
                    }
                    i += inFlight
                }
            }.start()
        }
        done.wait()
        if let failure { throw failure.error }
    }

    /// Deletes `keys` (absent ones are ignored); returns how many were present. Durable on return.
    @discardableResult
    public func delete(keys: [String]) throws -> Int {
        try checkOpen()
        try Shard.validate(keys: keys)
        let deleted = try wal.append(.delete(keys: keys))
        scheduleMaintenanceIfNeeded()
        return deleted
    }

    private func checkOpen() throws {
        if scheduleLock.withLock({ isClosed }) { throw StorageError.closed }
    }

    static func validate(keys: [String]) throws {
        guard keys.count <= StorageLimits.maximumBatchRows else {
            throw StorageError.invalidInput(field: "batch", problem: "\(keys.count) rows, at most \(StorageLimits.maximumBatchRows)")
        }
        for (i, key) in keys.enumerated() {
            let bytes = key.utf8.count
            guard bytes > 0 else { throw StorageError.invalidInput(field: "key \(i)", problem: "empty key") }
            guard !key.utf8.contains(0) else {
                throw StorageError.invalidInput(field: "key \(i)", problem: "contains a NUL byte (keys travel as C strings on the wire)")
            }
            guard bytes <= StorageLimits.maximumKeyBytes else {
                throw StorageError.invalidInput(field: "key \(i)", problem: "\(bytes) bytes of UTF-8, at most \(StorageLimits.maximumKeyBytes)")
            }
        }
    }

    /// Applies a durable record to memory (caller holds the write lock, or is `init`).
    /// Returns the number of keys deleted (delete) or replaced (upsert).
    private func applyUnlocked(_ record: LogRecord) -> Int {
        switch record {
        case let .upsert(keys, entries, metadata):
            var replaced = 0
            entries.forEachEntry { row, list, code, refine in
                if removeLive(keys[row]) { replaced += 1 }
                growing.add(key: keys[row], list: list, code: code, refine: refine, metadata: metadata[row])
            }
            return replaced
        case let .delete(keys):
            return keys.reduce(0) { $0 + (removeLive($1) ? 1 : 0) }
        }
    }

    /// Marks the live version of `key` deleted, wherever it is.
    @discardableResult
    private func removeLive(_ key: String) -> Bool {
        if let o = growing.find(key) { return growing.delete(o) }
        if let s = sealing, let o = s.find(key) { return s.delete(o) }
        for segment in sealed.reversed() {
            do {
                if let p = try segment.find(key) { return segment.deletions.delete(p) }
            } catch {
                // The record is already durable: report the damage; reads of this segment
                // will fail with it until it is repaired.
                options.log("cannot look up key \(key.debugDescription) while applying a write: \(error)")
            }
        }
        return false
    }

    // MARK: Reads

    /// The `k` best entries for each query row, across all segments, deleted entries skipped.
    public func search(_ queries: Matrix, k: Int, parameters: SearchParameters = SearchParameters()) throws -> [[Hit]] {
        guard queries.rows > 0 else { return [] }
        return try lock.withReadLock {
            let sources: [any InvertedListSource] = [growing] + (sealing.map { [$0] } ?? []) + sealed
            let result = try index.search(queries, k: k, parameters: parameters, sources: sources)
            if let damage = sealed.lazy.compactMap({ $0.scanDamage() }).first { throw damage }
            // Keys are resolved in parallel too: a key read may decompress a block.
            var hits = [[Hit]](repeating: [], count: queries.rows)
            var failures = [StorageError?](repeating: nil, count: queries.rows)
            hits.withSendablePointer { out in
                failures.withSendablePointer { failed in
                    Parallel.forEachChunk(count: queries.rows, chunkSize: 64, threads: parameters.threads) { chunk in
                        for q in chunk {
                            do {
                                out.pointer[q] = try zip(result.ids(ofQuery: q), result.scores(ofQuery: q)).compactMap { label, score in
                                    guard label >= 0 else { return nil }
                                    return Hit(key: try self.key(of: label, sources: sources), score: score)
                                }
                            } catch {
                                failed.pointer[q] = error as? StorageError ?? .corrupt(path: self.directory, block: "keys", problem: "\(error)")
                            }
                        }
                    }
                }
            }
            if let failure = failures.lazy.compactMap({ $0 }).first { throw failure }
            return hits
        }
    }

    private func key(of label: Int64, sources: [any InvertedListSource]) throws -> String {
        let list = IVFPQIndex.Label.list(label), offset = IVFPQIndex.Label.offset(label)
        switch sources[IVFPQIndex.Label.source(label)] {
        case let memory as GrowingSegment:
            return memory.keys[Int(memory.lists.id(list: list, offset: offset))]
        case let segment as Segment:
            return try segment.key(at: segment.header.lists[list].first + offset)
        default:
            preconditionFailure("unknown list source")
        }
    }

    /// The stored codes and metadata of `key`, or nil when absent.
    public func entry(forKey key: String) throws -> StoredEntry? {
        try lock.withReadLock {
            let layout = index.layout
            func read(_ view: InvertedListView, list: Int, offset: Int) -> (code: [UInt8], refine: [UInt8]) {
                var code = [UInt8](repeating: 0, count: layout.subquantizers)
                code.withUnsafeMutableBufferPointer { layout.load(at: offset, from: view.codes!, into: $0.baseAddress!) }
                let refine = layout.refineBytes > 0
                    ? Array(UnsafeBufferPointer(start: view.refine! + offset * layout.refineBytes, count: layout.refineBytes)) : []
                return (code, refine)
            }
            for memory in [growing, sealing].compactMap({ $0 }) {
                if let o = memory.find(key) {
                    let (l, offset) = memory.locations[o]
                    let (code, refine) = read(memory.view(ofList: Int(l)), list: Int(l), offset: Int(offset))
                    return StoredEntry(list: Int(l), code: code, refine: refine, metadata: memory.metadata[o])
                }
            }
            for segment in sealed.reversed() {
                guard let p = try segment.find(key) else { continue }
                let (l, offset) = segment.location(of: p)
                let view = segment.view(ofList: l)
                if let damage = segment.scanDamage() { throw damage }
                let (code, refine) = read(view, list: l, offset: offset)
                return StoredEntry(list: l, code: code, refine: refine, metadata: try segment.metadata(at: p))
            }
            return nil
        }
    }

    /// The stored approximation of `key`'s vector (refine codes when present), or nil.
    public func vector(forKey key: String) throws -> [Float]? {
        guard let entry = try entry(forKey: key) else { return nil }
        return try vector(of: entry)
    }

    /// The stored approximation of `entry`'s vector (for a caller that already holds the
    /// entry: no second lookup, and no window for the key to change in between).
    public func vector(of entry: StoredEntry) throws -> [Float] {
        let layout = index.layout
        return try entry.code.withUnsafeBufferPointer { code in
            try entry.refine.withUnsafeBufferPointer { refine in
                var packed = [UInt8](repeating: 0, count: layout.codeBytes(count: 1))
                packed.withUnsafeMutableBufferPointer { layout.store(code.baseAddress!, at: 0, in: $0.baseAddress!) }
                return try packed.withUnsafeBufferPointer { p in
                    try index.reconstruct(list: entry.list, offset: 0,
                                          view: InvertedListView(count: 1, codes: p.baseAddress, refine: refine.baseAddress))
                }
            }
        }
    }

    /// The version (CRC32C of the `TRAINED` file) of the trained state entries are encoded with.
    public var trainedStateVersion: UInt64 { trainedVersion }

    /// The trained-state version of a `TRAINED` file's bytes.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        pharos_crc32c(0, bytes.baseAddress, bytes.count)
    }

    /// Log records written and fsyncs made since the shard was opened.
    public var logCounts: (records: Int, syncs: Int) { wal.counts }

    /// Counts describing the shard now.
    public var statistics: Statistics {
        lock.withReadLock {
            let memory = [growing, sealing].compactMap { $0 }
            return Statistics(segments: sealed.count, sealedEntries: sealed.reduce(0) { $0 + $1.entries },
                              memoryEntries: memory.reduce(0) { $0 + $1.count },
                              liveEntries: sealed.reduce(0) { $0 + $1.liveEntries } + memory.reduce(0) { $0 + $1.liveCount })
        }
    }

    // MARK: Background work

    private func scheduleMaintenanceIfNeeded() {
        guard options.automaticMaintenance else { return }
        let needed = lock.withReadLock { growing.count >= options.sealThresholdEntries || sealing != nil }
            || compactionPlan(force: false) != nil
        guard needed else { return }
        let schedule = scheduleLock.withLock { () -> Bool in
            guard !maintenanceScheduled, !isClosed else { return false }
            if let retryAt = maintenanceRetryAt, ContinuousClock.now < retryAt { return false }
            maintenanceScheduled = true
            return true
        }
        guard schedule else { return }
        maintenanceQueue.async { [self] in
            scheduleLock.withLock { maintenanceScheduled = false }
            do {
                if lock.withReadLock({ growing.count >= options.sealThresholdEntries || sealing != nil }) { try seal() }
                if compactionPlan(force: false) != nil { try compact() }
                let recovered = scheduleLock.withLock { () -> Int in
                    defer { maintenanceFailures = 0; maintenanceRetryAt = nil }
                    return maintenanceFailures
                }
                if recovered > 0 { options.log("background maintenance succeeded again after \(recovered) failed attempts") }
            } catch {
                // Each attempt rewrites a whole segment: back off instead of retrying on every
                // write, and say so once per run of failures, not once per attempt.
                let (failures, delay) = scheduleLock.withLock { () -> (Int, Duration) in
                    maintenanceFailures += 1
                    var delay = options.maintenanceRetryDelay
                    for _ in 1..<min(maintenanceFailures, 30) where delay < options.maintenanceRetryLimit { delay *= 2 }
                    delay = min(delay, options.maintenanceRetryLimit)
                    maintenanceRetryAt = ContinuousClock.now + delay
                    return (maintenanceFailures, delay)
                }
                if failures == 1 {
                    options.log("background maintenance failed: \(error). Writes go on in memory and the log; retrying after \(delay), backing off up to \(options.maintenanceRetryLimit) (further failures are not logged until it succeeds)")
                }
            }
        }
    }

    /// Background maintenance failures in a row (0 once it succeeds again).
    public var maintenanceFailureCount: Int { scheduleLock.withLock { maintenanceFailures } }
}
