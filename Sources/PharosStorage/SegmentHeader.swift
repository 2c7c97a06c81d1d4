import PharosIndex
import PharosKernels

/// The header of a segment file: everything needed to find and check every block, read at
/// open; the blocks themselves are only checked when first touched.
///
/// On disk: `"PHSEGMNT"`, u32 format version, u32 CRC32C of the payload, u64 payload length,
/// payload (little-endian fields, arrays count-prefixed; see docs/STORAGE-FORMAT.md).
struct SegmentHeader: Equatable {
    static let magic = Array("PHSEGMNT".utf8)
    static let formatVersion: UInt32 = 1
    /// Bytes before the payload: magic, version, CRC, length.
    static let prefixBytes = 24
    /// Every block starts at a multiple of this (SIMD loads, page-friendly).
    static let alignment = 64

    /// One inverted list's codes.
    struct List: Equatable {
        /// Position of the list's first entry (entries are numbered in list order).
        var first: Int
        var count: Int
        var codesOffset: Int
        var refineOffset: Int
        /// CRC32C of the codes then the refine codes.
        var crc: UInt32
    }

    /// One LZ4 block of keys or metadata, holding entries `i * blobBlockEntries ..< ...`.
    struct BlobLocation: Equatable {
        var offset: Int
        var storedBytes: Int
        var rawBytes: Int
        var crc: UInt32
    }

    var segmentID: UInt64
    var trainedVersion: UInt64
    var subquantizers: Int
    var bits: Int
    var refineBytes: Int
    var entries: Int
    var lists: [List]
    var keyBlocks: [BlobLocation]
    var metadataBlocks: [BlobLocation]
    /// Sorted (key hash, position) pairs, 16 bytes each.
    var keyIndexOffset: Int
    /// CRC32C of each run of `keyIndexBlockEntries` pairs.
    var keyIndexCRCs: [UInt32]

    var layout: CodeLayout { CodeLayout(subquantizers: subquantizers, bits: bits, refineBytes: refineBytes) }

    func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.write(Int64(bitPattern: segmentID))
        w.write(Int64(bitPattern: trainedVersion))
        w.write(subquantizers)
        w.write(bits)
        w.write(refineBytes)
        w.write(entries)
        w.write(lists.map { Int64($0.first) })
        w.write(lists.map { Int64($0.count) })
        w.write(lists.map { Int64($0.codesOffset) })
        w.write(lists.map { Int64($0.refineOffset) })
        w.write(lists.map { Int64($0.crc) })
        for blocks in [keyBlocks, metadataBlocks] {
            w.write(blocks.map { Int64($0.offset) })
            w.write(blocks.map { Int64($0.storedBytes) })
            w.write(blocks.map { Int64($0.rawBytes) })
            w.write(blocks.map { Int64($0.crc) })
        }
        w.write(keyIndexOffset)
        w.write(keyIndexCRCs.map { Int64($0) })
        var prefix = ByteWriter()
        prefix.write(SegmentHeader.formatVersion)
        prefix.write(pharos_crc32c(0, w.bytes, w.bytes.count))
        prefix.write(w.bytes.count)
        return SegmentHeader.magic + prefix.bytes + w.bytes
    }

    /// Parses and checks the header at the start of a mapped file of `fileSize` bytes.
    static func parse(_ file: UnsafeRawBufferPointer, path: String) throws -> SegmentHeader {
        func corrupt(_ problem: String) -> StorageError { .corrupt(path: path, block: "header", problem: problem) }
        guard file.count >= prefixBytes else { throw corrupt("file is \(file.count) bytes, shorter than a header") }
        guard Array(file.prefix(8)) == magic else { throw corrupt("magic is not PHSEGMNT: not a segment file") }
        let version = file.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian
        guard version == formatVersion else { throw corrupt("format version \(version), this build reads \(formatVersion)") }
        let crc = file.loadUnaligned(fromByteOffset: 12, as: UInt32.self).littleEndian
        let length = Int(file.loadUnaligned(fromByteOffset: 16, as: Int64.self).littleEndian)
        guard length >= 0, length <= file.count - prefixBytes else {
            throw corrupt("payload of \(length) bytes runs past the end of a \(file.count)-byte file")
        }
        let payload = UnsafeRawBufferPointer(rebasing: file[prefixBytes ..< prefixBytes + length])
        let actual = pharos_crc32c(0, payload.baseAddress, length)
        guard actual == crc else { throw corrupt("CRC32C mismatch (stored \(crc), computed \(actual))") }
        var r = ByteReader(bytes: Array(payload)[...], path: path, tag: "header")
        let id = UInt64(bitPattern: try r.readInt64())
        let trained = UInt64(bitPattern: try r.readInt64())
        let m = try r.readInt("sub-quantizers", in: 1...4096)
        let bits = try r.readInt("bits", in: 4...8)
        guard bits == 4 || bits == 8 else { throw corrupt("bits = \(bits), expected 4 or 8") }
        let refineBytes = try r.readInt("refine bytes", in: 0...(1 << 20))
        let entries = try r.readInt("entries", in: 0...Int(UInt32.max) * 256)
        let first = try r.readInt64s("list firsts")
        let n = first.count
        let counts = try r.readInt64s("list counts", expected: n)
        let codes = try r.readInt64s("list code offsets", expected: n)
        let refine = try r.readInt64s("list refine offsets", expected: n)
        let crcs = try r.readInt64s("list CRCs", expected: n)
        var blockSets: [[BlobLocation]] = []
        for name in ["key", "metadata"] {
            let offsets = try r.readInt64s("\(name) block offsets")
            let stored = try r.readInt64s("\(name) block sizes", expected: offsets.count)
            let raw = try r.readInt64s("\(name) block raw sizes", expected: offsets.count)
            let bcrc = try r.readInt64s("\(name) block CRCs", expected: offsets.count)
            blockSets.append((0..<offsets.count).map {
                BlobLocation(offset: Int(offsets[$0]), storedBytes: Int(stored[$0]), rawBytes: Int(raw[$0]), crc: UInt32(truncatingIfNeeded: bcrc[$0]))
            })
        }
        let keyIndexOffset = try r.readInt("key index offset", in: 0...file.count)
        let indexCRCs = try r.readInt64s("key index CRCs").map { UInt32(truncatingIfNeeded: $0) }
        try r.expectEnd()
        let header = SegmentHeader(
            segmentID: id, trainedVersion: trained, subquantizers: m, bits: bits, refineBytes: refineBytes, entries: entries,
            lists: (0..<n).map { List(first: Int(first[$0]), count: Int(counts[$0]), codesOffset: Int(codes[$0]),
                                      refineOffset: Int(refine[$0]), crc: UInt32(truncatingIfNeeded: crcs[$0])) },
            keyBlocks: blockSets[0], metadataBlocks: blockSets[1], keyIndexOffset: keyIndexOffset, keyIndexCRCs: indexCRCs)
        try header.checkBounds(fileSize: file.count, path: path)
        return header
    }

    /// Checks that every block lies inside the file and that the tables agree with `entries`,
    /// so that later reads through the mapping cannot leave it.
    private func checkBounds(fileSize: Int, path: String) throws {
        func corrupt(_ block: String, _ problem: String) -> StorageError { .corrupt(path: path, block: block, problem: problem) }
        func inside(_ offset: Int, _ length: Int) -> Bool { offset >= 0 && length >= 0 && offset <= fileSize - length }
        var position = 0
        for (l, list) in lists.enumerated() {
            guard list.first == position, list.count >= 0 else { throw corrupt("list \(l)", "starts at entry \(list.first), expected \(position)") }
            position += list.count
            guard inside(list.codesOffset, layout.codeBytes(count: list.count)),
                  inside(list.refineOffset, list.count * refineBytes) else {
                throw corrupt("list \(l)", "codes run past the end of the file (\(fileSize) bytes): truncated?")
            }
        }
        guard position == entries else { throw corrupt("list table", "lists hold \(position) entries, header says \(entries)") }
        let blocks = (entries + StorageLimits.blobBlockEntries - 1) / StorageLimits.blobBlockEntries
        for (name, set) in [("key block", keyBlocks), ("metadata block", metadataBlocks)] {
            guard set.count == blocks else { throw corrupt("\(name) table", "\(set.count) blocks for \(entries) entries, expected \(blocks)") }
            for (i, b) in set.enumerated() where !inside(b.offset, b.storedBytes) {
                throw corrupt("\(name) \(i)", "runs past the end of the file (\(fileSize) bytes): truncated?")
            }
        }
        guard inside(keyIndexOffset, entries * 16) else { throw corrupt("key index", "runs past the end of the file (\(fileSize) bytes): truncated?") }
        let indexBlocks = (entries + StorageLimits.keyIndexBlockEntries - 1) / StorageLimits.keyIndexBlockEntries
        guard keyIndexCRCs.count == indexBlocks else { throw corrupt("key index", "\(keyIndexCRCs.count) CRCs, expected \(indexBlocks)") }
    }
}
