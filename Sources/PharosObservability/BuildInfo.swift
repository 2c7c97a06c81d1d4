#if canImport(Glibc)
import Glibc
#endif

/// What a binary is and where it runs: `--version` prints it and `pharos_build_info` carries it.
public enum BuildInfo {
    /// The release version of Pharos.
    public static let version = "0.3.0"

    /// The git commit built (`-dirty` when tracked files differed; `unknown` outside git).
    public static let commit = buildCommit

    /// The kernel release the process runs on (`uname -r`).
    public static var kernel: String {
        var names = utsname()
        guard uname(&names) == 0 else { return "unknown" }
        return withUnsafeBytes(of: &names.release) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// The line `--version` prints: `PROGRAM VERSION (commit COMMIT)`.
    public static func versionLine(program: String) -> String {
        "\(program) \(version) (commit \(commit))"
    }

    /// Registers `pharos_build_info` (value 1, the facts as labels) in `metrics`.
    public static func register(in metrics: MetricsRegistry, program: String) {
        metrics.gauge("pharos_build_info", labels: [("program", program), ("version", version), ("commit", commit), ("kernel", kernel)],
                      help: "Always 1; the labels say which build runs where.").set(1.0)
    }
}
