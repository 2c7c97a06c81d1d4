#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PharosDescriptors
import PharosDurability
import PharosKernels

/// What `pharos ingest --images` has had acknowledged, so that a rerun after any stop (SIGKILL
/// included) skips those photos without decoding them.
///
/// An append-only text file, one line per acknowledged batch, each line carrying its own
/// checksum, appended and fsynced when the cluster acknowledged the batch (the cluster had
/// made it durable first):
/// ```
/// PHAROS-INGEST-JOURNAL 1 <crc32c hex> <settings, JSON object>
/// <crc32c hex> <keys of one acknowledged batch, JSON array>
/// ```
/// A torn last line (a kill during its write) is cut; a damaged line elsewhere is reported and
/// its photos count as not done (ingesting them again replaces the same keys: no double count).
/// A journal of other settings (another folder, pooling, size, whitening) is refused. One run
/// at a time holds a journal (`flock` on `PATH.lock`): a second is refused, not interleaved.
public final class IngestJournal: @unchecked Sendable {
    // @unchecked: the descriptor and `broken` are used only under `lock`.
    static let magic = "PHAROS-INGEST-JOURNAL 1"

    /// The journal file.
    public let path: String
    /// Keys acknowledged by earlier runs.
    public let done: Set<String>
    /// Lines found damaged (their photos are ingested again).
    public let damagedLines: [Int]
    private let lock = NSLock()
    private var fd: Int32
    /// Set when a record could not be written whole: later records would follow a torn line.
    private var broken = false
    /// The run's hold on the journal or outputs, released by `close`.
    private var writer: FileLock?

    /// Opens the journal at `path` for a run with `settings` (created when missing); `restart`
    /// starts it over.
    public init(path: String, settings: [String: String], restart: Bool) throws {
        self.path = path
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        writer = try FileLock(path + ".lock", busy: "another pharos ingest is using the journal \(path): wait for it, or give this run another --checkpoint")
        if restart { unlink(path) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let settingsJSON = String(decoding: try encoder.encode(settings), as: UTF8.self)
        var done = Set<String>(), damaged: [Int] = []
        if FileManager.default.fileExists(atPath: path) {
            // A torn last line recorded a batch acknowledged but not journaled: its photos are
            // ingested again.
            let complete = try FileIO.completeLines(path)
            let lines = complete.isEmpty ? [] : complete.dropLast().split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            guard let header = lines.first, let saved = Self.header(header) else {
                throw FileError(path: path, offset: 0, problem: "not an ingest journal, or its first line is damaged: remove it or pass --restart (photos already stored are then described again and replaced)")
            }
            if let list = ExtractionFiles.difference(saved: saved, now: settings) {
                throw FileError(path: path, problem: "journal of a run with other settings (\(list)): use the same settings to resume, another --checkpoint, or --restart")
            }
            for (number, line) in lines.enumerated().dropFirst() {
                guard let keys = Self.record(line) else {
                    damaged.append(number + 1)
                    continue
                }
                done.formUnion(keys)
            }
        } else {
            let line = "\(Self.magic) \(Self.hex(Array(settingsJSON.utf8))) \(settingsJSON)\n"
            try FileIO.writeAtomically(Array(line.utf8), to: path)
        }
        self.done = done
        damagedLines = damaged
        fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: path, problem: "cannot open for appending: \(FileIO.errnoText())") }
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    /// Records an acknowledged batch durably.
    public func record(_ keys: [String]) throws {
        let json = String(decoding: try JSONEncoder().encode(keys), as: UTF8.self)
        let line = Array("\(Self.hex(Array(json.utf8))) \(json)\n".utf8)
        try lock.withLock {
            guard fd >= 0, !broken else { throw FileError(path: path, problem: "journal closed after a failed write") }
            do {
                try line.withUnsafeBytes { try FileIO.writeAll(fd, path: path, $0) }
                guard fsync(fd) == 0 else { throw FileError(path: path, problem: "fsync failed: \(FileIO.errnoText())") }
            } catch {
                broken = true
                throw error
            }
        }
    }

    /// Closes the file and lets another run take the journal.
    public func close() {
        lock.withLock {
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
            writer = nil
        }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let crc = pharos_crc32c(0, bytes, bytes.count)
        let text = String(crc, radix: 16)
        return String(repeating: "0", count: 8 - text.count) + text
    }

    /// The settings of a header line, or nil when it is not one (or is damaged).
    static func header(_ line: ArraySlice<UInt8>) -> [String: String]? {
        let prefix = Array((magic + " ").utf8)
        guard line.starts(with: prefix) else { return nil }
        let rest = line.dropFirst(prefix.count)
        guard let payload = checked(rest) else { return nil }
        return try? JSONDecoder().decode([String: String].self, from: Data(payload))
    }

    /// The keys of a record line, or nil when it is damaged.
    static func record(_ line: ArraySlice<UInt8>) -> [String]? {
        guard let payload = checked(line) else { return nil }
        return try? JSONDecoder().decode([String].self, from: Data(payload))
    }

    /// The payload after `<crc32c hex> `, when the checksum matches.
    private static func checked(_ line: ArraySlice<UInt8>) -> [UInt8]? {
        guard line.count > 9, line[line.startIndex + 8] == UInt8(ascii: " ") else { return nil }
        let crc = String(decoding: line.prefix(8), as: UTF8.self)
        let payload = Array(line.dropFirst(9))
        return hex(payload) == crc ? payload : nil
    }
}
