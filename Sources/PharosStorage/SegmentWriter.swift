#if canImport(Glibc)
import Glibc
#endif
import PharosDurability
import PharosIndex
import PharosKernels
import PharosRouting
import PharosVectors

/// Writes a segment file: lists in order (codes, then refine codes), then key blocks,
/// metadata blocks and the sorted key index, the header last at offset 0; all under a
/// temporary name that is fsynced and renamed into place.
struct SegmentWriter {
    /// The entries of one inverted list, in list order.
    struct ListContent {
        /// Unpacked PQ codes, `subquantizers` bytes per entry.
        var codes: [UInt8] = []
        var refine: [UInt8] = []
        var keys: [String] = []
        var metadata: [[UInt8]] = []
    }

    let path: String
    let segmentID: UInt64
    let trainedVersion: UInt64
    let layout: CodeLayout
    let listCount: Int
    let faults: StorageFaults

    /// Writes `entries` entries whose lists `content(l)` returns; returns the header written.
    func write(entries: Int, content: (Int) throws -> ListContent) throws -> SegmentHeader {
        let blobBlocks = (entries + StorageLimits.blobBlockEntries - 1) / StorageLimits.blobBlockEntries
        let indexBlocks = (entries + StorageLimits.keyIndexBlockEntries - 1) / StorageLimits.keyIndexBlockEntries
        let emptyBlock = SegmentHeader.BlobLocation(offset: 0, storedBytes: 0, rawBytes: 0, crc: 0)
        var header = SegmentHeader(
            segmentID: segmentID, trainedVersion: trainedVersion, subquantizers: layout.subquantizers, bits: layout.bits,
            refineBytes: layout.refineBytes, entries: entries,
            lists: Array(repeating: .init(first: 0, count: 0, codesOffset: 0, refineOffset: 0, crc: 0), count: listCount),
            keyBlocks: Array(repeating: emptyBlock, count: blobBlocks), metadataBlocks: Array(repeating: emptyBlock, count: blobBlocks),
            keyIndexOffset: 0, keyIndexCRCs: Array(repeating: 0, count: indexBlocks))
        let headerBytes = header.encoded().count

        if let injected = faults.takeSegmentWriteFailure() {
            throw StorageError.io(path: path, operation: "write segment", reason: injected)
        }
        let (fd, temporary): (Int32, String)
        do { (fd, temporary) = try FileIO.createTemporary(for: path) } catch let e as VectorFileError {
            throw StorageError.io(path: path, operation: "create", reason: e.problem)
        }
        var out = AlignedFileWriter(fd: fd, path: temporary, offset: headerBytes)
        do {
            var keys = BlobBlockBuilder(), metadata = BlobBlockBuilder()
            var hashes: [(hash: UInt64, position: Int64)] = []
            hashes.reserveCapacity(entries)
            var position = 0
            var packed: [UInt8] = []
            for l in 0..<listCount {
                let list = try content(l)
                let n = list.keys.count
                precondition(list.codes.count == n * layout.subquantizers && list.refine.count == n * layout.refineBytes
                             && list.metadata.count == n, "list \(l) content disagrees with its key count")
                if layout.bits == 4 {
                    packed = [UInt8](repeating: 0, count: layout.codeBytes(count: n))
                    if n > 0 { pharos_fs4_pack(list.codes, n, layout.subquantizers, layout.paddedSubquantizers, &packed) }
                } else {
                    packed = list.codes
                }
                let codesOffset = try out.write(packed)
                let refineOffset = try out.write(list.refine)
                let crc = pharos_crc32c(pharos_crc32c(0, packed, packed.count), list.refine, list.refine.count)
                header.lists[l] = .init(first: position, count: n, codesOffset: codesOffset, refineOffset: refineOffset, crc: crc)
                for i in 0..<n {
                    keys.append(Array(list.keys[i].utf8))
                    metadata.append(list.metadata[i])
                    hashes.append((KeyHash.of(list.keys[i]), Int64(position + i)))
                }
                position += n
            }
            precondition(position == entries, "lists held \(position) entries, \(entries) announced")
            for (i, block) in keys.finish().enumerated() { header.keyBlocks[i] = try out.writeBlob(block) }
            for (i, block) in metadata.finish().enumerated() { header.metadataBlocks[i] = try out.writeBlob(block) }
            hashes.sort { $0.hash != $1.hash ? $0.hash < $1.hash : $0.position < $1.position }
            var index: [UInt64] = []
            index.reserveCapacity(entries * 2)
            for h in hashes { index.append(h.hash); index.append(UInt64(h.position)) }
            header.keyIndexOffset = try index.withUnsafeBytes { try out.write($0) }
            let perBlock = StorageLimits.keyIndexBlockEntries * 16
            index.withUnsafeBytes { raw in
                for b in 0..<indexBlocks {
                    let start = b * perBlock, end = Swift.min(raw.count, start + perBlock)
                    header.keyIndexCRCs[b] = pharos_crc32c(0, raw.baseAddress! + start, end - start)
                }
            }
            try out.flush()
            let encoded = header.encoded()
            precondition(encoded.count == headerBytes, "segment header size changed while writing")
            try encoded.withUnsafeBytes { try out.pwriteAll($0, at: 0) }
        } catch {
            FileIO.discardTemporary(fd: fd, temporary: temporary)
            throw error
        }
        // Outside the catch above: the commit closes the descriptor even when it fails.
        do { try FileIO.commitTemporary(fd: fd, temporary: temporary, to: path) } catch let e as VectorFileError {
            throw StorageError.io(path: path, operation: "write segment", reason: e.problem)
        }
        return header
    }
}

/// Accumulates keys (or metadata values) into LZ4 blocks of `blobBlockEntries` entries.
/// Raw block layout: u32 count, u32 end offset of each entry (cumulative, from the start of
/// the data), the entries' bytes; so entry i is found without walking the others.
struct BlobBlockBuilder {
    private var ends: [UInt32] = []
    private var bytes: [UInt8] = []
    private var blocks: [(stored: [UInt8], raw: Int)] = []

    mutating func append(_ value: [UInt8]) {
        bytes += value
        ends.append(UInt32(bytes.count))
        if ends.count == StorageLimits.blobBlockEntries { seal() }
    }

    private mutating func seal() {
        var raw = ByteWriter()
        raw.write(UInt32(ends.count))
        for end in ends { raw.write(end) }
        let all = raw.bytes + bytes
        blocks.append((LZ4Block.compress(all), all.count))
        ends.removeAll(keepingCapacity: true)
        bytes.removeAll(keepingCapacity: true)
    }

    /// The compressed blocks and their raw sizes.
    mutating func finish() -> [(stored: [UInt8], raw: Int)] {
        if !ends.isEmpty { seal() }
        return blocks
    }
}

/// A decompressed key or metadata block, checked once so that entry reads need no checks.
/// A class with its bytes in one allocation: segments share it between threads without
/// reference-count traffic on the bytes.
final class BlobBlock: @unchecked Sendable {
    // @unchecked: the bytes are written once in init and only read afterwards.
    private let raw: UnsafeMutableRawBufferPointer
    /// Entries in the block.
    let count: Int

    /// Checks `raw` (count, monotone end offsets within the data); nil when malformed.
    init?(_ bytes: [UInt8]) {
        guard bytes.count >= 4 else { return nil }
        let count = Int(bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self).littleEndian })
        guard count <= StorageLimits.blobBlockEntries, bytes.count >= 4 + 4 * count else { return nil }
        let dataBytes = bytes.count - 4 - 4 * count
        var previous = 0
        for i in 0..<count {
            let end = Int(bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 4 + 4 * i, as: UInt32.self).littleEndian })
            guard end >= previous, end <= dataBytes else { return nil }
            previous = end
        }
        guard previous == dataBytes else { return nil }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 8)
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
        raw = buffer
        self.count = count
    }

    deinit { raw.deallocate() }

    /// The bytes of entry `i`, valid while this block is alive.
    func entry(_ i: Int) -> UnsafeRawBufferPointer {
        precondition(i >= 0 && i < count, "entry \(i) outside a block of \(count)")
        let start = i == 0 ? 0 : Int(raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian)
        let end = Int(raw.loadUnaligned(fromByteOffset: 4 + 4 * i, as: UInt32.self).littleEndian)
        let data = 4 + 4 * count
        return UnsafeRawBufferPointer(rebasing: raw[data + start ..< data + end])
    }

    /// Entry `i` as a string.
    func string(_ i: Int) -> String { String(decoding: entry(i), as: UTF8.self) }

    /// Entry `i` as bytes.
    func bytes(_ i: Int) -> [UInt8] { Array(entry(i)) }
}

/// Buffered sequential writes at aligned offsets, through `pwrite`.
struct AlignedFileWriter {
    let fd: Int32
    let path: String
    private(set) var offset: Int
    private var buffer: [UInt8] = []
    private var bufferStart: Int
    static let flushBytes = 4 << 20

    init(fd: Int32, path: String, offset: Int) {
        self.fd = fd
        self.path = path
        let start = AlignedFileWriter.align(offset)
        self.offset = start
        bufferStart = start
    }

    static func align(_ n: Int) -> Int { (n + SegmentHeader.alignment - 1) / SegmentHeader.alignment * SegmentHeader.alignment }

    /// Writes `bytes` at the next aligned offset; returns that offset.
    mutating func write(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        let start = AlignedFileWriter.align(offset)
        buffer.append(contentsOf: repeatElement(0, count: start - offset))
        buffer.append(contentsOf: bytes)
        offset = start + bytes.count
        if buffer.count >= AlignedFileWriter.flushBytes { try flush() }
        return start
    }

    mutating func write(_ bytes: [UInt8]) throws -> Int { try bytes.withUnsafeBytes { try write($0) } }

    mutating func writeBlob(_ block: (stored: [UInt8], raw: Int)) throws -> SegmentHeader.BlobLocation {
        let at = try write(block.stored)
        return .init(offset: at, storedBytes: block.stored.count, rawBytes: block.raw,
                     crc: pharos_crc32c(0, block.stored, block.stored.count))
    }

    mutating func flush() throws {
        try buffer.withUnsafeBytes { try pwriteAll($0, at: bufferStart) }
        bufferStart += buffer.count
        buffer.removeAll(keepingCapacity: true)
    }

    func pwriteAll(_ bytes: UnsafeRawBufferPointer, at position: Int) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(position + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw StorageError.io(path: path, operation: "write \(bytes.count) bytes at \(position)", reason: FileIO.errnoText())
            }
            done += n
        }
    }
}
