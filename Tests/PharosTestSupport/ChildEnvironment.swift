import Foundation
import PharosVectors

/// The environment for programs a test starts: OpenBLAS on one thread, and on the kernels this
/// test process loaded, so that a child's GEMMs round exactly as the test's own (the commands
/// would otherwise pick better kernels than an unknown CPU's fallback, see `OpenBLASThreads`,
/// and scores compared bit for bit would differ in the last bits). A setting the environment
/// already makes is kept.
public enum ChildEnvironment {
    /// This process's environment with the OpenBLAS settings children should run with.
    public static func forChildren() -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_NUM_THREADS"] = "1"
        environment["OPENBLAS_CORETYPE"] = environment["OPENBLAS_CORETYPE"] ?? BLAS.coreName
        return environment
    }
}
