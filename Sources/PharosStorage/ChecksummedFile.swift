#if canImport(Glibc)
import Glibc
#endif
import PharosDurability
import PharosIndex
import PharosVectors

/// Small whole-file records (the manifest, deletion bitmaps) in the `ChecksummedRecord` form,
/// written to a temporary name, fsynced, renamed over the target and the directory fsynced.
enum ChecksummedFile {
    /// Writes `payload` atomically to `path`.
    static func write(_ path: String, magic: String, version: UInt32, payload: [UInt8], faults: StorageFaults) throws {
        if let injected = faults.takeSegmentWriteFailure() {
            throw StorageError.io(path: path, operation: "write", reason: injected)
        }
        do {
            try FileIO.writeAtomically(ChecksummedRecord.encode(magic: magic, version: version, payload: payload), to: path)
        } catch let error as VectorFileError {
            throw StorageError.io(path: path, operation: "atomic write", reason: error.description)
        }
    }

    /// Reads and checks a file written by `write`; returns its version and payload.
    static func read(_ path: String, magic: String, versions: ClosedRange<UInt32>) throws -> (version: UInt32, payload: [UInt8]) {
        let bytes: [UInt8]
        do {
            bytes = try FileIO.readWholeFile(path)
        } catch let error as VectorFileError {
            throw StorageError.io(path: path, operation: "read", reason: error.problem)
        }
        return try decode(bytes, path: path, magic: magic, versions: versions)
    }

    /// Checks the bytes of such a file, read earlier from `path`.
    static func decode(_ bytes: [UInt8], path: String, magic: String, versions: ClosedRange<UInt32>) throws -> (version: UInt32, payload: [UInt8]) {
        do {
            return try ChecksummedRecord.decode(bytes, magic: magic, versions: versions)
        } catch let damage as ChecksummedRecord.Damage {
            throw StorageError.corrupt(path: path, block: damage.part, problem: damage.problem)
        }
    }
}
