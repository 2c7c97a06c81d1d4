#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PharosDurability
import PharosKernels

/// Backups of a shard directory, taken while the shard serves, and restores of them into a new
/// directory (`pharos-shard snapshot` and `restore`).
///
/// A snapshot reads `MANIFEST` once, then opens every file it names (the trained state, the
/// sealed segments and their deletion bitmaps) and the log files from its `logStart`, newest
/// first, noting each log's length as it opens it. An open descriptor keeps a file's bytes
/// readable even if compaction deletes it meanwhile (what hard links would give, without
/// writing into the data directory), segment and bitmap files never change once written, and
/// a log older than one already seen is complete, so the files form the state of one moment:
/// the manifest's segments plus every record logged after them up to about when the logs were
/// opened. A file the manifest names that is already gone (a compaction finished in between)
/// restarts the attempt. The archive is written beside its destination and renamed into place.
///
/// A restore extracts only shard files, checks each against the snapshot's index (size and
/// CRC32C), makes them durable, renames the directory into place, and verifies it as
/// `pharos-shard verify` does. The cluster-map epoch is not part of a snapshot: a restored
/// node learns it from the coordinator.
public enum ShardSnapshot {
    /// What a snapshot or restore handled.
    public struct Summary: Sendable, Equatable {
        /// Files in the snapshot (the index not counted).
        public var files: Int
        /// Their bytes.
        public var bytes: Int
        /// Sealed segments.
        public var segments: Int
        /// Log files (the tail not yet sealed).
        public var logFiles: Int
        /// Attempts a snapshot needed (compaction racing with it restarts one).
        public var attempts: Int
    }

    /// Attempts before a snapshot gives up on a shard whose files keep changing under it.
    public static let maximumAttempts = 20

    private struct Vanished: Error { let path: String }

    private struct OpenFile {
        var name: String
        var path: String
        var fd: Int32
        var size: Int
    }

    /// Writes a snapshot of the shard in `directory` to `path` (replaced atomically).
    public static func write(shard directory: String, to path: String) throws -> Summary {
        var lastVanished = ""
        for attempt in 1...maximumAttempts {
            do {
                var summary = try attemptSnapshot(directory, to: path)
                summary.attempts = attempt
                return summary
            } catch let vanished as Vanished {
                lastVanished = vanished.path
            }
        }
        throw StorageError.io(path: directory, operation: "snapshot",
                              reason: "files kept disappearing under \(maximumAttempts) attempts (last: \(lastVanished)); is a compaction looping?")
    }

    private static func open(_ name: String, in directory: String, size: Int? = nil) throws -> OpenFile {
        let path = directory + "/" + name
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw Vanished(path: path) }
            throw StorageError.io(path: path, operation: "open", reason: FileIO.errnoText())
        }
        do {
            return OpenFile(name: name, path: path, fd: fd, size: try size ?? FileIO.size(of: fd, path: path))
        } catch {
            close(fd)
            throw error
        }
    }

    private static func attemptSnapshot(_ directory: String, to path: String) throws -> Summary {
        let manifestPath = directory + "/" + Manifest.fileName
        guard FileManager.default.fileExists(atPath: manifestPath) else {
            throw StorageError.notAShard(path: directory, problem: "\(Manifest.fileName) is missing: nothing to snapshot")
        }
        let manifestBytes = try FileIO.readWholeFile(manifestPath)
        let manifest = try Manifest.decode(manifestBytes, path: manifestPath)
        var files: [OpenFile] = []
        defer { for f in files { close(f.fd) } }
        files.append(try open(Shard.trainedFileName, in: directory))
        for entry in manifest.segments {
            files.append(try open(Shard.segmentDirectory + "/" + Segment.fileName(entry.id), in: directory))
            if entry.deletionGeneration > 0 {
                files.append(try open(Shard.segmentDirectory + "/" + DeletionBitmap.fileName(segment: entry.id, generation: entry.deletionGeneration), in: directory))
            }
        }
        // Newest first: once a newer log exists, an older one is complete, so its length read
        // now is final and no record between two copied logs can be missing.
        let logDirectory = directory + "/" + Shard.logDirectory
        let logs = try WriteAheadLog.sequences(in: logDirectory).filter { $0 >= manifest.logStart }.sorted(by: >)
        var logFiles: [OpenFile] = []
        for sequence in logs {
            logFiles.append(try open(Shard.logDirectory + "/" + String(format: "%016llx", sequence) + WriteAheadLog.fileSuffix, in: directory))
        }
        files += logFiles.reversed()

        let (fd, temporary) = try FileIO.createTemporary(for: path)
        var members: [SnapshotArchive.Member] = []
        do {
            func add(_ name: String, size: Int, body: () throws -> UInt32) throws {
                try SnapshotArchive.header(name: name, size: size).withUnsafeBytes { try FileIO.writeAll(fd, path: temporary, $0) }
                let crc = try body()
                try [UInt8](repeating: 0, count: SnapshotArchive.padding(size)).withUnsafeBytes { try FileIO.writeAll(fd, path: temporary, $0) }
                members.append(.init(name: name, size: size, crc: crc))
            }
            try add(Manifest.fileName, size: manifestBytes.count) {
                try manifestBytes.withUnsafeBytes { try FileIO.writeAll(fd, path: temporary, $0) }
                return manifestBytes.withUnsafeBytes { pharos_crc32c(0, $0.baseAddress, $0.count) }
            }
            for file in files {
                try add(file.name, size: file.size) {
                    try SnapshotArchive.copy(from: file.fd, sourcePath: file.path, at: 0, to: fd, targetPath: temporary, count: file.size)
                }
            }
            let index = SnapshotArchive.index(members)
            try SnapshotArchive.header(name: SnapshotArchive.indexName, size: index.count).withUnsafeBytes { try FileIO.writeAll(fd, path: temporary, $0) }
            try (index + [UInt8](repeating: 0, count: SnapshotArchive.padding(index.count) + 2 * SnapshotArchive.blockSize))
                .withUnsafeBytes { try FileIO.writeAll(fd, path: temporary, $0) }
        } catch {
            FileIO.discardTemporary(fd: fd, temporary: temporary)
            throw error
        }
        try FileIO.commitTemporary(fd: fd, temporary: temporary, to: path)
        return Summary(files: members.count, bytes: members.reduce(0) { $0 + $1.size }, segments: manifest.segments.count,
                       logFiles: logFiles.count, attempts: 1)
    }

    /// Restores the snapshot at `path` into `directory`, which must not exist or be empty;
    /// nothing is left at `directory` unless the whole snapshot was restored and verified.
    public static func restore(from path: String, into directory: String) throws -> Summary {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue, (try? fm.contentsOfDirectory(atPath: directory))?.isEmpty == true else {
                throw StorageError.io(path: directory, operation: "restore", reason: "exists and is not an empty directory: restore into a new one")
            }
            try? fm.removeItem(atPath: directory)
        }
        let staging = directory + ".restoring-\(getpid())"
        try? fm.removeItem(atPath: staging)
        do {
            let summary = try extract(path, into: staging)
            guard rename(staging, directory) == 0 else {
                throw StorageError.io(path: directory, operation: "rename from \(staging)", reason: FileIO.errnoText())
            }
            FileIO.syncDirectory(containing: directory)
            do {
                _ = try ShardVerifier.verify(directory)
            } catch {
                try? fm.removeItem(atPath: directory)
                throw error
            }
            return summary
        } catch {
            try? fm.removeItem(atPath: staging)
            throw error
        }
    }

    private static func extract(_ path: String, into staging: String) throws -> Summary {
        let archive = try FileIO.openForReading(path)
        defer { close(archive) }
        let length = try FileIO.size(of: archive, path: path)
        for sub in ["", "/" + Shard.segmentDirectory, "/" + Shard.logDirectory] {
            try FileManager.default.createDirectory(atPath: staging + sub, withIntermediateDirectories: true)
        }
        var offset = 0
        var found: [SnapshotArchive.Member] = []
        var index: [SnapshotArchive.Member]?
        while true {
            guard offset + SnapshotArchive.blockSize <= length else {
                throw StorageError.corrupt(path: path, block: "end", problem: "the archive ends at byte \(length) without its end marker (cut short?)")
            }
            let header = try FileIO.readBytes(archive, path: path, count: SnapshotArchive.blockSize, offset: offset)
            guard let (name, size) = try SnapshotArchive.parseHeader(header, path: path, offset: offset) else { break }
            let data = offset + SnapshotArchive.blockSize
            guard size <= length - data else {
                throw StorageError.corrupt(path: path, block: "member \(name)", problem: "\(size) bytes announced, \(length - data) left in the file")
            }
            guard index == nil else { throw StorageError.corrupt(path: path, block: "member \(name)", problem: "comes after the index, which must be last") }
            if name == SnapshotArchive.indexName {
                guard size <= 64 << 20 else { throw StorageError.corrupt(path: path, block: name, problem: "\(size) bytes: not an index") }
                index = try SnapshotArchive.parseIndex(try FileIO.readBytes(archive, path: path, count: size, offset: data), path: path)
            } else {
                guard SnapshotArchive.isShardFile(name) else {
                    throw StorageError.corrupt(path: path, block: "member \(name.debugDescription)", problem: "not a file of a shard: refusing to extract it")
                }
                guard !found.contains(where: { $0.name == name }) else { throw StorageError.corrupt(path: path, block: "member \(name)", problem: "appears twice") }
                let target = staging + "/" + name
                let fd = Glibc.open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
                guard fd >= 0 else { throw StorageError.io(path: target, operation: "create", reason: FileIO.errnoText()) }
                do {
                    let crc = try SnapshotArchive.copy(from: archive, sourcePath: path, at: data, to: fd, targetPath: target, count: size)
                    guard fsync(fd) == 0 else { throw StorageError.io(path: target, operation: "fsync", reason: FileIO.errnoText()) }
                    close(fd)
                    found.append(.init(name: name, size: size, crc: crc))
                } catch {
                    close(fd)
                    throw error
                }
            }
            offset = data + size + SnapshotArchive.padding(size)
        }
        guard let index else { throw StorageError.corrupt(path: path, block: SnapshotArchive.indexName, problem: "missing: not a Pharos shard snapshot, or cut short") }
        guard index.sorted(by: { $0.name < $1.name }) == found.sorted(by: { $0.name < $1.name }) else {
            let damaged = index.filter { !found.contains($0) }.map(\.name) + found.filter { f in !index.contains { $0.name == f.name } }.map(\.name)
            throw StorageError.corrupt(path: path, block: "members", problem: "do not match the index (size or CRC32C): \(damaged.joined(separator: ", "))")
        }
        for sub in [Shard.segmentDirectory, Shard.logDirectory] { FileIO.syncDirectory(containing: staging + "/" + sub + "/x") }
        FileIO.syncDirectory(containing: staging + "/x")
        let segments = found.filter { $0.name.hasSuffix(".seg") }.count
        let logs = found.filter { $0.name.hasSuffix(WriteAheadLog.fileSuffix) }.count
        return Summary(files: found.count, bytes: found.reduce(0) { $0 + $1.size }, segments: segments, logFiles: logs, attempts: 1)
    }
}
