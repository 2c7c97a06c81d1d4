#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PharosDurability
import PharosKernels
import PharosVectors

/// The self-describing binary container of a saved index.
///
/// Layout (all integers little-endian):
/// ```
/// "PHAROSIX"                 8 bytes magic
/// u32 format version         currently 1
/// u32 section count
/// u32 CRC32C of the 16 bytes above
/// per section: tag (4 ASCII bytes), u64 payload length, u32 CRC32C of the payload, payload
/// ```
/// A reader rejects an unknown version, a section whose length runs past the end, a CRC
/// mismatch and trailing bytes, naming the file and the section.
public enum IndexFile {
    static let magic = Array("PHAROSIX".utf8)
    /// The format version this build writes and reads.
    public static let formatVersion: UInt32 = 1
    /// File name of the index inside an index directory.
    public static let fileName = "index.pharos"
}

/// Little-endian encoder for one section's payload.
public struct ByteWriter {
    /// The bytes written so far.
    public private(set) var bytes: [UInt8] = []

    /// An empty writer.
    public init() {}

    /// Appends a 32-bit unsigned integer.
    public mutating func write(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    /// Appends a 64-bit signed integer.
    public mutating func write(_ v: Int64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    /// Appends an `Int` as 64 bits.
    public mutating func write(_ v: Int) { write(Int64(v)) }
    /// Appends a length-prefixed UTF-8 string.
    public mutating func write(_ s: String) {
        write(UInt32(s.utf8.count))
        bytes += Array(s.utf8)
    }
    /// Appends a count-prefixed float array.
    public mutating func write(_ values: [Float]) {
        write(values.count)
        values.withUnsafeBytes { bytes += $0 }
    }
    /// Appends a count-prefixed byte array.
    public mutating func write(_ values: [UInt8]) {
        write(values.count)
        bytes += values
    }
    /// Appends a count-prefixed Int64 array.
    public mutating func write(_ values: [Int64]) {
        write(values.count)
        values.withUnsafeBytes { bytes += $0 }
    }
}

/// Bounds-checked little-endian decoder for one section; errors name the file and section.
public struct ByteReader {
    private let bytes: ArraySlice<UInt8>
    private var position: Int
    let path: String
    let tag: String

    /// A reader over `bytes`; errors name `path` and `tag` (the section or record being read).
    public init(bytes: ArraySlice<UInt8>, path: String, tag: String) {
        self.bytes = bytes
        position = bytes.startIndex
        self.path = path
        self.tag = tag
    }

    /// Whether the section is fully consumed.
    public var isAtEnd: Bool { position == bytes.endIndex }

    func corrupt(_ problem: String) -> IndexError {
        .corruptFile(path: path, problem: "section '\(tag)': \(problem)")
    }

    private mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, n <= bytes.endIndex - position else {
            throw corrupt("needs \(n) more bytes at section offset \(position - bytes.startIndex), has \(bytes.endIndex - position)")
        }
        defer { position += n }
        return bytes[position ..< position + n]
    }

    /// Reads a 32-bit unsigned integer.
    public mutating func readUInt32() throws -> UInt32 {
        UInt32(littleEndian: try take(4).withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
    }
    /// Reads a 64-bit signed integer.
    public mutating func readInt64() throws -> Int64 {
        Int64(littleEndian: try take(8).withUnsafeBytes { $0.loadUnaligned(as: Int64.self) })
    }
    /// Reads an `Int` within `range`, naming `field` when it is outside.
    public mutating func readInt(_ field: String, in range: ClosedRange<Int>) throws -> Int {
        let v = try readInt64()
        guard v >= Int64(range.lowerBound), v <= Int64(range.upperBound) else {
            throw corrupt("\(field) = \(v), expected \(range.lowerBound)...\(range.upperBound)")
        }
        return Int(v)
    }
    /// Reads a length-prefixed string.
    public mutating func readString() throws -> String {
        let n = Int(try readUInt32())
        return String(decoding: try take(n), as: UTF8.self)
    }
    /// Reads a count-prefixed float array, checking its count against `expected` when given.
    public mutating func readFloats(_ field: String, expected: Int? = nil) throws -> [Float] {
        let n = try readInt("\(field) count", in: 0...(Int.max / 8))
        if let expected, n != expected { throw corrupt("\(field) holds \(n) floats, expected \(expected)") }
        let raw = try take(n * 4)
        return raw.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
    /// Reads a count-prefixed byte array.
    public mutating func readBytes(_ field: String, expected: Int? = nil) throws -> [UInt8] {
        let n = try readInt("\(field) count", in: 0...(Int.max / 8))
        if let expected, n != expected { throw corrupt("\(field) holds \(n) bytes, expected \(expected)") }
        return Array(try take(n))
    }
    /// Reads a count-prefixed Int64 array.
    public mutating func readInt64s(_ field: String, expected: Int? = nil) throws -> [Int64] {
        let n = try readInt("\(field) count", in: 0...(Int.max / 8))
        if let expected, n != expected { throw corrupt("\(field) holds \(n) ids, expected \(expected)") }
        let raw = try take(n * 8)
        return raw.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
    }
    /// Fails unless every byte of the section was consumed.
    public func expectEnd() throws {
        guard isAtEnd else { throw corrupt("\(bytes.endIndex - position) unexpected trailing bytes") }
    }
}

/// Collects sections into a container (`IndexFactory.save` writes it atomically).
public struct IndexFileWriter {
    private var sections: [(tag: String, payload: [UInt8])] = []

    /// An empty container.
    public init() {}

    /// Adds a section with a 4-character tag.
    public mutating func section(_ tag: String, _ build: (inout ByteWriter) -> Void) {
        precondition(tag.utf8.count == 4, "section tags are 4 ASCII bytes")
        var w = ByteWriter()
        build(&w)
        sections.append((tag, w.bytes))
    }

    /// The whole file's bytes.
    public func encoded() -> [UInt8] {
        var header = ByteWriter()
        var out = IndexFile.magic
        header.write(IndexFile.formatVersion)
        header.write(UInt32(sections.count))
        out += header.bytes
        var crc = ByteWriter()
        crc.write(pharos_crc32c(0, out, out.count))
        out += crc.bytes
        for (tag, payload) in sections {
            var w = ByteWriter()
            w.write(Int64(payload.count))
            w.write(pharos_crc32c(0, payload, payload.count))
            out += Array(tag.utf8) + w.bytes + payload
        }
        return out
    }

}

/// Parses and verifies a container; sections are then read by tag, in order.
public struct IndexFileReader {
    private let bytes: [UInt8]
    private var sections: [(tag: String, range: Range<Int>)] = []
    private var next = 0
    /// The path, for error messages.
    public let path: String

    /// Reads and verifies every section checksum of the file at `path`.
    public init(path: String) throws {
        try self.init(bytes: try FileIO.readWholeFile(path), path: path)
    }

    /// Verifies an in-memory container.
    public init(bytes: [UInt8], path: String) throws {
        self.bytes = bytes
        self.path = path
        func corrupt(_ problem: String) -> IndexError { .corruptFile(path: path, problem: problem) }
        guard bytes.count >= 20 else { throw corrupt("file of \(bytes.count) bytes is too short for an index header (20)") }
        guard Array(bytes[0..<8]) == IndexFile.magic else { throw corrupt("bad magic: not a Pharos index file (expected \"PHAROSIX\")") }
        var header = ByteReader(bytes: bytes[8..<20], path: path, tag: "header")
        let version = try header.readUInt32()
        let count = Int(try header.readUInt32())
        let storedCRC = try header.readUInt32()
        guard storedCRC == pharos_crc32c(0, bytes, 16) else { throw corrupt("header checksum mismatch") }
        guard version == IndexFile.formatVersion else {
            throw corrupt("format version \(version), this build reads version \(IndexFile.formatVersion)")
        }
        var position = 20
        for s in 0..<count {
            guard bytes.count - position >= 16 else { throw corrupt("section \(s) header truncated at byte \(position)") }
            let tag = String(decoding: bytes[position..<position + 4], as: UTF8.self)
            var r = ByteReader(bytes: bytes[position + 4 ..< position + 16], path: path, tag: tag)
            let length = try r.readInt64()
            let crc = try r.readUInt32()
            let start = position + 16
            guard length >= 0, length <= Int64(bytes.count - start) else {
                throw corrupt("section '\(tag)' at byte \(position) declares \(length) bytes, only \(bytes.count - start) remain (truncated?)")
            }
            let range = start ..< start + Int(length)
            let actual = bytes.withUnsafeBufferPointer { pharos_crc32c(0, $0.baseAddress! + range.lowerBound, range.count) }
            guard actual == crc else {
                throw corrupt("section '\(tag)' at byte \(position): checksum mismatch (stored \(crc), computed \(actual)): the file is damaged")
            }
            sections.append((tag, range))
            position = range.upperBound
        }
        guard position == bytes.count else { throw corrupt("\(bytes.count - position) trailing bytes after the last section") }
    }

    /// The next section, which must carry `tag`.
    public mutating func section(_ tag: String) throws -> ByteReader {
        guard next < sections.count else {
            throw IndexError.corruptFile(path: path, problem: "missing section '\(tag)'")
        }
        let s = sections[next]
        guard s.tag == tag else {
            throw IndexError.corruptFile(path: path, problem: "expected section '\(tag)', found '\(s.tag)'")
        }
        next += 1
        return ByteReader(bytes: bytes[s.range], path: path, tag: tag)
    }

    /// Fails unless every section was read.
    public func expectEnd() throws {
        guard next == sections.count else {
            throw IndexError.corruptFile(path: path, problem: "\(sections.count - next) unread sections")
        }
    }
}
