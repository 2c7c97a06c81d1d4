/// How similarity is measured.
public enum Metric: String, Sendable, CaseIterable {
    /// Inner product (cosine on L2-normalised descriptors): larger scores are better.
    case innerProduct = "ip"
    /// Squared Euclidean distance: smaller scores are better.
    case l2 = "l2"

    /// Converts an internal distance (always "smaller is better") to the user-facing score.
    @inline(__always) public func score(fromDistance d: Float) -> Float { self == .innerProduct ? -d : d }
}
