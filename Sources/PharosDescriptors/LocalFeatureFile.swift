#if canImport(Glibc)
import Glibc
#endif
import PharosDurability
import PharosIndex
import PharosKernels
import PharosVectors

/// A file of per-image local-feature blocks, written streaming and replaced atomically:
/// ```
/// "PHXLOCAL" magic, u32 format version (1)
/// per image: u32 key length, key (UTF-8), u64 block length, block (LocalFeatures.serialized),
///            u32 CRC32C of key and block
/// ```
public final class LocalFeatureFile {
    static let magic = Array("PHXLOCAL".utf8)
    /// The format version written and read.
    public static let formatVersion: UInt32 = 1

    private let path: String
    private var fd: Int32
    private let temporary: String
    /// Images written so far.
    public private(set) var count = 0

    /// Starts writing `path` (a temporary sibling until `finish`).
    public init(writingTo path: String) throws {
        self.path = path
        (fd, temporary) = try FileIO.createTemporary(for: path)
        var w = ByteWriter()
        w.write(Self.formatVersion)
        try write(Self.magic + w.bytes)
    }

    deinit { if fd >= 0 { FileIO.discardTemporary(fd: fd, temporary: temporary) } }

    private func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try FileIO.writeAll(fd, path: temporary, $0) }
    }

    /// Appends one image's features.
    public func append(key: String, _ features: LocalFeatures) throws {
        let block = features.serialized()
        var w = ByteWriter()
        w.write(UInt32(key.utf8.count))
        var record = w.bytes + Array(key.utf8)
        var length = ByteWriter()
        length.write(block.count)
        record += length.bytes + block
        let crc = pharos_crc32c(0, Array(key.utf8) + block, key.utf8.count + block.count)
        var tail = ByteWriter()
        tail.write(crc)
        try write(record + tail.bytes)
        count += 1
    }

    /// Makes the file durable and moves it into place.
    public func finish() throws {
        // The commit closes the descriptor whether or not it succeeds.
        defer { fd = -1 }
        try FileIO.commitTemporary(fd: fd, temporary: temporary, to: path)
    }

    /// Reads every (key, features) of a file; errors name the file and the image.
    public static func read(_ path: String) throws -> [(key: String, features: LocalFeatures)] {
        let bytes = try FileIO.readWholeFile(path)
        guard bytes.count >= 12, Array(bytes.prefix(8)) == magic else {
            throw IndexError.corruptFile(path: path, problem: "not a local-features file (magic is not PHXLOCAL)")
        }
        var r = ByteReader(bytes: bytes[8...], path: path, tag: "local features")
        let version = try r.readUInt32()
        guard version == formatVersion else { throw IndexError.corruptFile(path: path, problem: "format version \(version), this build reads \(formatVersion)") }
        var out: [(String, LocalFeatures)] = []
        var position = 12
        while position < bytes.count {
            var header = ByteReader(bytes: bytes[position...], path: path, tag: "image \(out.count)")
            let keyLength = Int(try header.readUInt32())
            guard keyLength <= 4096, position + 4 + keyLength + 8 <= bytes.count else {
                throw IndexError.corruptFile(path: path, problem: "image \(out.count): key length \(keyLength) runs past the end")
            }
            let keyBytes = bytes[(position + 4) ..< (position + 4 + keyLength)]
            var lengthReader = ByteReader(bytes: bytes[(position + 4 + keyLength)...], path: path, tag: "image \(out.count)")
            let blockLength = try lengthReader.readInt("block length", in: 0...(bytes.count - position - 16 - keyLength))
            let blockStart = position + 4 + keyLength + 8
            let block = bytes[blockStart ..< blockStart + blockLength]
            var crcReader = ByteReader(bytes: bytes[(blockStart + blockLength)...], path: path, tag: "image \(out.count)")
            let stored = try crcReader.readUInt32()
            let content = Array(keyBytes) + Array(block)
            guard stored == pharos_crc32c(0, content, content.count) else {
                throw IndexError.corruptFile(path: path, problem: "image \(out.count): CRC32C mismatch")
            }
            let key = String(decoding: keyBytes, as: UTF8.self)
            out.append((key, try LocalFeatures(bytes: block, source: "\(path), image \(key)")))
            position = blockStart + blockLength + 4
        }
        return out
    }
}
