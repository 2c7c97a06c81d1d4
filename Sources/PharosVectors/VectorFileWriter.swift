#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PharosDurability
import PharosKernels

/// Writes rows to a `.fvecs`, `.ivecs`, `.bvecs` or `.npy` file, streaming.
///
/// Rows go to a temporary sibling file; `finish()` makes it durable and renames it over the
/// destination, so a reader never sees a half-written file and a crash leaves the old one.
public final class VectorFileWriter {
    /// Destination path.
    public let path: String
    /// Output format.
    public let format: VectorFileFormat
    /// Stored element type.
    public let elementType: VectorElementType
    /// Components per row.
    public let dimension: Int
    /// Rows written so far.
    public private(set) var count = 0

    private var fd: Int32
    private let temporary: String
    private var finished = false

    /// Creates a writer. `elementType` defaults to the format's natural type (float32 for
    /// `.fvecs` and `.npy`, int32 for `.ivecs`, uint8 for `.bvecs`).
    public init(path: String, dimension: Int, elementType: VectorElementType? = nil) throws {
        self.path = path
        format = try VectorFileFormat(path: path)
        let natural: VectorElementType = format == .ivecs ? .int32 : format == .bvecs ? .uint8 : .float32
        let type = elementType ?? natural
        guard format == .npy || type == natural else {
            throw VectorFileError(path: path, problem: ".\(format.rawValue) stores \(natural.rawValue), not \(type.rawValue)")
        }
        guard dimension > 0, dimension <= VectorFileReader.maximumDimension else {
            throw VectorFileError(path: path, problem: "dimension \(dimension): expected 1...\(VectorFileReader.maximumDimension)")
        }
        self.elementType = type
        self.dimension = dimension
        (fd, temporary) = try FileIO.createTemporary(for: path)
        if format == .npy {
            // Placeholder header; rewritten with the final row count in `finish()`.
            let header = NumpyHeader(elementType: type, rows: 0, columns: dimension, dataOffset: NumpyHeader.writerHeaderLength).encoded()
            try header.withUnsafeBytes { try FileIO.writeAll(fd, path: temporary, $0) }
        }
    }

    deinit {
        if !finished { FileIO.discardTemporary(fd: fd, temporary: temporary) }
    }

    /// Appends float rows, converting to the file's element type (uint8 values are rounded and clamped).
    public func write(_ rows: Matrix) throws {
        precondition(!finished, "write after finish")
        guard rows.columns == dimension else {
            throw VectorFileError(path: path, problem: "row dimension \(rows.columns), expected \(dimension)")
        }
        var bytes = [UInt8]()
        let payload = dimension * elementType.size
        let headerBytes = format == .npy ? 0 : 4
        bytes.reserveCapacity(rows.rows * (payload + headerBytes))
        var d = Int32(dimension).littleEndian
        let dimBytes = withUnsafeBytes(of: &d) { Array($0) }
        var half = [UInt16](repeating: 0, count: dimension)
        for i in 0..<rows.rows {
            if headerBytes > 0 { bytes += dimBytes }
            let row = rows.values[i * dimension ..< (i + 1) * dimension]
            switch elementType {
            case .float32:
                row.withUnsafeBytes { bytes += $0 }
            case .float16:
                row.withUnsafeBufferPointer { pharos_f32_to_f16($0.baseAddress!, dimension, &half) }
                half.withUnsafeBytes { bytes += $0 }
            case .uint8:
                bytes += row.map { UInt8(Swift.max(0, Swift.min(255, $0.rounded()))) }
            case .int32:
                for v in row { withUnsafeBytes(of: Int32(v).littleEndian) { bytes += $0 } }
            }
        }
        try bytes.withUnsafeBytes { try FileIO.writeAll(fd, path: temporary, $0) }
        count += rows.rows
    }

    /// Appends int32 rows (`rows.count` must be a multiple of the dimension).
    public func write(int32Rows rows: [Int32]) throws {
        precondition(!finished, "write after finish")
        guard elementType == .int32 else {
            throw VectorFileError(path: path, problem: "int32 rows written to a \(elementType.rawValue) file")
        }
        guard rows.count % dimension == 0 else {
            throw VectorFileError(path: path, problem: "\(rows.count) values is not a whole number of \(dimension)-wide rows")
        }
        var bytes = [UInt8]()
        let n = rows.count / dimension
        for i in 0..<n {
            if format != .npy { withUnsafeBytes(of: Int32(dimension).littleEndian) { bytes += $0 } }
            rows[i * dimension ..< (i + 1) * dimension].withUnsafeBytes { bytes += $0 }
        }
        try bytes.withUnsafeBytes { try FileIO.writeAll(fd, path: temporary, $0) }
        count += n
    }

    /// Completes the file: final header, fsync, atomic rename.
    public func finish() throws {
        precondition(!finished, "finish called twice")
        finished = true
        if format == .npy {
            let header = NumpyHeader(elementType: elementType, rows: count, columns: dimension, dataOffset: NumpyHeader.writerHeaderLength).encoded()
            let written = header.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, 0) }
            guard written == header.count else {
                FileIO.discardTemporary(fd: fd, temporary: temporary)
                throw VectorFileError(path: temporary, offset: 0, problem: "rewriting the .npy header failed: \(FileIO.errnoText())")
            }
        }
        try FileIO.commitTemporary(fd: fd, temporary: temporary, to: path)
    }
}
