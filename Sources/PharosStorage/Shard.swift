#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PharosDurability
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
///
/// The type is spread over files by job: this one (types, create, open, recovery),
/// `Shard+Writes` (upsert, delete, applying log records), `Shard+OrderedIngestion` (the
/// pipelined in-order bulk upsert), `Shard+Reads` (search, entries, statistics),
/// `Shard+Maintenance` (seal, compact, manifest) and `Shard+Scheduling` (background work).
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
        /// Seal the growing segment once writes have paused this long (with automatic
        /// maintenance): what an ingestion leaves in memory then goes to a segment file, so a
        /// restart replays no log and searches scan segments. Nil never seals for idleness.
        public var idleSealDelay: Duration? = .seconds(30)
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

        /// Called with the duration of each log fsync, seal and compaction, on the thread that
        /// did it (the admin port's latency histograms). Must be quick.
        public var observe: (@Sendable (StorageObservation) -> Void)?

        /// Default options.
        public init() {}
    }

    /// Timed storage work that `Options.observe` reports.
    public enum StorageObservation: Sendable {
        /// One log write and its fsync (a group commit of `bytes`).
        case logSync(nanoseconds: UInt64, bytes: Int)
        /// The growing segment written as a segment file and swapped in.
        case seal(nanoseconds: UInt64)
        /// Segment files merged into one.
        case compaction(nanoseconds: UInt64)
    }

    /// The steps of background work that `Options.events` reports.
    public enum MaintenanceEvent: String, Sendable, CaseIterable {
        /// The growing segment was frozen and a new log file started.
        case sealFrozen = "seal.frozen"
        /// A sealed segment file is durable under its final name, not yet in the manifest.
        case sealSegmentWritten = "seal.segment-written"
        /// A merged segment file is durable, not yet in the manifest.
        case compactionSegmentWritten = "compaction.segment-written"
        /// A segment file of a bucket move's entries is durable, not yet in the manifest.
        case importSegmentWritten = "import.segment-written"
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
    public let index: any InvertedFileIndex
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
    let scheduleLock = NSLock()
    var maintenanceScheduled = false
    var isClosed = false
    /// Background maintenance failures in a row, and when it may run again (under `scheduleLock`).
    var maintenanceFailures = 0
    var maintenanceRetryAt: ContinuousClock.Instant?
    /// The last write, and whether an idleness check is pending (under `scheduleLock`).
    var lastWriteAt = ContinuousClock.now
    var idleSealScheduled = false
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
                return try FileManager.default.contentsOfDirectory(atPath: directory)
                    .filter { $0 != Shard.lockFileName && !$0.hasPrefix(Shard.mapEpochFileName) }.sorted()
            } catch {
                throw StorageError.io(path: directory, operation: "list", reason: "\(error)")
            }
        }
    }

    /// The lock file's name inside a shard directory.
    public static let lockFileName = "LOCK"
    /// The node's newest cluster-map epoch, kept beside the shard by the node (storage leaves
    /// it alone: it is not part of the shard and survives a drop).
    public static let mapEpochFileName = "MAP_EPOCH"
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
    public static func create(at directory: String, trainedIndex: any InvertedFileIndex, options: Options = Options(),
                              claim: DirectoryClaim? = nil) throws -> Shard {
        guard trainedIndex.isTrained, trainedIndex.count == 0 else {
            throw StorageError.invalidInput(field: "trained index", problem: trainedIndex.isTrained
                ? "holds \(trainedIndex.count) vectors; a shard starts from a trained, empty index"
                : "is not trained")
        }
        let fm = FileManager.default
        if let existing = try? fm.contentsOfDirectory(atPath: directory), existing.contains(where: { $0 != lockFileName && !$0.hasPrefix(mapEpochFileName) }) {
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
        growing = GrowingSegment(lists: index.listCount, layout: index.layout)
        growingLogStart = manifest.logStart
        growingLogStartLSN = manifest.logStartLSN
        for entry in manifest.segments {
            sealed.append(try openSegment(entry))
        }
        // Replay the log files the manifest does not cover, in order, after checking that they
        // hold every record from the manifest's LSN on (nothing is changed before that check).
        let log = try WriteAheadLog.readChain(logPath, from: manifest.logStart, firstLSN: manifest.logStartLSN,
                                              layout: index.layout, lists: index.listCount)
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
        wal = try WriteAheadLog(directory: logPath, sequence: newSequence, nextLSN: lastLSN + 1, faults: options.faults,
                                observe: options.observe) { [unowned self] record in
            self.lock.withWriteLock { self.applyUnlocked(record) }
        }
    }

    private static func loadTrained(directory: String, expected: UInt64) throws -> (any InvertedFileIndex, UInt64) {
        let path = directory + "/" + trainedFileName
        guard let index = try IndexFactory.load(from: path) as? any InvertedFileIndex else {
            throw StorageError.notAShard(path: path, problem: "the trained state is not an inverted-file index")
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
                                  layout: index.layout, lists: index.listCount, deletions: deletions)
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
}
