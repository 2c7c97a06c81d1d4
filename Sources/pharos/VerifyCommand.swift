import ArgumentParser
import Foundation
import PharosCluster
import PharosCommandLine
import PharosRerank

/// `pharos verify`: geometric verification of photo pairs from their local features, with
/// the matches, inliers and model, to see why a candidate was (or was not) verified.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Verify photo pairs geometrically from their local features (pharos extract --local).",
        discussion: """
            For each --candidate: the putative matches (mutual nearest neighbours passing the ratio \
            test), the inliers of the RANSAC model and the model (x' = a x + b y + tx, y' = c x + d y + ty, \
            in pixels of the images as extracted). Exit status 0 when every candidate verified \
            (at least the minimum inliers), 1 otherwise.
            """)

    @Option(help: "Local features (PREFIX.local of pharos extract --local); repeatable.") var local: [String] = []
    @Option(help: "The query photo's key.") var query: String
    @Option(help: "A candidate photo's key (repeatable).") var candidate: [String] = []
    @Option(help: "Verification settings: shortlist, inliers, threshold, ratio, model, keypoints, iterations (as --rerank verify:...).")
    var settings: String = ""
    @Flag(help: "One JSON object per candidate, with the inlier pairs ([query x, y, candidate x, y]).") var json = false

    func validate() throws {
        guard !local.isEmpty else { throw ValidationError("give --local FILE (the PREFIX.local of pharos extract --local)") }
        guard !candidate.isEmpty else { throw ValidationError("give --candidate KEY (repeatable)") }
        _ = try parameters()
    }

    func parameters() throws -> VerificationParameters {
        let spelled = settings.isEmpty ? "verify" : "verify:" + settings
        do {
            return try parseRerankPlan(spelled, k: 1).verification ?? VerificationParameters()
        } catch let error as ValidationError {
            // The parser names --rerank; here the settings came as --settings.
            throw ValidationError(error.message.replacingOccurrences(of: "--rerank \(spelled)", with: "--settings \(settings)"))
        }
    }

    func run() throws {
        let parameters = try parameters()
        let catalog = try LocalFeatureCatalog(files: local, keypoints: parameters.maximumKeypoints)
        guard let q = catalog.features[query] else { throw LocalFeatureCatalogError(query: query) }
        var allVerified = true
        for key in candidate {
            guard let c = catalog.features[key] else {
                throw ValidationError("candidate \(key.debugDescription) has no local features in the --local files")
            }
            let result = GeometricVerification.verify(q, c, parameters: parameters)
            let verified = result.inliers.count >= parameters.minimumInliers
            allVerified = allVerified && verified
            if json {
                var line: [String: Any] = ["query": query, "candidate": key, "query_keypoints": q.count, "candidate_keypoints": c.count,
                                           "matches": result.matches.count, "inliers": result.inliers.count, "verified": verified,
                                           "inlier_pairs": result.inliers.map { [q.x[$0.query], q.y[$0.query], c.x[$0.candidate], c.y[$0.candidate]].map(Double.init) }]
                if let t = result.transform { line["model"] = ["a": t.a, "b": t.b, "c": t.c, "d": t.d, "tx": t.tx, "ty": t.ty] }
                try JSONLines.print([line])
            } else {
                let model = result.transform.map { t in String(format: "x' = %.3f x %+.3f y %+.1f, y' = %.3f x %+.3f y %+.1f", t.a, t.b, t.tx, t.c, t.d, t.ty) } ?? "no model"
                print("\(key): \(result.inliers.count) inliers of \(result.matches.count) matches (\(verified ? "verified" : "not verified"), at least \(parameters.minimumInliers)); \(model)")
            }
        }
        if !allVerified { throw ExitCode.failure }
    }
}
