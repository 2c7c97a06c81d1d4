#if canImport(Glibc)
import Glibc
#endif
import PharosDurability
import PharosKernels

/// The container of a shard snapshot: a POSIX ustar archive (readable with `tar tvf`), whose
/// last member `SNAPSHOT` lists every other member with its size and CRC32C, so a restore
/// finds damage anywhere in the file, not only where the shard's own files carry checksums.
///
/// Sizes of 8 GiB and more use the base-256 size field GNU tar reads. Reading checks every
/// header's checksum, and every size against what the file still holds.
enum SnapshotArchive {
    static let blockSize = 512
    static let indexName = "SNAPSHOT"
    static let copyChunk = 1 << 20

    /// One member: its name, size and the CRC32C of its bytes.
    struct Member: Equatable {
        var name: String
        var size: Int
        var crc: UInt32
    }

    /// The `SNAPSHOT` member's text: a header line, then `CRC SIZE NAME` per member.
    static func index(_ members: [Member]) -> [UInt8] {
        var text = "pharos-shard snapshot 1\n"
        for m in members { text += String(m.crc, radix: 16) + " \(m.size) \(m.name)\n" }
        return Array(text.utf8)
    }

    /// The members an index lists; throws for any line that is not one.
    static func parseIndex(_ bytes: [UInt8], path: String) throws -> [Member] {
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true)
        guard lines.first == "pharos-shard snapshot 1" else {
            throw StorageError.corrupt(path: path, block: indexName, problem: "expected the header 'pharos-shard snapshot 1', found \(lines.first.map { String($0.prefix(40)) } ?? "nothing")")
        }
        return try lines.dropFirst().enumerated().map { i, line in
            let fields = line.split(separator: " ", maxSplits: 2)
            guard fields.count == 3, let crc = UInt32(fields[0], radix: 16), let size = Int(fields[1]), size >= 0 else {
                throw StorageError.corrupt(path: path, block: indexName, problem: "line \(i + 2) is not 'CRC SIZE NAME'")
            }
            return Member(name: String(fields[2]), size: size, crc: crc)
        }
    }

    /// A ustar header for a regular file `name` of `size` bytes.
    static func header(name: String, size: Int) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: blockSize)
        func put(_ text: String, at offset: Int) { for (i, b) in text.utf8.enumerated() { h[offset + i] = b } }
        put(name, at: 0)
        put("0000644", at: 100)
        put("0000000", at: 108)
        put("0000000", at: 116)
        if size < 0o77777777777 {
            put(String(repeating: "0", count: 11 - String(size, radix: 8).count) + String(size, radix: 8), at: 124)
        } else {
            h[124] = 0x80   // base-256, big-endian in the remaining 11 bytes
            var v = UInt64(size)
            for i in stride(from: 135, through: 125, by: -1) {
                h[i] = UInt8(v & 0xFF)
                v >>= 8
            }
        }
        put("00000000000", at: 136)
        h[156] = UInt8(ascii: "0")
        put("ustar", at: 257)
        put("00", at: 263)
        put("pharos", at: 265)
        put("pharos", at: 297)
        for i in 148..<156 { h[i] = UInt8(ascii: " ") }
        let sum = h.reduce(0) { $0 + Int($1) }
        let octal = String(sum, radix: 8)
        put(String(repeating: "0", count: 6 - octal.count) + octal, at: 148)
        h[154] = 0
        h[155] = UInt8(ascii: " ")
        return h
    }

    /// The member name and size in a header block, nil for an end-of-archive (zero) block;
    /// throws for a damaged or unexpected header.
    static func parseHeader(_ h: [UInt8], path: String, offset: Int) throws -> (name: String, size: Int)? {
        if h.allSatisfy({ $0 == 0 }) { return nil }
        let block = "header at byte \(offset)"
        var spaced = h
        for i in 148..<156 { spaced[i] = UInt8(ascii: " ") }
        let sum = spaced.reduce(0) { $0 + Int($1) }
        let stored = Int(String(decoding: h[148..<154].filter { $0 != 0 && $0 != UInt8(ascii: " ") }, as: UTF8.self), radix: 8)
        guard stored == sum else { throw StorageError.corrupt(path: path, block: block, problem: "header checksum \(stored.map(String.init) ?? "unreadable") differs from \(sum)") }
        guard Array(h[257..<262]) == Array("ustar".utf8) else { throw StorageError.corrupt(path: path, block: block, problem: "not a ustar header") }
        guard h[156] == UInt8(ascii: "0") || h[156] == 0 else {
            throw StorageError.corrupt(path: path, block: block, problem: "member type \(h[156]); a snapshot holds regular files only")
        }
        let name = String(decoding: h[0..<100].prefix { $0 != 0 }, as: UTF8.self)
        var size = 0
        if h[124] & 0x80 != 0 {
            for b in h[125..<136] {
                guard size < Int.max >> 8 else { throw StorageError.corrupt(path: path, block: block, problem: "size out of range") }
                size = size << 8 | Int(b)
            }
        } else {
            guard let parsed = Int(String(decoding: h[124..<136].filter { $0 != 0 && $0 != UInt8(ascii: " ") }, as: UTF8.self), radix: 8) else {
                throw StorageError.corrupt(path: path, block: block, problem: "unreadable size")
            }
            size = parsed
        }
        return (name, size)
    }

    /// Whether `name` is a file a shard snapshot may hold (nothing else is ever extracted).
    static func isShardFile(_ name: String) -> Bool {
        if name == "TRAINED" || name == "MANIFEST" { return true }
        func hex16(_ s: Substring) -> Bool { s.count == 16 && s.allSatisfy { $0.isHexDigit && !$0.isUppercase } }
        if name.hasPrefix("wal/"), name.hasSuffix(".log") { return hex16(name.dropFirst(4).dropLast(4)) }
        guard name.hasPrefix("segments/") else { return false }
        let parts = name.dropFirst(9).split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 2 { return hex16(parts[0]) && parts[1] == "seg" }
        if parts.count == 3 { return hex16(parts[0]) && !parts[1].isEmpty && parts[1].allSatisfy(\.isNumber) && parts[2] == "del" }
        return false
    }

    /// Padding after `size` bytes of data.
    static func padding(_ size: Int) -> Int { (blockSize - size % blockSize) % blockSize }

    /// Copies `count` bytes from `source` at `from` to the end of what was written to `target`,
    /// in chunks; returns the CRC32C of what was copied.
    static func copy(from source: Int32, sourcePath: String, at from: Int, to target: Int32, targetPath: String, count: Int) throws -> UInt32 {
        var crc: UInt32 = 0
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: copyChunk, alignment: 64)
        defer { buffer.deallocate() }
        var done = 0
        while done < count {
            let n = Swift.min(copyChunk, count - done)
            try FileIO.read(source, path: sourcePath, into: buffer, count: n, offset: from + done)
            crc = pharos_crc32c(crc, buffer, n)
            try FileIO.writeAll(target, path: targetPath, UnsafeRawBufferPointer(start: buffer, count: n))
            done += n
        }
        return crc
    }
}
