import PharosDescriptors
import PharosRerank

/// The local features of a collection's photos by key, read from the files `pharos extract
/// --local` writes, for verifying shortlists where they are (offline: `pharos eval --database
/// --local`). Each photo keeps its `keypoints` best-scored features only (verification reads
/// no more), so a catalog of n photos holds at most `n x keypoints x (dimension + 2)` floats.
public struct LocalFeatureCatalog: Sendable {
    /// Features by key.
    public let features: [String: VerificationFeatures]

    /// Reads `files` in order; a key in several files keeps its first features. Errors name
    /// the file and the image: a damaged file, descriptors of another dimension than the first
    /// photo's (features of two extractions cannot be compared), non-finite values.
    public init(files: [String], keypoints: Int) throws {
        var features: [String: VerificationFeatures] = [:]
        var dimension: (value: Int, source: String)?
        for file in files {
            for (key, local) in try LocalFeatureFile.read(file) where features[key] == nil {
                guard !local.keypoints.isEmpty else {
                    features[key] = VerificationFeatures(x: [], y: [], descriptors: [], dimension: Swift.max(1, local.dimension))
                    continue
                }
                if let dimension, dimension.value != local.dimension {
                    throw LocalFeatureCatalogError(problem: "\(file), image \(key.debugDescription): \(local.dimension)-D descriptors, \(dimension.source) has \(dimension.value)-D (local features of two extractions cannot be compared)")
                }
                dimension = dimension ?? (local.dimension, "\(file), image \(key.debugDescription)")
                let kept = Swift.min(local.keypoints.count, Swift.max(0, keypoints))
                guard local.keypoints.prefix(kept).allSatisfy({ $0.x.isFinite && $0.y.isFinite }),
                      local.descriptors.prefix(kept * local.dimension).allSatisfy(\.isFinite) else {
                    throw LocalFeatureCatalogError(problem: "\(file), image \(key.debugDescription): non-finite keypoint or descriptor values")
                }
                features[key] = VerificationFeatures(x: local.keypoints.prefix(kept).map(\.x), y: local.keypoints.prefix(kept).map(\.y),
                                                     descriptors: Array(local.descriptors.prefix(kept * local.dimension)),
                                                     dimension: Swift.max(1, local.dimension))
            }
        }
        self.features = features
    }

    /// `shortlist` (keys, best first) re-ordered by verification against the photo `query`:
    /// its first `parameters.shortlist` verified (see `GeometricVerification`), the rest after
    /// them in their order. A candidate without features counts no inliers; a query without
    /// features is an error naming it.
    public func verified(_ shortlist: [String], query: String, parameters: VerificationParameters, threads: Int) throws -> [String] {
        guard let features = features[query] else { throw LocalFeatureCatalogError(query: query) }
        let verified = Array(shortlist.prefix(parameters.shortlist))
        let order = GeometricVerification.rerank(query: features, candidates: verified.map { self.features[$0] },
                                                 parameters: parameters, threads: threads)
        return order.map { verified[$0.index] } + shortlist.dropFirst(verified.count)
    }
}

/// Local features that cannot be used: a query without any, or files that disagree.
public struct LocalFeatureCatalogError: Error, CustomStringConvertible {
    /// What is wrong, naming the file or the key.
    public var problem: String
    /// An error saying `problem`.
    public init(problem: String) { self.problem = problem }
    /// A query whose photo has no local features in the files.
    public init(query: String) {
        problem = "query \(query.debugDescription) has no local features in the --local files (pharos extract --local describes it)"
    }
    public var description: String { problem }
}
