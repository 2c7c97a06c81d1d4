/// A dense row-major matrix of `Float`: the unit in which vectors move through Pharos.
///
/// Row `i` occupies `values[i * columns ..< (i + 1) * columns]`.
public struct Matrix: Sendable, Equatable {
    /// Number of vectors.
    public let rows: Int
    /// Dimension of each vector.
    public let columns: Int
    /// Row-major storage, `rows * columns` values.
    public var values: [Float]

    /// Creates a matrix over existing row-major values.
    /// - Precondition: `values.count == rows * columns`.
    public init(rows: Int, columns: Int, values: [Float]) {
        precondition(rows >= 0 && columns >= 0, "negative matrix shape \(rows)x\(columns)")
        precondition(values.count == rows * columns, "matrix \(rows)x\(columns) given \(values.count) values")
        self.rows = rows
        self.columns = columns
        self.values = values
    }

    /// Creates a zero-filled matrix.
    public init(rows: Int, columns: Int) {
        self.init(rows: rows, columns: columns, values: [Float](repeating: 0, count: rows * columns))
    }

    /// Creates a matrix from equally long rows.
    public init(rowArrays: [[Float]]) {
        let columns = rowArrays.first?.count ?? 0
        precondition(rowArrays.allSatisfy { $0.count == columns }, "rows of unequal length")
        self.init(rows: rowArrays.count, columns: columns, values: rowArrays.flatMap { $0 })
    }

    /// A copy of row `i`.
    public func row(_ i: Int) -> [Float] {
        precondition(i >= 0 && i < rows, "row \(i) out of 0..<\(rows)")
        return Array(values[i * columns ..< (i + 1) * columns])
    }

    /// A new matrix made of rows `range`.
    public func rows(_ range: Range<Int>) -> Matrix {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "rows \(range) out of 0..<\(rows)")
        return Matrix(rows: range.count, columns: columns,
                      values: Array(values[range.lowerBound * columns ..< range.upperBound * columns]))
    }

    /// A new matrix made of the given rows, in the given order.
    public func gathering(rows indices: [Int]) -> Matrix {
        var out = [Float](repeating: 0, count: indices.count * columns)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for (k, i) in indices.enumerated() {
                    precondition(i >= 0 && i < rows, "row \(i) out of 0..<\(rows)")
                    dst.baseAddress!.advanced(by: k * columns)
                        .update(from: src.baseAddress!.advanced(by: i * columns), count: columns)
                }
            }
        }
        return Matrix(rows: indices.count, columns: columns, values: out)
    }

    /// Appends the rows of `other`, which must have the same number of columns.
    public mutating func append(contentsOf other: Matrix) {
        precondition(other.columns == columns || rows == 0, "appending \(other.columns)-D rows to \(columns)-D matrix")
        if rows == 0 {
            self = other
            return
        }
        values.append(contentsOf: other.values)
        self = Matrix(rows: rows + other.rows, columns: columns, values: values)
    }

    /// The index of the first non-finite value (NaN or infinity), if any, as (row, column).
    public func firstNonFinite() -> (row: Int, column: Int)? {
        guard let flat = values.firstIndex(where: { !$0.isFinite }) else { return nil }
        return (flat / Swift.max(columns, 1), flat % Swift.max(columns, 1))
    }
}
