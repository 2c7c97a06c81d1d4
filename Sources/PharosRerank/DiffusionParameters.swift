/// The settings of a diffusion re-ranking (Iscen et al., CVPR 2017, "Efficient Diffusion on
/// Region Manifolds"); the defaults are PharosWire's `SearchRerank.standardDiffusion`. Requests are held to their ranges
/// by `SearchRerank.problem` (PharosWire), online and offline alike.
public struct DiffusionParameters: Sendable, Equatable {
    /// Hits of the first search the graph is built over (K).
    public var shortlist: Int
    /// Neighbours per node of the k-NN graph, and of the query's start vector (k).
    public var neighbours: Int
    /// The random walk's continuation probability, in (0, 1).
    public var alpha: Float
    /// The power affinities are raised to (larger: only close neighbours count).
    public var gamma: Float

    /// Conjugate-gradient steps at most (the paper's choice).
    public static let maximumIterations = 20
    /// The relative residual the solve stops at.
    public static let tolerance = 1e-6

    /// Settings; see the properties.
    public init(shortlist: Int, neighbours: Int, alpha: Float, gamma: Float) {
        self.shortlist = shortlist
        self.neighbours = neighbours
        self.alpha = alpha
        self.gamma = gamma
    }
}
