import PharosDurability
/// The header of a two-dimensional `.npy` file.
struct NumpyHeader: Equatable {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // "\x93NUMPY"
    /// Header bytes reserved by the writer, so the shape can be rewritten in place at close.
    static let writerHeaderLength = 128

    var elementType: VectorElementType
    var rows: Int
    var columns: Int
    /// Byte offset of the first element.
    var dataOffset: Int

    /// Parses the header at the start of `fd`. With `allowTrailingBytes`, bytes after the array
    /// the header describes are accepted (rows an appender wrote before it could record them).
    static func read(fd: Int32, path: String, fileSize: Int, allowTrailingBytes: Bool = false) throws -> NumpyHeader {
        guard fileSize >= 10 else {
            throw VectorFileError(path: path, offset: 0, problem: "file of \(fileSize) bytes is too short for a .npy header (at least 10)")
        }
        let prefix = try FileIO.readBytes(fd, path: path, count: 10, offset: 0)
        guard Array(prefix[0..<6]) == magic else {
            throw VectorFileError(path: path, offset: 0, problem: "bad magic: expected \\x93NUMPY, found \(prefix[0..<6].map { String(format2: $0) }.joined(separator: " "))")
        }
        let major = prefix[6]
        let headerLength: Int
        let headerStart: Int
        switch major {
        case 1:
            headerLength = Int(prefix[8]) | Int(prefix[9]) << 8
            headerStart = 10
        case 2, 3:
            let more = try FileIO.readBytes(fd, path: path, count: 12, offset: 0)
            headerLength = Int(more[8]) | Int(more[9]) << 8 | Int(more[10]) << 16 | Int(more[11]) << 24
            headerStart = 12
        default:
            throw VectorFileError(path: path, offset: 6, problem: "unsupported .npy format version \(major).\(prefix[7]): expected 1.x, 2.x or 3.x")
        }
        guard headerStart + headerLength <= fileSize, headerLength < 1 << 20 else {
            throw VectorFileError(path: path, offset: 8, problem: "header length \(headerLength) runs past the end of the \(fileSize)-byte file")
        }
        let bytes = try FileIO.readBytes(fd, path: path, count: headerLength, offset: headerStart)
        let text = String(decoding: bytes, as: UTF8.self)
        func field(_ name: String) throws -> Substring {
            guard let key = text.range(of: "'\(name)':") else {
                throw VectorFileError(path: path, offset: headerStart, problem: "header has no '\(name)' field: \(text.trimmingTrailingSpaces)")
            }
            return text[key.upperBound...].drop(while: { $0 == " " })
        }
        let descrField = try field("descr")
        guard descrField.first == "'", let close = descrField.dropFirst().firstIndex(of: "'") else {
            throw VectorFileError(path: path, offset: headerStart, problem: "malformed 'descr' in header: \(text.trimmingTrailingSpaces)")
        }
        let descr = String(descrField[descrField.index(after: descrField.startIndex)..<close])
        guard let elementType = VectorElementType(numpyDescriptor: descr) else {
            throw VectorFileError(path: path, offset: headerStart, problem: "unsupported dtype '\(descr)': expected '<f4' (float32), '<f2' (float16), '|u1' (uint8) or '<i4' (int32)")
        }
        if try field("fortran_order").hasPrefix("True") {
            throw VectorFileError(path: path, offset: headerStart, problem: "Fortran-ordered array: expected C order (fortran_order False)")
        }
        let shapeField = try field("shape")
        guard shapeField.first == "(", let closeParen = shapeField.firstIndex(of: ")") else {
            throw VectorFileError(path: path, offset: headerStart, problem: "malformed 'shape' in header: \(text.trimmingTrailingSpaces)")
        }
        let dims = shapeField[shapeField.index(after: shapeField.startIndex)..<closeParen]
            .split(separator: ",").map { $0.trimmingCharacters(in: " ") }.filter { !$0.isEmpty }
        let parsed = dims.compactMap { Int($0) }
        guard parsed.count == dims.count, parsed.count == 2 || parsed.count == 1, parsed.allSatisfy({ $0 >= 0 }) else {
            throw VectorFileError(path: path, offset: headerStart, problem: "shape (\(dims.joined(separator: ", "))): expected a two-dimensional (rows, dimension) array")
        }
        let rows = parsed[0], columns = parsed.count == 2 ? parsed[1] : 1
        let dataOffset = headerStart + headerLength
        let expected = dataOffset + rows * columns * elementType.size
        guard fileSize >= expected else {
            throw VectorFileError(path: path, offset: fileSize, problem: "truncated: shape (\(rows), \(columns)) of \(descr) needs \(expected) bytes, file has \(fileSize)")
        }
        guard fileSize == expected || allowTrailingBytes else {
            throw VectorFileError(path: path, offset: expected, problem: "\(fileSize - expected) trailing bytes after the (\(rows), \(columns)) array")
        }
        return NumpyHeader(elementType: elementType, rows: rows, columns: columns, dataOffset: dataOffset)
    }

    /// The header bytes for this shape, padded to `writerHeaderLength` (version 1.0).
    func encoded() -> [UInt8] {
        var dict = "{'descr': '\(elementType.numpyDescriptor)', 'fortran_order': False, 'shape': (\(rows), \(columns)), }"
        let total = NumpyHeader.writerHeaderLength
        let bodyLength = total - 10
        while dict.utf8.count < bodyLength - 1 { dict += " " }
        dict += "\n"
        precondition(dict.utf8.count == bodyLength, "npy header too long for shape (\(rows), \(columns))")
        var out = NumpyHeader.magic + [1, 0, UInt8(bodyLength & 0xff), UInt8(bodyLength >> 8)]
        out += Array(dict.utf8)
        return out
    }
}

private extension String {
    init(format2 byte: UInt8) {
        let hex = String(byte, radix: 16)
        self = hex.count == 1 ? "0x0" + hex : "0x" + hex
    }

    var trimmingTrailingSpaces: String {
        var s = Substring(self)
        while let last = s.last, last == " " || last == "\n" { s = s.dropLast() }
        return String(s)
    }
}

private extension Substring {
    func trimmingCharacters(in set: Character) -> String {
        var s = self
        while s.first == set { s = s.dropFirst() }
        while s.last == set { s = s.dropLast() }
        return String(s)
    }
}
