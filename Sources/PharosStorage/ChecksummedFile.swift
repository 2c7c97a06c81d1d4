#if canImport(Glibc)
import Glibc
#endif
import PharosIndex
import PharosKernels
import PharosVectors

/// Small whole-file records (the manifest, deletion bitmaps): `magic (8 bytes), u32 format
/// version, u64 payload length, payload, u32 CRC32C of everything before it`, written to a
/// temporary name, fsynced, renamed over the target and the directory fsynced.
enum ChecksummedFile {
    /// Writes `payload` atomically to `path`.
    static func write(_ path: String, magic: String, version: UInt32, payload: [UInt8], faults: StorageFaults) throws {
        var w = ByteWriter()
        w.write(version)
        w.write(payload.count)
        var bytes = Array(magic.utf8) + w.bytes + payload
        var crc = ByteWriter()
        crc.write(pharos_crc32c(0, bytes, bytes.count))
        bytes += crc.bytes
        if let injected = faults.takeSegmentWriteFailure() {
            throw StorageError.io(path: path, operation: "write", reason: injected)
        }
        do {
            try FileIO.writeAtomically(bytes, to: path)
        } catch let error as VectorFileError {
            throw StorageError.io(path: path, operation: "atomic write", reason: error.description)
        }
    }

    /// Reads and checks a file written by `write`; returns its version and payload.
    static func read(_ path: String, magic: String, versions: ClosedRange<UInt32>) throws -> (version: UInt32, payload: [UInt8]) {
        let bytes: [UInt8]
        do {
            let fd = try FileIO.openForReading(path)
            defer { close(fd) }
            bytes = try FileIO.readBytes(fd, path: path, count: try FileIO.size(of: fd, path: path), offset: 0)
        } catch let error as VectorFileError {
            throw StorageError.io(path: path, operation: "read", reason: error.problem)
        }
        let m = Array(magic.utf8)
        guard bytes.count >= m.count + 16 else {
            throw StorageError.corrupt(path: path, block: "whole file", problem: "\(bytes.count) bytes, shorter than any valid file")
        }
        guard Array(bytes.prefix(m.count)) == m else {
            throw StorageError.corrupt(path: path, block: "header", problem: "magic is not \(magic)")
        }
        let stored = bytes.suffix(4).withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
        let actual = pharos_crc32c(0, bytes, bytes.count - 4)
        guard stored == actual else {
            throw StorageError.corrupt(path: path, block: "whole file", problem: "CRC32C mismatch (stored \(stored), computed \(actual))")
        }
        var r = ByteReader(bytes: bytes[m.count ..< bytes.count - 4], path: path, tag: "header")
        let version = try r.readUInt32()
        guard versions.contains(version) else {
            throw StorageError.corrupt(path: path, block: "header", problem: "format version \(version), this build reads \(versions)")
        }
        let length = try r.readInt("payload length", in: 0...(bytes.count - m.count - 16))
        guard length == bytes.count - m.count - 16 else {
            throw StorageError.corrupt(path: path, block: "header", problem: "payload length \(length), file holds \(bytes.count - m.count - 16)")
        }
        return (version, Array(bytes[(m.count + 12) ..< (bytes.count - 4)]))
    }
}
