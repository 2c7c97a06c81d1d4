import PharosVectors

/// Per-call search settings. They are never stored on the index, so concurrent searches with
/// different settings cannot interfere.
public struct SearchParameters: Sendable, Equatable {
    /// Inverted lists to visit per query (IVF indexes); clamped to the number of lists.
    public var nprobe: Int
    /// With refine codes: candidates re-ranked = `refineFactor * k`.
    public var refineFactor: Int
    /// Worker threads for this call (queries are split into fixed chunks, so results do not
    /// depend on it).
    public var threads: Int

    /// Upper bound on `k` for one search: deep enough for a whole evaluation ranking
    /// (revisited Oxford ranks 4,993 images); the protocol bounds queries x k per request.
    public static let maximumK = 65536
    /// Upper bound on `nprobe`.
    public static let maximumNprobe = 65536

    /// Creates parameters; defaults follow faiss (nprobe 1, k_factor 1) except the refine
    /// factor, whose useful default is 4.
    public init(nprobe: Int = 1, refineFactor: Int = 4, threads: Int = Parallel.defaultThreads) {
        self.nprobe = nprobe
        self.refineFactor = refineFactor
        self.threads = threads
    }

    func validate(k: Int) throws {
        guard k >= 1, k <= SearchParameters.maximumK else {
            throw IndexError.invalidParameter(name: "k", value: "\(k)", allowed: "1...\(SearchParameters.maximumK)")
        }
        guard nprobe >= 1, nprobe <= SearchParameters.maximumNprobe else {
            throw IndexError.invalidParameter(name: "nprobe", value: "\(nprobe)", allowed: "1...\(SearchParameters.maximumNprobe)")
        }
        guard refineFactor >= 1, refineFactor <= 256 else {
            throw IndexError.invalidParameter(name: "refineFactor", value: "\(refineFactor)", allowed: "1...256")
        }
        guard threads >= 1, threads <= 1024 else {
            throw IndexError.invalidParameter(name: "threads", value: "\(threads)", allowed: "1...1024")
        }
    }
}
