/// The on-disk vector formats Pharos reads and writes.
public enum VectorFileFormat: String, Sendable, CaseIterable {
    /// TEXMEX `.fvecs`: per row a little-endian int32 dimension, then that many float32.
    case fvecs
    /// TEXMEX `.ivecs`: per row an int32 dimension, then that many int32 (neighbour ids).
    case ivecs
    /// TEXMEX `.bvecs`: per row an int32 dimension, then that many uint8.
    case bvecs
    /// NumPy `.npy` (format 1.0-3.0), two-dimensional, C order: float32, float16, uint8 or int32.
    case npy

    /// The format named by a file's extension.
    public init(path: String) throws {
        let ext = path.split(separator: ".").last.map { $0.lowercased() } ?? ""
        guard let format = VectorFileFormat(rawValue: ext) else {
            throw VectorFileError(path: path, problem: "unknown vector file extension '.\(ext)': expected one of .fvecs, .ivecs, .bvecs, .npy")
        }
        self = format
    }
}

/// Element types a vector file may hold.
public enum VectorElementType: String, Sendable {
    case float32, float16, uint8, int32

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float32, .int32: return 4
        case .float16: return 2
        case .uint8: return 1
        }
    }

    /// The NumPy `descr` string for this type (little-endian).
    public var numpyDescriptor: String {
        switch self {
        case .float32: return "<f4"
        case .float16: return "<f2"
        case .uint8: return "|u1"
        case .int32: return "<i4"
        }
    }

    /// The type named by a NumPy `descr` string, if supported.
    public init?(numpyDescriptor: String) {
        switch numpyDescriptor {
        case "<f4", "=f4": self = .float32
        case "<f2", "=f2": self = .float16
        case "|u1", "<u1", "=u1", "u1": self = .uint8
        case "<i4", "=i4": self = .int32
        default: return nil
        }
    }
}
