#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PharosDurability
import PharosIndex
import PharosKernels
import PharosVectors

/// Replay: a chain of log files read back at open, checked for continuity (LSNs, sequences,
/// headers), torn tails found and cut.
extension WriteAheadLog {
    /// What replay found in one file.
    struct ReplayedFile {
        var records: [(lsn: UInt64, record: LogRecord)] = []
        /// Bytes after the last whole record (a torn or corrupt tail), if any.
        var tornTail: (offset: Int, bytes: Int, reason: String)?
        /// The LSN its header says its first record has; nil for a file from before headers.
        var headerFirstLSN: UInt64?
    }

    /// What replay found in the log files a manifest does not cover.
    struct ReplayedLog {
        var files: [(sequence: UInt64, path: String, file: ReplayedFile)] = []
        /// The last record's LSN (or the one before the first expected, when there is none).
        var lastLSN: UInt64 = 0
        /// A last file too short to hold its header (a crash while creating it): no records,
        /// safe to remove.
        var unfinishedFile: String?
    }

    /// Reads the log files from `logStart` on and checks that together they hold every record
    /// from `firstLSN` (0: not known, a manifest from before LSNs were recorded) without a
    /// gap: no file missing, none renamed, none cut short at a record boundary, no record
    /// missing inside one. Only the last file may end in a torn tail; it is reported, not cut.
    /// Anything else throws `corrupt` naming the file and the missing LSNs.
    static func readChain(_ logPath: String, from logStart: UInt64, firstLSN: UInt64, layout: CodeLayout, lists: Int) throws -> ReplayedLog {
        let sequences = try sequences(in: logPath).filter { $0 >= logStart }
        var out = ReplayedLog(lastLSN: firstLSN > 0 ? firstLSN - 1 : 0)
        func name(_ sequence: UInt64) -> String { Shard.logDirectory + "/" + (path(logPath, sequence) as NSString).lastPathComponent }
        if let first = sequences.first, first != logStart {
            throw StorageError.corrupt(path: path(logPath, logStart), block: "whole file",
                                       problem: "missing: the manifest says replay starts with \(name(logStart)), but the first log file is \(name(first)); the acknowledged writes it held would be lost")
        }
        var expected: UInt64? = firstLSN > 0 ? firstLSN : nil
        for (i, sequence) in sequences.enumerated() {
            let filePath = path(logPath, sequence)
            if i > 0, sequence != sequences[i - 1] + 1 {
                throw StorageError.corrupt(path: path(logPath, sequences[i - 1] + 1), block: "whole file",
                                           problem: "missing: log files \(name(sequences[i - 1] + 1)) to \(name(sequence - 1)) are gone between \(name(sequences[i - 1])) and \(name(sequence)); acknowledged writes from LSN \(out.lastLSN + 1) on would be lost")
            }
            let isLast = i == sequences.count - 1
            if isLast, try isUnfinished(filePath) {
                out.unfinishedFile = filePath
                break
            }
            let file = try read(filePath, sequence: sequence, layout: layout, lists: lists, after: out.lastLSN)
            if let expected, let first = file.headerFirstLSN, first != expected {
                let before = i > 0 ? "\(name(sequences[i - 1])) ends at LSN \(expected - 1)" : "the manifest covers the log up to LSN \(expected - 1)"
                throw StorageError.corrupt(path: filePath, block: "header", problem: first > expected
                    ? "starts at LSN \(first), but \(before): acknowledged records \(expected)...\(first - 1) are missing (a log file cut short at a record boundary, or removed)"
                    : "starts at LSN \(first), but \(before): the files overlap")
            }
            if let tail = file.tornTail, !isLast {
                throw StorageError.corrupt(path: filePath, block: "record at byte \(tail.offset)",
                                           problem: "\(tail.reason), and newer log files follow: acknowledged writes after it would be lost")
            }
            out.files.append((sequence, filePath, file))
            if let last = file.records.last?.lsn { out.lastLSN = last } else if let first = file.headerFirstLSN { out.lastLSN = first - 1 }
            // A file with a header says where the next one starts; a legacy file does not.
            expected = file.headerFirstLSN != nil ? out.lastLSN + 1 : nil
        }
        return out
    }

    /// Whether `path` is shorter than a header and holds only the start of one (or nothing).
    private static func isUnfinished(_ path: String) throws -> Bool {
        let fd = try FileIO.openForReading(path)
        defer { close(fd) }
        let size = try FileIO.size(of: fd, path: path)
        guard size < fileHeaderBytes else { return false }
        let bytes = try FileIO.readBytes(fd, path: path, count: size, offset: 0)
        return Array(fileMagic.prefix(size)) == Array(bytes.prefix(fileMagic.count))
    }

    /// Reads every whole record of log file `path`, stopping at the first frame that is
    /// incomplete or fails its CRC (a torn tail). With a header, its sequence must match the
    /// name and records must be numbered consecutively from its first LSN; a whole frame
    /// numbered otherwise is damage, not a torn tail.
    static func read(_ path: String, sequence: UInt64, layout: CodeLayout, lists: Int, after previousLSN: UInt64) throws -> ReplayedFile {
        let fd = try FileIO.openForReading(path)
        defer { close(fd) }
        let size = try FileIO.size(of: fd, path: path)
        var out = ReplayedFile()
        var offset = 0
        var lastLSN = previousLSN
        if size >= fileHeaderBytes, try FileIO.readBytes(fd, path: path, count: fileMagic.count, offset: 0) == fileMagic {
            let head = try FileIO.readBytes(fd, path: path, count: fileHeaderBytes, offset: 0)
            var r = ByteReader(bytes: head[fileMagic.count...], path: path, tag: "log file header")
            let version = try r.readUInt32()
            let named = UInt64(bitPattern: try r.readInt64())
            let first = UInt64(bitPattern: try r.readInt64())
            let crc = try r.readUInt32()
            let actual = head.withUnsafeBytes { pharos_crc32c(0, $0.baseAddress!, 28) }
            guard crc == actual else { throw StorageError.corrupt(path: path, block: "header", problem: "CRC32C mismatch (stored \(crc), computed \(actual))") }
            guard first >= 1 else { throw StorageError.corrupt(path: path, block: "header", problem: "first LSN 0 (LSNs start at 1)") }
            guard version == fileFormatVersion else {
                throw StorageError.corrupt(path: path, block: "header", problem: "format version \(version), this build reads \(fileFormatVersion)")
            }
            guard named == sequence else {
                throw StorageError.corrupt(path: path, block: "header", problem: "the file says it is log file \(named), its name says \(sequence): renamed or copied over")
            }
            out.headerFirstLSN = first
            lastLSN = first - 1
            offset = fileHeaderBytes
        }
        let strict = out.headerFirstLSN != nil
        func torn(_ reason: String) { out.tornTail = (offset, size - offset, reason) }
        while offset < size {
            guard size - offset >= frameHeaderBytes else { torn("incomplete frame header"); break }
            let head = try FileIO.readBytes(fd, path: path, count: frameHeaderBytes, offset: offset)
            var r = ByteReader(bytes: head[...], path: path, tag: "frame at \(offset)")
            let stored = Int(try r.readUInt32()), raw = Int(try r.readUInt32())
            let lsn = UInt64(bitPattern: try r.readInt64())
            let crc = try r.readUInt32()
            guard stored <= LZ4Block.maximumInput, raw <= StorageLimits.maximumRecordBytes,
                  stored <= size - offset - frameHeaderBytes else { torn("frame length \(stored) runs past the end"); break }
            let payload = try FileIO.readBytes(fd, path: path, count: stored, offset: offset + frameHeaderBytes)
            let actual = pharos_crc32c(pharos_crc32c(0, head, 16), payload, payload.count)
            guard actual == crc else { torn("CRC32C mismatch"); break }
            if strict && lsn != lastLSN + 1 {
                throw StorageError.corrupt(path: path, block: "record at byte \(offset)", problem: lsn > lastLSN
                    ? "LSN \(lsn) follows LSN \(lastLSN): records \(lastLSN + 1)...\(lsn - 1) are missing"
                    : "LSN \(lsn) follows LSN \(lastLSN): out of order")
            }
            guard lsn > lastLSN else { torn("LSN \(lsn) does not follow \(lastLSN)"); break }
            guard let bytes = payload.withUnsafeBytes({ LZ4Block.decompress($0, rawSize: raw) }) else {
                torn("LZ4 payload does not decompress")
                break
            }
            out.records.append((lsn, try LogRecord.decode(bytes, layout: layout, lists: lists, path: path, tag: "record \(lsn)")))
            lastLSN = lsn
            offset += frameHeaderBytes + stored
        }
        return out
    }

    /// Cuts log file `path` back to `length` bytes (a torn tail) and makes that durable.
    static func truncate(_ path: String, to length: Int) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StorageError.io(path: path, operation: "open for truncation", reason: FileIO.errnoText()) }
        defer { close(fd) }
        guard ftruncate(fd, off_t(length)) == 0, fsync(fd) == 0 else {
            throw StorageError.io(path: path, operation: "truncate to \(length) bytes", reason: FileIO.errnoText())
        }
    }
}
