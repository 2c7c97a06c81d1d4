import Foundation
import PharosIndex

/// Full, read-only check of a shard directory: every checksum of every file, without
/// changing anything (a torn log tail is reported, not cut). `pharos-shard verify` runs it.
public enum ShardVerifier {
    /// What a verification found.
    public struct Report: Sendable, Equatable {
        /// Segment files checked, with their entries.
        public var segments: [String] = []
        /// Log records readable past the manifest's start.
        public var logRecords = 0
        /// Problems that opening would repair itself (torn log tail, leftover files).
        public var repairable: [String] = []
    }

    /// Checks `directory`; throws the first damage found (naming file and block).
    public static func verify(_ directory: String) throws -> Report {
        var report = Report()
        let fm = FileManager.default
        guard fm.fileExists(atPath: directory + "/" + Manifest.fileName) else {
            throw StorageError.notAShard(path: directory, problem: "\(Manifest.fileName) is missing")
        }
        let manifest = try Manifest.read(directory: directory)
        let trainedPath = directory + "/" + Shard.trainedFileName
        guard let index = try IndexFactory.load(from: trainedPath) as? any InvertedFileIndex else {
            throw StorageError.notAShard(path: trainedPath, problem: "the trained state is not an inverted-file index")
        }
        let version = try Shard.fileChecksum(trainedPath)
        guard version == manifest.trainedVersion else {
            throw StorageError.corrupt(path: trainedPath, block: "whole file", problem: "checksum \(version) differs from the manifest's \(manifest.trainedVersion)")
        }
        let segmentsPath = directory + "/" + Shard.segmentDirectory
        var named = Set<String>()
        for entry in manifest.segments {
            var deletions: DeletionBitmap?
            if entry.deletionGeneration > 0 {
                let name = DeletionBitmap.fileName(segment: entry.id, generation: entry.deletionGeneration)
                named.insert(name)
                deletions = try DeletionBitmap.read(segmentsPath + "/" + name, segment: entry.id, entries: entry.entries, deleted: entry.deleted)
            }
            named.insert(Segment.fileName(entry.id))
            let segment = try Segment(path: segmentsPath + "/" + Segment.fileName(entry.id), id: entry.id, trainedVersion: version,
                                      layout: index.layout, lists: index.listCount, deletions: deletions)
            guard segment.entries == entry.entries else {
                throw StorageError.corrupt(path: segment.path, block: "header", problem: "holds \(segment.entries) entries, the manifest says \(entry.entries)")
            }
            try segment.verifyAll()
            report.segments.append("\(Segment.fileName(entry.id)): \(segment.entries) entries, \(segment.deletions.deletedCount) deleted")
        }
        for name in (try? fm.contentsOfDirectory(atPath: segmentsPath)) ?? [] where !named.contains(name) {
            report.repairable.append("\(Shard.segmentDirectory)/\(name) is not in the manifest (left by an interrupted seal or compaction; removed on open)")
        }
        let logPath = directory + "/" + Shard.logDirectory
        let log = try WriteAheadLog.readChain(logPath, from: manifest.logStart, firstLSN: manifest.logStartLSN,
                                              layout: index.layout, lists: index.listCount)
        for (_, path, file) in log.files {
            report.logRecords += file.records.count
            if let tail = file.tornTail {
                report.repairable.append("\(path): \(tail.bytes) bytes after byte \(tail.offset) are a torn tail (\(tail.reason)); cut on open")
            }
        }
        if let unfinished = log.unfinishedFile {
            report.repairable.append("\(unfinished) was created but never got its header (no records); removed on open")
        }
        return report
    }
}
