import PharosKernels

/// Batch vector arithmetic used by indexes, training and evaluation.
public enum VectorMath {
    /// Squared L2 norm of every row, in fixed chunks on up to `threads` workers.
    public static func squaredNorms(_ m: Matrix, threads: Int = 1) -> [Float] {
        var out = [Float](repeating: 0, count: m.rows)
        guard m.rows > 0 else { return out }
        let d = m.columns
        out.withSendablePointer { norms in
            m.values.withUnsafeBufferPointer { x in
                let xp = SendablePointer(readOnly: x.baseAddress!)
                Parallel.forEachChunk(count: m.rows, chunkSize: 16384, threads: threads) { chunk in
                    for i in chunk { norms.pointer[i] = pharos_dot(xp.pointer + i * d, xp.pointer + i * d, d) }
                }
            }
        }
        return out
    }

    /// Scales every row to unit L2 norm in place; all-zero rows stay zero.
    public static func normalizeRows(_ m: inout Matrix) {
        let columns = m.columns
        m.values.withUnsafeMutableBufferPointer { p in
            for i in 0..<m.rows {
                let row = p.baseAddress! + i * columns
                let norm = pharos_dot(row, row, columns).squareRoot()
                if norm > 0 {
                    let inv = 1 / norm
                    for j in 0..<columns { row[j] *= inv }
                }
            }
        }
    }

    /// `v` scaled to unit L2 norm (unchanged when its norm is zero).
    public static func normalized(_ v: [Float]) -> [Float] {
        var m = Matrix(rows: 1, columns: v.count, values: v)
        normalizeRows(&m)
        return m.values
    }

    /// Inner product of two vectors of equal length.
    public static func dot(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count, "dimension mismatch \(a.count) vs \(b.count)")
        return pharos_dot(a, b, a.count)
    }

    /// Squared L2 distance of two vectors of equal length.
    public static func squaredL2(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count, "dimension mismatch \(a.count) vs \(b.count)")
        return pharos_l2sq(a, b, a.count)
    }

    /// Pairwise inner products `queries x base` (BLAS).
    public static func innerProducts(_ queries: Matrix, _ base: Matrix) -> Matrix {
        BLAS.multiplyTransposed(queries, base)
    }

    /// Pairwise squared L2 distances `queries x base` via `|q|^2 + |x|^2 - 2 q.x` (BLAS).
    public static func squaredL2Distances(_ queries: Matrix, _ base: Matrix) -> Matrix {
        var out = BLAS.multiplyTransposed(queries, base)
        let qn = squaredNorms(queries), bn = squaredNorms(base)
        for i in 0..<queries.rows {
            for j in 0..<base.rows {
                out.values[i * base.rows + j] = Swift.max(0, qn[i] + bn[j] - 2 * out.values[i * base.rows + j])
            }
        }
        return out
    }

    /// Column means of a matrix.
    public static func columnMeans(_ m: Matrix) -> [Float] {
        var sums = [Double](repeating: 0, count: m.columns)
        for i in 0..<m.rows {
            for j in 0..<m.columns { sums[j] += Double(m.values[i * m.columns + j]) }
        }
        let inv = 1 / Double(Swift.max(m.rows, 1))
        return sums.map { Float($0 * inv) }
    }
}
