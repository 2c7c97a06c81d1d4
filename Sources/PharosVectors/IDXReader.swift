import Foundation

/// Reads the IDX files of (Fashion-)MNIST: big-endian header, then unsigned bytes.
///
/// Files ending in `.gz` are decompressed through the system's `gzip`, since the Debian
/// package ships them compressed and they are small (tens of MB).
public enum IDXReader {
    /// Reads an IDX file of unsigned bytes with at least two dimensions as a matrix: one row
    /// per item, the remaining dimensions flattened (28x28 images -> 784 columns).
    public static func readImages(path: String) throws -> Matrix {
        let bytes = try load(path)
        guard bytes.count >= 4 else { throw VectorFileError(path: path, offset: 0, problem: "file of \(bytes.count) bytes is too short for an IDX header") }
        guard bytes[0] == 0, bytes[1] == 0 else {
            throw VectorFileError(path: path, offset: 0, problem: "bad IDX magic: expected two zero bytes, found \(bytes[0]) \(bytes[1])")
        }
        guard bytes[2] == 0x08 else {
            throw VectorFileError(path: path, offset: 2, problem: "IDX element type 0x\(String(bytes[2], radix: 16)): expected 0x08 (unsigned byte)")
        }
        let dims = Int(bytes[3])
        guard dims >= 1, bytes.count >= 4 + 4 * dims else {
            throw VectorFileError(path: path, offset: 3, problem: "IDX header declares \(dims) dimensions but the file is too short for them")
        }
        var shape: [Int] = []
        for i in 0..<dims {
            let o = 4 + 4 * i
            shape.append(Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3]))
        }
        let rows = shape[0]
        let columns = shape.dropFirst().reduce(1, *)
        let start = 4 + 4 * dims
        guard bytes.count == start + rows * columns else {
            throw VectorFileError(path: path, offset: bytes.count, problem: "IDX shape \(shape) needs \(start + rows * columns) bytes, file has \(bytes.count)")
        }
        var values = [Float](repeating: 0, count: rows * columns)
        for i in 0..<(rows * columns) { values[i] = Float(bytes[start + i]) }
        return Matrix(rows: rows, columns: columns, values: values)
    }

    private static func load(_ path: String) throws -> [UInt8] {
        guard FileManager.default.fileExists(atPath: path) else {
            throw VectorFileError(path: path, problem: "no such file")
        }
        guard path.hasSuffix(".gz") else {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw VectorFileError(path: path, problem: "cannot read")
            }
            return [UInt8](data)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/gzip")
        process.arguments = ["-dc", path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw VectorFileError(path: path, problem: "gzip -dc failed with status \(process.terminationStatus)")
        }
        return [UInt8](data)
    }
}
