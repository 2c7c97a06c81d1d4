import Foundation

/// Keeps OpenBLAS from starting its own thread pool.
///
/// Pharos parallelises above BLAS, so OpenBLAS's pool is never used; but the pthread build
/// starts it when the library loads, before `main`, and its idle threads spin on
/// `sched_yield` for a while, which took a quarter of the throughput of a 2-thread search on
/// 2 cores. Only `OPENBLAS_NUM_THREADS` set before the process starts prevents the pool, so
/// the command re-executes itself once with it set (a user's own setting is respected).
public enum OpenBLASThreads {
    /// Re-executes the current process with `OPENBLAS_NUM_THREADS=1` unless it is set.
    /// Call first thing in `main`.
    public static func pinBeforeLoad() {
        guard ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] == nil else { return }
        setenv("OPENBLAS_NUM_THREADS", "1", 1)
        let arguments = CommandLine.arguments
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        execv("/proc/self/exe", &argv)
        // exec failed (no /proc): carry on with the pool; results are the same, only slower.
    }
}
