import PharosDurability
import PharosKernels

/// A small self-checking record, the form of every whole-file Pharos record (manifest, deletion
/// bitmaps, whitening): `magic (ASCII), u32 format version, u64 payload length, payload, u32
/// CRC32C of everything before it`, little-endian. Writing it to disk atomically is the
/// caller's business (`FileIO.writeAtomically`); this only frames and checks bytes.
public enum ChecksummedRecord {
    /// What is wrong with a record: the part (`"whole file"` or `"header"`) and the problem.
    public struct Damage: Error, CustomStringConvertible {
        /// Which part of the record is damaged.
        public var part: String
        /// What is wrong with it.
        public var problem: String
        public var description: String { "\(part): \(problem)" }
    }

    /// `payload` framed under `magic` and `version`.
    public static func encode(magic: String, version: UInt32, payload: [UInt8]) -> [UInt8] {
        var w = ByteWriter()
        w.write(version)
        w.write(payload.count)
        var bytes = Array(magic.utf8) + w.bytes + payload
        var crc = ByteWriter()
        crc.write(pharos_crc32c(0, bytes, bytes.count))
        bytes += crc.bytes
        return bytes
    }

    /// The version and payload of a record, after checking its magic, checksum, version (one of
    /// `versions`) and length. Throws `Damage`.
    public static func decode(_ bytes: [UInt8], magic: String, versions: ClosedRange<UInt32>) throws -> (version: UInt32, payload: [UInt8]) {
        let m = Array(magic.utf8)
        guard bytes.count >= m.count + 16 else {
            throw Damage(part: "whole file", problem: "\(bytes.count) bytes, shorter than any valid file")
        }
        guard Array(bytes.prefix(m.count)) == m else { throw Damage(part: "header", problem: "magic is not \(magic)") }
        func u32(_ at: Int) -> UInt32 { bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt32.self)) } }
        let stored = u32(bytes.count - 4)
        let actual = pharos_crc32c(0, bytes, bytes.count - 4)
        guard stored == actual else {
            throw Damage(part: "whole file", problem: "CRC32C mismatch (stored \(stored), computed \(actual))")
        }
        let version = u32(m.count)
        guard versions.contains(version) else {
            throw Damage(part: "header", problem: "format version \(version), this build reads \(versions)")
        }
        let length = bytes.withUnsafeBytes { Int64(littleEndian: $0.loadUnaligned(fromByteOffset: m.count + 4, as: Int64.self)) }
        guard length == Int64(bytes.count - m.count - 16) else {
            throw Damage(part: "header", problem: "payload length \(length), file holds \(bytes.count - m.count - 16)")
        }
        return (version, Array(bytes[(m.count + 12) ..< (bytes.count - 4)]))
    }
}
