#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PharosDurability
import PharosIndex
import PharosKernels
import PharosVectors

/// The files of a resumable extraction, appended in place after every group of photos:
/// ```
/// PREFIX.npy | PREFIX.fvecs   one descriptor per described photo (float32)
/// PREFIX.keys                 the photos' keys, one per line, in row order: the commit record
/// PREFIX.local                with local features: one record per row, in row order
/// PREFIX.extract.json         the settings the descriptors were made with
/// PREFIX.errors.tsv           this run's skipped photos: path TAB reason
/// ```
/// A group is committed by appending its rows (and local records) and syncing them, then its
/// keys, then (`.npy`) the header's row count. The keys file decides what was done: on opening,
/// a torn last key line is dropped and rows or records past the keys are cut, so after a kill at
/// any moment (SIGKILL included) a rerun of the same command repairs the files and goes on after
/// the last group. Between groups the files are complete; a kill in the middle of one can leave
/// rows past the `.npy` header's count (NumPy reads the counted ones; Pharos's strict reader
/// refuses the file until the rerun cuts them). One run at a time writes a prefix (`flock` on
/// `PREFIX.lock`).
public final class ExtractionFiles {
    /// The output prefix.
    public let prefix: String
    /// The descriptor file.
    public let vectorPath: String
    /// The key file.
    public var keyPath: String { prefix + ".keys" }
    /// The settings file.
    public var settingsPath: String { prefix + ".extract.json" }
    /// This run's skipped photos.
    public var errorsPath: String { prefix + ".errors.tsv" }
    /// The local-features file (with local features).
    public var localPath: String { prefix + ".local" }
    /// The local-descriptor PCA learned from the first photos.
    public var localPCAPath: String { prefix + ".local-pca.phxw" }
    /// Keys committed, in row order (from earlier runs and this one).
    public private(set) var keys: [String]
    /// Keys committed by earlier runs (the photos a resumed run skips).
    public let resumedCount: Int
    /// Photos skipped by this run (reported in the errors file).
    public var skipped: Int { errors.count }

    private let vectors: VectorFileAppender
    private let local: LocalFeatureFile?
    private var keyFD: Int32
    private let errors: SkippedPhotosFile
    /// The run's hold on the journal or outputs, released by `close`.
    private var writer: FileLock?

    /// A file's identity for a settings record: its size and CRC32C ("none" when nil).
    public static func fingerprint(of path: String?) throws -> String {
        guard let path else { return "none" }
        let bytes = try FileIO.readWholeFile(path, maximumBytes: 1 << 30)
        let crc = String(pharos_crc32c(0, bytes, bytes.count), radix: 16)
        return "\(bytes.count) bytes, crc32c \(crc)"
    }

    /// How `now` differs from `saved` ("key: A before, B now; ..."), or nil when they agree:
    /// what a resumed run names when it refuses files made with other settings.
    public static func difference(saved: [String: String], now: [String: String]) -> String? {
        let differing = Set(saved.keys).union(now.keys).sorted().filter { saved[$0] != now[$0] }
        guard !differing.isEmpty else { return nil }
        return differing.map { "\($0): \(saved[$0] ?? "none") before, \(now[$0] ?? "none") now" }.joined(separator: "; ")
    }

    /// Every file a run writes under `prefix` (what `--restart` removes).
    public static func paths(prefix: String) -> [String] {
        ["npy", "fvecs", "keys", "local", "local-pca.phxw", "extract.json", "errors.tsv"].map { prefix + "." + $0 }
    }

    /// Opens (or creates) the files under `prefix` for descriptors of `dimension` written as
    /// `format` (npy or fvecs). Existing files must have been written with the same `settings`;
    /// `restart` removes them first.
    public init(prefix: String, format: String, dimension: Int, settings: [String: String], local withLocal: Bool, restart: Bool) throws {
        guard ["npy", "fvecs"].contains(format) else { throw DescriptorError.badInput("--format \(format): expected npy or fvecs") }
        self.prefix = prefix
        vectorPath = prefix + "." + format
        let directory = (prefix as NSString).deletingLastPathComponent
        if !directory.isEmpty { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        writer = try FileLock(prefix + ".lock", busy: "another run is writing \(prefix).*: wait for it, or choose another output")
        if restart { for path in Self.paths(prefix: prefix) { unlink(path) } }
        let settingsPath = prefix + ".extract.json", keyPath = prefix + ".keys"
        let existing = FileManager.default.contents(atPath: settingsPath)
        if let existing {
            guard let saved = try? JSONDecoder().decode([String: String].self, from: existing) else {
                throw DescriptorError.badInput("\(settingsPath): not an extraction settings file; remove it, or pass --restart to start over")
            }
            if let list = Self.difference(saved: saved, now: settings) {
                throw DescriptorError.badInput("\(prefix).* was extracted with other settings (\(list)): use the same settings to resume, another output, or --restart")
            }
        } else {
            for path in [vectorPath, keyPath] where FileManager.default.fileExists(atPath: path) {
                throw DescriptorError.badInput("\(path) exists but has no \(settingsPath) (written by another program or version): remove it, choose another output, or pass --restart")
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            try FileIO.writeAtomically(Array(try encoder.encode(settings)), to: settingsPath)
        }
        keys = try Self.committedKeys(keyPath)
        resumedCount = keys.count
        vectors = try VectorFileAppender(path: vectorPath, dimension: dimension, keeping: keys.count)
        local = withLocal ? try LocalFeatureFile(appendingTo: prefix + ".local", keeping: keys.count) : nil
        keyFD = open(keyPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard keyFD >= 0 else { throw FileError(path: keyPath, problem: "cannot open for appending: \(FileIO.errnoText())") }
        do { errors = try SkippedPhotosFile(path: prefix + ".errors.tsv") } catch {
            // `errors` is unset, so `deinit` does not run: the key file is closed here.
            Glibc.close(keyFD)
            throw error
        }
        FileIO.syncDirectory(containing: keyPath)
    }

    deinit { close() }

    /// The keys a key file commits: its complete lines (a torn last line, from a kill during
    /// its write, is cut off the file).
    static func committedKeys(_ path: String) throws -> [String] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        let lines = try FileIO.completeLines(path)
        guard !lines.isEmpty else { return [] }
        return lines.dropLast().split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }
    }

    /// Commits a group of described photos (in the order given): rows, local records, keys.
    public func append(_ described: [(key: String, description: DescriptorExtractor.Description)], localPCA: Whitening?) throws {
        guard !described.isEmpty else { return }
        if let local {
            for (key, description) in described {
                guard let features = description.local, let localPCA else {
                    throw DescriptorError.badInput("\(key): no local features to write to \(localPath)")
                }
                try local.append(key: key, try features.projected(by: localPCA))
            }
            try local.sync()
        }
        try vectors.append(Matrix(rows: described.count, columns: vectors.dimension, values: described.flatMap(\.description.global)))
        let lines = Array(described.map { $0.key + "\n" }.joined().utf8)
        try lines.withUnsafeBytes { try FileIO.writeAll(keyFD, path: keyPath, $0) }
        guard fsync(keyFD) == 0 else { throw FileError(path: keyPath, problem: "fsync failed: \(FileIO.errnoText())") }
        keys += described.map(\.key)
    }

    /// Records a skipped photo in the errors file.
    public func recordSkipped(path: String, reason: String) {
        errors.record(path: path, reason: reason)
    }

    /// Closes the files (every committed group is already durable).
    public func close() {
        vectors.close()
        try? local?.finish()
        if keyFD >= 0 { Glibc.close(keyFD) }
        errors.close()
        keyFD = -1
        writer = nil
    }
}
