import COpenBLAS

/// An error from a LAPACK routine, with the routine's `info` code.
public struct LinearAlgebraError: Error, CustomStringConvertible {
    /// The LAPACK routine that failed.
    public let routine: String
    /// LAPACK's `info` output (negative: bad argument; positive: no convergence).
    public let info: Int32
    public var description: String { "\(routine) failed with info=\(info)" }
}

/// Dense decompositions through OpenBLAS's LAPACK.
public enum LinearAlgebra {
    /// Eigen-decomposition of a symmetric `n x n` matrix.
    /// - Returns: eigenvalues in descending order and the matching eigenvectors as the rows of
    ///   an `n x n` matrix.
    public static func symmetricEigen(_ matrix: Matrix) throws -> (values: [Float], vectors: Matrix) {
        precondition(matrix.rows == matrix.columns, "eigen-decomposition needs a square matrix")
        BLAS.prepare()
        var n = Int32(matrix.rows)
        // Row-major symmetric == column-major symmetric; LAPACK returns eigenvectors as columns
        // (column-major), which read row-major are the rows we want.
        var a = matrix.values
        var w = [Float](repeating: 0, count: matrix.rows)
        var lda = n, info: Int32 = 0
        var jobz = Int8(UInt8(ascii: "V")), uplo = Int8(UInt8(ascii: "U"))
        var lwork: Int32 = -1, liwork: Int32 = -1
        var workQuery: Float = 0
        var iworkQuery: Int32 = 0
        ssyevd_(&jobz, &uplo, &n, &a, &lda, &w, &workQuery, &lwork, &iworkQuery, &liwork, &info, 1, 1)
        guard info == 0 else { throw LinearAlgebraError(routine: "ssyevd", info: info) }
        lwork = Int32(workQuery)
        liwork = iworkQuery
        var work = [Float](repeating: 0, count: Int(lwork))
        var iwork = [Int32](repeating: 0, count: Int(liwork))
        ssyevd_(&jobz, &uplo, &n, &a, &lda, &w, &work, &lwork, &iwork, &liwork, &info, 1, 1)
        guard info == 0 else { throw LinearAlgebraError(routine: "ssyevd", info: info) }
        // Ascending from LAPACK: reverse to descending.
        let count = matrix.rows
        var vectors = [Float](repeating: 0, count: count * count)
        for i in 0..<count {
            let src = count - 1 - i
            for j in 0..<count { vectors[i * count + j] = a[src * count + j] }
        }
        return (w.reversed(), Matrix(rows: count, columns: count, values: vectors))
    }

    /// Thin SVD of an `m x n` matrix: `A = U * diag(S) * Vt`.
    /// - Returns: `u` (m x r), singular values `s` (r, descending) and `vt` (r x n), r = min(m, n).
    public static func svd(_ matrix: Matrix) throws -> (u: Matrix, s: [Float], vt: Matrix) {
        BLAS.prepare()
        let m = matrix.rows, n = matrix.columns, r = Swift.min(m, n)
        // LAPACK is column-major: the row-major A is the column-major A^T (n x m).
        // SVD of A^T = V S U^T, so LAPACK's "U" is our V and its "VT" is our U^T.
        var a = matrix.values
        var rowsT = Int32(n), colsT = Int32(m)
        var lda = Int32(n)
        var s = [Float](repeating: 0, count: r)
        var uT = [Float](repeating: 0, count: n * r)   // column-major n x r == row-major r x n (our Vt)
        var vtT = [Float](repeating: 0, count: r * m)  // column-major r x m == row-major m x r (our U)
        var ldu = Int32(n), ldvt = Int32(r)
        var jobz = Int8(UInt8(ascii: "S"))
        var info: Int32 = 0
        var lwork: Int32 = -1
        var workQuery: Float = 0
        var iwork = [Int32](repeating: 0, count: 8 * r)
        sgesdd_(&jobz, &rowsT, &colsT, &a, &lda, &s, &uT, &ldu, &vtT, &ldvt, &workQuery, &lwork, &iwork, &info, 1)
        guard info == 0 else { throw LinearAlgebraError(routine: "sgesdd", info: info) }
        lwork = Int32(workQuery)
        var work = [Float](repeating: 0, count: Int(lwork))
        sgesdd_(&jobz, &rowsT, &colsT, &a, &lda, &s, &uT, &ldu, &vtT, &ldvt, &work, &lwork, &iwork, &info, 1)
        guard info == 0 else { throw LinearAlgebraError(routine: "sgesdd", info: info) }
        return (Matrix(rows: m, columns: r, values: vtT), s, Matrix(rows: r, columns: n, values: uT))
    }
}
