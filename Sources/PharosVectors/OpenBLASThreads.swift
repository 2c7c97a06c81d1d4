import Foundation

/// Sets OpenBLAS up before it does any work: no thread pool, and kernels that fit the CPU.
///
/// Pharos parallelises above BLAS, so OpenBLAS's pool is never used; but the pthread build
/// starts it when the library loads, before `main`, and its idle threads spin on
/// `sched_yield` for a while, which took a quarter of the throughput of a 2-thread search on
/// 2 cores. Only `OPENBLAS_NUM_THREADS` set before the process starts prevents the pool.
///
/// Debian's OpenBLAS 0.3.21 picks its kernels at load time from the CPU model, and a CPU newer
/// than it knows gets its generic "Prescott" (SSE3) kernels: on this project's machines (a
/// Xeon with AVX-512) SGEMM then runs at 21 GFLOP/s a core instead of 118 with the SkylakeX
/// kernels, and the network's forward pass several times slower. Only `OPENBLAS_CORETYPE` set
/// before the process starts changes the choice.
///
/// So the command re-executes itself once with what is missing set; a user's own settings are
/// respected, and a CPU OpenBLAS recognised keeps its choice.
public enum OpenBLASThreads {
    /// Kernel sets OpenBLAS falls back to when it does not know a CPU (no AVX2 in any).
    static let fallbackCores: Set<String> = ["Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Sandybridge", "Atom"]

    /// Re-executes the current process with `OPENBLAS_NUM_THREADS=1` unless it is set, and with
    /// `OPENBLAS_CORETYPE` naming the kernels the CPU supports when OpenBLAS fell back to generic
    /// ones and the variable is unset. Call first thing in `main`.
    public static func pinBeforeLoad() {
        let environment = ProcessInfo.processInfo.environment
        var changed = false
        if environment["OPENBLAS_NUM_THREADS"] == nil {
            setenv("OPENBLAS_NUM_THREADS", "1", 1)
            changed = true
        }
        // /proc/cpuinfo is read only when OpenBLAS fell back, not at every start.
        if environment["OPENBLAS_CORETYPE"] == nil, fallbackCores.contains(BLAS.coreName),
           let core = coreTypeFitting(current: BLAS.coreName, cpuFlags: cpuFlags()) {
            setenv("OPENBLAS_CORETYPE", core, 1)
            changed = true
        }
        guard changed else { return }
        let arguments = CommandLine.arguments
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        execv("/proc/self/exe", &argv)
        // exec failed (no /proc): carry on as loaded; results are the same, only slower.
    }

    /// The kernels to ask for when OpenBLAS chose `current`, on a CPU with `cpuFlags` (as
    /// /proc/cpuinfo lists them: the kernel lists AVX-512 only when the OS saves its state), or
    /// nil to keep its choice.
    static func coreTypeFitting(current: String, cpuFlags: Set<String>) -> String? {
        guard fallbackCores.contains(current) else { return nil }
        if cpuFlags.isSuperset(of: ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"]) { return "SkylakeX" }
        if cpuFlags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
        return nil
    }

    /// The CPU's feature flags from /proc/cpuinfo (empty when unreadable).
    static func cpuFlags() -> Set<String> {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
              let colon = line.firstIndex(of: ":") else { return [] }
        return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
    }
}
