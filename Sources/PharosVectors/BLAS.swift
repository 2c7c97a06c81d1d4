import COpenBLAS

/// Thin, safe wrappers over the OpenBLAS routines Pharos uses.
///
/// Pharos parallelises above BLAS (fixed chunks of queries or points, see `Parallel`), so the
/// first use pins OpenBLAS to one thread: nested threading oversubscribes two cores, and a
/// BLAS-internal split that depends on the thread count would make results depend on it too.
public enum BLAS {
    /// The kernels OpenBLAS chose for this CPU ("Haswell", "SkylakeX", ...). OpenBLAS 0.3.21
    /// does not know every newer CPU and then falls back to "Prescott" (SSE3, several times
    /// slower); `OPENBLAS_CORETYPE` set in the environment overrides its choice.
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    private static let pinned: Void = { openblas_set_num_threads(1) }()

    /// Makes sure OpenBLAS runs single-threaded in the calling thread.
    @inline(__always) public static func prepare() { _ = pinned }

    /// `C[m x n] = alpha * A[m x k] * B[n x k]^T + beta * C`: row-major, B given by rows.
    /// This is the shape of every "queries x database" similarity block.
    public static func gemmABt(
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        prepare()
        guard m > 0, n > 0 else { return }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// `C[m x n] = alpha * A[m x k] * B[k x n] + beta * C`, row-major.
    public static func gemm(
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        prepare()
        guard m > 0, n > 0 else { return }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// `C[m x n] = alpha * A[k x m]^T * B[k x n] + beta * C`, row-major (covariances, Procrustes).
    public static func gemmAtB(
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        prepare()
        guard m > 0, n > 0 else { return }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// `y[m] = alpha * A[m x n] * x + beta * y`, row-major.
    public static func gemv(
        m: Int, n: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        x: UnsafePointer<Float>, beta: Float = 0, y: UnsafeMutablePointer<Float>
    ) {
        prepare()
        guard m > 0 else { return }
        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(m), Int32(n), alpha, a, Int32(lda), x, 1, beta, y, 1)
    }

    /// Matrix product of whole matrices: `a * b^T` (rows of both are vectors).
    public static func multiplyTransposed(_ a: Matrix, _ b: Matrix) -> Matrix {
        precondition(a.columns == b.columns, "dimension mismatch \(a.columns) vs \(b.columns)")
        var out = Matrix(rows: a.rows, columns: b.rows)
        guard !a.values.isEmpty, !b.values.isEmpty else { return out }
        a.values.withUnsafeBufferPointer { pa in
            b.values.withUnsafeBufferPointer { pb in
                out.values.withUnsafeMutableBufferPointer { pc in
                    gemmABt(m: a.rows, n: b.rows, k: a.columns, a: pa.baseAddress!, lda: a.columns,
                            b: pb.baseAddress!, ldb: b.columns, c: pc.baseAddress!, ldc: b.rows)
                }
            }
        }
        return out
    }

    /// Matrix product `a * b`.
    public static func multiply(_ a: Matrix, _ b: Matrix) -> Matrix {
        precondition(a.columns == b.rows, "inner dimension mismatch \(a.columns) vs \(b.rows)")
        var out = Matrix(rows: a.rows, columns: b.columns)
        guard !a.values.isEmpty, !b.values.isEmpty else { return out }
        a.values.withUnsafeBufferPointer { pa in
            b.values.withUnsafeBufferPointer { pb in
                out.values.withUnsafeMutableBufferPointer { pc in
                    gemm(m: a.rows, n: b.columns, k: a.columns, a: pa.baseAddress!, lda: a.columns,
                         b: pb.baseAddress!, ldb: b.columns, c: pc.baseAddress!, ldc: b.columns)
                }
            }
        }
        return out
    }

    /// `a^T * b` for row-major `a[k x m]`, `b[k x n]`.
    public static func multiplyTransposingFirst(_ a: Matrix, _ b: Matrix) -> Matrix {
        precondition(a.rows == b.rows, "row count mismatch \(a.rows) vs \(b.rows)")
        var out = Matrix(rows: a.columns, columns: b.columns)
        guard !a.values.isEmpty, !b.values.isEmpty else { return out }
        a.values.withUnsafeBufferPointer { pa in
            b.values.withUnsafeBufferPointer { pb in
                out.values.withUnsafeMutableBufferPointer { pc in
                    gemmAtB(m: a.columns, n: b.columns, k: a.rows, a: pa.baseAddress!, lda: a.columns,
                            b: pb.baseAddress!, ldb: b.columns, c: pc.baseAddress!, ldc: b.columns)
                }
            }
        }
        return out
    }
}
