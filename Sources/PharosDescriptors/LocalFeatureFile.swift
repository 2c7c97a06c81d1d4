#if canImport(Glibc)
import Glibc
#endif
import PharosDurability
import PharosIndex
import PharosKernels
import PharosVectors

/// A file of per-image local-feature blocks, written streaming and replaced atomically (or,
/// for a resumable extraction, appended in place, durable after each `sync`):
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
    /// The temporary sibling being written, or nil when appending in place.
    private let temporary: String?
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

    /// Opens `path` to append in place (created when missing), keeping its first `keeping`
    /// images (those a resumed extraction committed) and cutting any record after them.
    public init(appendingTo path: String, keeping: Int) throws {
        self.path = path
        temporary = nil
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw IndexError.corruptFile(path: path, problem: "cannot open for appending: \(FileIO.errnoText())") }
        do {
            let size = try FileIO.size(of: fd, path: path)
            if size == 0 {
                guard keeping == 0 else { throw IndexError.corruptFile(path: path, problem: "empty, but \(keeping) images were recorded as written") }
                var w = ByteWriter()
                w.write(Self.formatVersion)
                try write(Self.magic + w.bytes)
                try sync()
                FileIO.syncDirectory(containing: path)
                return
            }
            let head = try FileIO.readBytes(fd, path: path, count: Swift.min(size, 12), offset: 0)
            guard head.count == 12, Array(head.prefix(8)) == Self.magic, head[8] == UInt8(Self.formatVersion), head[9...].allSatisfy({ $0 == 0 }) else {
                throw IndexError.corruptFile(path: path, problem: "not a local-features file of format version \(Self.formatVersion)")
            }
            // Walk the records' headers (not their blocks) to the end of the `keeping`-th.
            var position = 12
            for image in 0..<keeping {
                guard position + 4 <= size else {
                    throw IndexError.corruptFile(path: path, problem: "holds \(image) images, but \(keeping) were recorded as written")
                }
                let keyLength = Int(Self.littleEndian(try FileIO.readBytes(fd, path: path, count: 4, offset: position)))
                guard keyLength <= 4096, position + 4 + keyLength + 8 <= size else {
                    throw IndexError.corruptFile(path: path, problem: "image \(image): key length \(keyLength) runs past the end")
                }
                let blockLength = Int(truncatingIfNeeded: Self.littleEndian(try FileIO.readBytes(fd, path: path, count: 8, offset: position + 4 + keyLength)))
                guard blockLength >= 0, blockLength <= size - position,
                      position + 4 + keyLength + 8 + blockLength + 4 <= size else {
                    throw IndexError.corruptFile(path: path, problem: "image \(image): a block of \(blockLength) bytes runs past the end")
                }
                position += 4 + keyLength + 8 + blockLength + 4
            }
            if position != size {
                guard ftruncate(fd, off_t(position)) == 0 else {
                    throw IndexError.corruptFile(path: path, problem: "cannot cut the records after image \(keeping): \(FileIO.errnoText())")
                }
            }
            guard lseek(fd, off_t(position), SEEK_SET) == off_t(position) else {
                throw IndexError.corruptFile(path: path, problem: "seek failed: \(FileIO.errnoText())")
            }
            count = keeping
            try sync()
        } catch {
            close(fd)
            fd = -1
            throw error
        }
    }

    deinit {
        guard fd >= 0 else { return }
        if let temporary { FileIO.discardTemporary(fd: fd, temporary: temporary) } else { close(fd) }
    }

    private func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try FileIO.writeAll(fd, path: temporary ?? path, $0) }
    }

    private static func littleEndian(_ bytes: [UInt8]) -> UInt64 {
        bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    /// Makes the images appended so far durable (appending in place).
    public func sync() throws {
        guard fsync(fd) == 0 else { throw IndexError.corruptFile(path: path, problem: "fsync failed: \(FileIO.errnoText())") }
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
        // A second call (an explicit finish, then a closing owner's) has nothing to close.
        guard fd >= 0 else { return }
        // The commit closes the descriptor whether or not it succeeds.
        defer { fd = -1 }
        guard let temporary else {
            defer { close(fd) }
            try sync()
            return
        }
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
            // The key, the block length and the CRC must fit (a record cut short by a kill
            // mid-write ends anywhere).
            guard keyLength <= 4096, position + 4 + keyLength + 8 + 4 <= bytes.count else {
                throw IndexError.corruptFile(path: path, problem: "image \(out.count): the record (key length \(keyLength)) runs past the end of the file")
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
