#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PharosDurability

/// Appends float32 rows to a `.npy` or `.fvecs` file in place, durably, so that a long job
/// (`pharos extract`) can stop at any moment and resume.
///
/// After every `append` the file is complete and readable: the rows are written and fsynced
/// first, then (`.npy`) the header's row count is rewritten in place and fsynced. A kill between
/// the two leaves rows past the recorded count; opening the file again keeps exactly the rows
/// its caller says were committed (`keeping`) and cuts the rest.
public final class VectorFileAppender {
    /// The file.
    public let path: String
    /// Its format (`.npy` or `.fvecs`).
    public let format: VectorFileFormat
    /// Components per row.
    public let dimension: Int
    /// Rows in the file.
    public private(set) var count: Int

    private var fd: Int32
    private let dataOffset: Int
    private var rowBytes: Int { format == .npy ? dimension * 4 : 4 + dimension * 4 }

    /// Opens `path` for appending, creating it when missing. An existing file must be float32
    /// rows of `dimension` holding at least `keeping` rows; rows past `keeping` are cut (and a
    /// `.npy` header updated), so that the file holds exactly the `keeping` rows committed before.
    public init(path: String, dimension: Int, keeping: Int) throws {
        self.path = path
        format = try VectorFileFormat(path: path)
        guard format == .npy || format == .fvecs else {
            throw VectorFileError(path: path, problem: "appending writes .npy or .fvecs, not .\(format.rawValue)")
        }
        guard dimension > 0, dimension <= VectorFileReader.maximumDimension else {
            throw VectorFileError(path: path, problem: "dimension \(dimension): expected 1...\(VectorFileReader.maximumDimension)")
        }
        self.dimension = dimension
        let existed = access(path, F_OK) == 0
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw VectorFileError(path: path, problem: "cannot open for appending: \(FileIO.errnoText())") }
        do {
            dataOffset = try Self.prepare(descriptor, path: path, format: format, dimension: dimension, existed: existed, keeping: keeping)
        } catch {
            Glibc.close(descriptor)
            throw error
        }
        count = keeping
        // Stored last: the object owns the descriptor (and `deinit` closes it) only once
        // nothing in this init can throw any more.
        fd = descriptor
    }

    /// Checks an existing file (or writes a new one's header), cuts rows past `keeping` and
    /// makes that durable; returns the offset of the first row.
    private static func prepare(_ fd: Int32, path: String, format: VectorFileFormat, dimension: Int, existed: Bool, keeping: Int) throws -> Int {
        let size = try FileIO.size(of: fd, path: path)
        if !existed || size == 0 {
            guard keeping == 0 else {
                throw VectorFileError(path: path, problem: "the file is empty or missing, but \(keeping) rows were recorded as written")
            }
            if format == .npy { try writeHeader(fd: fd, path: path, rows: 0, dimension: dimension) }
            try sync(fd, path: path)
            FileIO.syncDirectory(containing: path)
            return format == .npy ? NumpyHeader.writerHeaderLength : 0
        }
        let dataOffset: Int
        if format == .npy {
            let header = try NumpyHeader.read(fd: fd, path: path, fileSize: size, allowTrailingBytes: true)
            guard header.elementType == .float32, header.columns == dimension else {
                throw VectorFileError(path: path, problem: "holds (\(header.rows), \(header.columns)) \(header.elementType.rawValue) rows; this run writes \(dimension)-dimensional float32")
            }
            guard header.dataOffset == NumpyHeader.writerHeaderLength else {
                throw VectorFileError(path: path, problem: "a .npy header of \(header.dataOffset) bytes was not written by Pharos (\(NumpyHeader.writerHeaderLength)); cannot append in place")
            }
            dataOffset = header.dataOffset
        } else {
            dataOffset = 0
            if size >= 4 {
                let first = try FileIO.readBytes(fd, path: path, count: 4, offset: 0)
                let d = Int(UInt32(first[0]) | UInt32(first[1]) << 8 | UInt32(first[2]) << 16 | UInt32(first[3]) << 24)
                guard d == dimension else {
                    throw VectorFileError(path: path, offset: 0, problem: "rows of dimension \(d); this run writes \(dimension)")
                }
            }
        }
        let rowBytes = format == .npy ? dimension * 4 : 4 + dimension * 4
        let rowsOnDisk = (size - dataOffset) / rowBytes
        guard rowsOnDisk >= keeping else {
            throw VectorFileError(path: path, problem: "holds \(rowsOnDisk) whole rows, but \(keeping) were recorded as written: the file was cut or replaced")
        }
        let end = dataOffset + keeping * rowBytes
        if size != end {
            guard ftruncate(fd, off_t(end)) == 0 else {
                throw VectorFileError(path: path, problem: "cannot cut the rows past \(keeping): \(FileIO.errnoText())")
            }
        }
        if format == .npy { try writeHeader(fd: fd, path: path, rows: keeping, dimension: dimension) }
        try sync(fd, path: path)
        return dataOffset
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    /// Appends `rows` and makes them durable; on return the file holds them and is readable.
    public func append(_ rows: Matrix) throws {
        guard fd >= 0 else { throw VectorFileError(path: path, problem: "append after close") }
        guard rows.columns == dimension else {
            throw VectorFileError(path: path, problem: "row dimension \(rows.columns), expected \(dimension)")
        }
        guard rows.rows > 0 else { return }
        var bytes = [UInt8]()
        bytes.reserveCapacity(rows.rows * rowBytes)
        let dimensionBytes = withUnsafeBytes(of: Int32(dimension).littleEndian) { Array($0) }
        for i in 0..<rows.rows {
            if format == .fvecs { bytes += dimensionBytes }
            rows.values[i * dimension ..< (i + 1) * dimension].withUnsafeBytes { bytes += $0 }
        }
        let offset = dataOffset + count * rowBytes
        guard lseek(fd, off_t(offset), SEEK_SET) == off_t(offset) else {
            throw VectorFileError(path: path, problem: "seek to \(offset) failed: \(FileIO.errnoText())")
        }
        try bytes.withUnsafeBytes { try FileIO.writeAll(fd, path: path, $0) }
        try Self.sync(fd, path: path)
        if format == .npy {
            try Self.writeHeader(fd: fd, path: path, rows: count + rows.rows, dimension: dimension)
            try Self.sync(fd, path: path)
        }
        count += rows.rows
    }

    /// Closes the file (every append is already durable).
    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    private static func writeHeader(fd: Int32, path: String, rows: Int, dimension: Int) throws {
        let header = NumpyHeader(elementType: .float32, rows: rows, columns: dimension, dataOffset: NumpyHeader.writerHeaderLength).encoded()
        let written = header.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, 0) }
        guard written == header.count else {
            throw VectorFileError(path: path, offset: 0, problem: "rewriting the .npy header failed: \(FileIO.errnoText())")
        }
    }

    private static func sync(_ fd: Int32, path: String) throws {
        guard fsync(fd) == 0 else { throw VectorFileError(path: path, problem: "fsync failed: \(FileIO.errnoText())") }
    }
}
