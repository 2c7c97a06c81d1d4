/// The settings of geometric verification (`GeometricVerification`), each with its limits.
public struct VerificationParameters: Sendable, Equatable {
    /// The model fitted between two photos' keypoints.
    public enum Model: String, Sendable, CaseIterable {
        /// Scale, rotation and translation (2 correspondences a sample).
        case similarity
        /// Any map keeping parallel lines parallel (3 a sample): DELF's choice, closer to a
        /// change of viewpoint on a planar facade.
        case affine

        /// Correspondences that determine the model.
        public var sampleSize: Int { self == .similarity ? 2 : 3 }
    }

    /// Candidates verified, the best of the global ranking (DELF and the revisited protocol: 100).
    public var shortlist = 100
    /// Lowe's ratio test: a match is kept when its descriptor distance is below `ratio` times
    /// the distance to the second-nearest candidate feature (and the two are mutual nearest).
    public var ratio: Float = 0.9
    /// Inlier threshold: the distance in pixels, of the images as extracted, between a
    /// candidate keypoint and the model's image of its query keypoint.
    public var threshold: Float = 16
    /// The model.
    public var model = Model.affine
    /// A candidate with at least this many inliers counts as verified and goes before every
    /// one without; fewer are taken as chance agreement.
    public var minimumInliers = 12
    /// Keypoints of each photo used, the best scored first (the cost is their product per pair).
    public var maximumKeypoints = 500
    /// RANSAC's sample draws at most (adaptive below it: enough for `confidence` of drawing one
    /// all-inlier sample at the best inlier ratio found so far).
    public var maximumIterations = 1000
    /// RANSAC's confidence.
    public var confidence = 0.999
    /// The random draws' seed: the same inputs and seed give the same inliers.
    public var seed: UInt64 = 0x5EED_0F_DE1F

    /// Defaults (`shortlist` 100, `ratio` 0.9, 16 pixels, affine, 12 inliers, 500 keypoints).
    public init(shortlist: Int = 100, ratio: Float = 0.9, threshold: Float = 16, model: Model = .affine, minimumInliers: Int = 12,
                maximumKeypoints: Int = 500, maximumIterations: Int = 1000, confidence: Double = 0.999, seed: UInt64 = 0x5EED_0F_DE1F) {
        self.shortlist = shortlist
        self.ratio = ratio
        self.threshold = threshold
        self.model = model
        self.minimumInliers = minimumInliers
        self.maximumKeypoints = maximumKeypoints
        self.maximumIterations = maximumIterations
        self.confidence = confidence
        self.seed = seed
    }

    /// The longest shortlist verified per query.
    public static let maximumShortlist = 1_000
    /// The most keypoints per photo (a pair costs their product in descriptor comparisons).
    public static let keypointLimit = 4_096
    /// The most RANSAC draws per pair.
    public static let iterationLimit = 100_000

    /// What is wrong with these settings (naming the setting), or nil when they are valid.
    public func problem() -> String? {
        guard (1...Self.maximumShortlist).contains(shortlist) else { return "shortlist is \(shortlist), allowed 1...\(Self.maximumShortlist)" }
        guard ratio.isFinite, ratio > 0, ratio <= 1 else { return "ratio is \(ratio), allowed above 0, at most 1" }
        guard threshold.isFinite, threshold > 0, threshold <= 10_000 else { return "threshold is \(threshold) pixels, allowed above 0, at most 10000" }
        guard (model.sampleSize...100_000).contains(minimumInliers) else {
            return "inliers is \(minimumInliers), allowed \(model.sampleSize) (the \(model.rawValue) model's sample)...100000"
        }
        guard (model.sampleSize...Self.keypointLimit).contains(maximumKeypoints) else {
            return "keypoints is \(maximumKeypoints), allowed \(model.sampleSize)...\(Self.keypointLimit)"
        }
        guard (1...Self.iterationLimit).contains(maximumIterations) else { return "iterations is \(maximumIterations), allowed 1...\(Self.iterationLimit)" }
        guard confidence.isFinite, confidence > 0, confidence < 1 else { return "confidence is \(confidence), allowed strictly between 0 and 1" }
        return nil
    }
}
