#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PharosDurability
import PharosKernels

/// Streams rows out of a `.fvecs`, `.ivecs`, `.bvecs` or `.npy` file.
///
/// Opening reads only the header (the first row's dimension for TEXMEX formats) and validates
/// the file's size against it; rows are read on demand with positioned reads, so memory stays
/// bounded by the batch asked for whatever the file's size. Every row of a TEXMEX file is
/// checked for its declared dimension as it is read.
public final class VectorFileReader: @unchecked Sendable {
    // @unchecked: every property is immutable and reads use `pread` at explicit offsets, so
    // several threads may read one file at once.
    /// The path as given.
    public let path: String
    /// The file's format, from its extension.
    public let format: VectorFileFormat
    /// The stored element type.
    public let elementType: VectorElementType
    /// Number of rows (vectors).
    public let count: Int
    /// Components per row.
    public let dimension: Int

    private let fd: Int32
    private let dataOffset: Int
    /// Bytes from one row's start to the next (includes the 4-byte dimension for TEXMEX formats).
    private let rowStride: Int
    private let rowHeaderBytes: Int

    /// The largest dimension accepted, to reject garbage headers before allocating.
    public static let maximumDimension = 1 << 20

    /// Opens and validates a vector file.
    public init(path: String) throws {
        self.path = path
        format = try VectorFileFormat(path: path)
        // Stored last: were `fd` set when a check below throws, `deinit` would close it again.
        let descriptor = try FileIO.openForReading(path)
        do {
            let fileSize = try FileIO.size(of: descriptor, path: path)
            switch format {
            case .npy:
                let header = try NumpyHeader.read(fd: descriptor, path: path, fileSize: fileSize)
                elementType = header.elementType
                count = header.rows
                dimension = header.columns
                dataOffset = header.dataOffset
                rowHeaderBytes = 0
                rowStride = header.columns * header.elementType.size
            case .fvecs, .ivecs, .bvecs:
                let type: VectorElementType = format == .fvecs ? .float32 : format == .ivecs ? .int32 : .uint8
                elementType = type
                dataOffset = 0
                rowHeaderBytes = 4
                if fileSize == 0 {
                    throw VectorFileError(path: path, offset: 0, problem: "the file is empty: no vectors")
                } else {
                    guard fileSize >= 4 else {
                        throw VectorFileError(path: path, offset: 0, problem: "file of \(fileSize) bytes is too short for a row header (4 bytes)")
                    }
                    let first = try FileIO.readBytes(descriptor, path: path, count: 4, offset: 0)
                    let d = Int(Int32(littleEndian: first.withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }))
                    guard d > 0, d <= VectorFileReader.maximumDimension else {
                        throw VectorFileError(path: path, offset: 0, problem: "first row declares dimension \(d): expected 1...\(VectorFileReader.maximumDimension) (is this really a .\(format.rawValue) file?)")
                    }
                    let stride = 4 + d * type.size
                    guard fileSize % stride == 0 else {
                        let whole = fileSize / stride
                        throw VectorFileError(path: path, offset: whole * stride, problem: "truncated tail: \(fileSize) bytes is not a whole number of \(stride)-byte rows (dimension \(d)); row \(whole) has \(fileSize - whole * stride) bytes")
                    }
                    dimension = d
                    rowStride = stride
                    count = fileSize / stride
                }
            }
        } catch {
            close(descriptor)
            throw error
        }
        fd = descriptor
    }

    deinit { close(fd) }

    /// Rows `range` converted to `Float`.
    public func readRows(_ range: Range<Int>) throws -> Matrix {
        try checkRange(range)
        let dimension = self.dimension, elementType = self.elementType
        var out = [Float](repeating: 0, count: range.count * dimension)
        try out.withUnsafeMutableBufferPointer { dst in
            try readRaw(range) { src, outputRow in
                let row = dst.baseAddress! + outputRow * dimension
                switch elementType {
                case .float32:
                    row.update(from: src.assumingMemoryBound(to: Float.self), count: dimension)
                    try checkFinite(row, dimension: dimension, row: range.lowerBound + outputRow)
                case .float16:
                    pharos_f16_to_f32(src.assumingMemoryBound(to: UInt16.self), dimension, row)
                    try checkFinite(row, dimension: dimension, row: range.lowerBound + outputRow)
                case .uint8:
                    let bytes = src.assumingMemoryBound(to: UInt8.self)
                    for j in 0..<dimension { row[j] = Float(bytes[j]) }
                case .int32:
                    let ints = src.assumingMemoryBound(to: Int32.self)
                    for j in 0..<dimension { row[j] = Float(ints[j]) }
                }
            }
        }
        return Matrix(rows: range.count, columns: dimension, values: out)
    }

    /// A NaN or infinity is refused where it is read, naming the file, row and component:
    /// later it could only be reported by row, and by then the file is no longer known.
    private func checkFinite(_ row: UnsafeMutablePointer<Float>, dimension: Int, row index: Int) throws {
        for j in 0..<dimension where !row[j].isFinite {
            throw VectorFileError(path: path, problem: "row \(index) component \(j) is \(row[j]): vectors must be finite")
        }
    }

    /// Rows `range` as `Int32` (for `.ivecs` and int32 `.npy`), row-major.
    public func readInt32Rows(_ range: Range<Int>) throws -> [Int32] {
        guard elementType == .int32 else {
            throw VectorFileError(path: path, problem: "expected int32 rows (neighbour ids), found \(elementType.rawValue)")
        }
        try checkRange(range)
        let dimension = self.dimension
        var out = [Int32](repeating: 0, count: range.count * dimension)
        try out.withUnsafeMutableBufferPointer { dst in
            try readRaw(range) { src, outputRow in
                (dst.baseAddress! + outputRow * dimension)
                    .update(from: src.assumingMemoryBound(to: Int32.self), count: dimension)
            }
        }
        return out
    }

    /// Every row as `Float`. Use `batches(of:)` for files that should not be held in memory.
    public func readAll() throws -> Matrix { try readRows(0..<count) }

    /// Every row when there are at most `limit`, else `limit` rows evenly spaced through the
    /// file (a training sample that sees all of it, not only its start).
    public func readEvenlySpaced(atMost limit: Int) throws -> Matrix {
        guard limit > 0 else { throw VectorFileError(path: path, problem: "a sample of \(limit) rows: expected at least 1") }
        guard count > limit else { return try readAll() }
        return try Matrix(rowArrays: (0..<limit).map { i in try readRows(i * count / limit ..< i * count / limit + 1).row(0) })
    }

    /// Calls `body` with consecutive batches of at most `size` rows and the index of each batch's first row.
    public func forEachBatch(of size: Int, _ body: (Matrix, Int) throws -> Void) throws {
        precondition(size > 0, "batch size must be positive")
        var start = 0
        while start < count {
            let end = Swift.min(count, start + size)
            try body(try readRows(start..<end), start)
            start = end
        }
    }

    private func checkRange(_ range: Range<Int>) throws {
        guard range.lowerBound >= 0, range.upperBound <= count else {
            throw VectorFileError(path: path, problem: "rows \(range.lowerBound)..<\(range.upperBound) requested, file has \(count)")
        }
    }

    /// Reads `range` in chunks of at most 4 MiB, verifying TEXMEX row headers, and hands each
    /// row's payload (after its header) to `consume` with the row's index within `range`.
    private func readRaw(_ range: Range<Int>, _ consume: (UnsafeMutableRawPointer, Int) throws -> Void) throws {
        let chunkRows = Swift.max(1, (4 << 20) / rowStride)
        var buffer = [UInt8](repeating: 0, count: Swift.min(range.count, chunkRows) * rowStride)
        var row = range.lowerBound
        while row < range.upperBound {
            let rows = Swift.min(chunkRows, range.upperBound - row)
            let offset = dataOffset + row * rowStride
            try buffer.withUnsafeMutableBytes { raw in
                try FileIO.read(fd, path: path, into: raw.baseAddress!, count: rows * rowStride, offset: offset)
                for r in 0..<rows {
                    if rowHeaderBytes > 0 {
                        let d = Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: r * rowStride, as: Int32.self)))
                        if d != dimension {
                            throw VectorFileError(path: path, offset: offset + r * rowStride, problem: "row \(row + r) declares dimension \(d), expected \(dimension) like the first row")
                        }
                    }
                    try consume(raw.baseAddress! + r * rowStride + rowHeaderBytes, row + r - range.lowerBound)
                }
            }
            row += rows
        }
    }
}
