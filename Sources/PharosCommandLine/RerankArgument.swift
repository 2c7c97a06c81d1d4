import ArgumentParser
import PharosRerank
import PharosWire

/// What a `--rerank` argument asks for: the re-ranking a search request carries (diffusion,
/// run by the coordinator) and geometric verification of the shortlist after it, which runs
/// where the local features are (offline, `pharos eval --database --local`, until the shards
/// keep local features).
public struct RerankPlan: Sendable, Equatable {
    /// The search request's re-ranking.
    public var search: SearchRerank
    /// Geometric verification of the (re-ranked) shortlist, nil when not asked for.
    public var verification: VerificationParameters?

    /// The ranking length to ask the search for: the verified shortlist when it is longer than `k`.
    public func searchLength(k: Int) -> Int { Swift.max(k, verification?.shortlist ?? 0) }
}

/// Parses `--rerank none|diffusion[:shortlist=K,k=N,alpha=A,gamma=G]` for a ranking of `k`
/// hits; settings not given take the defaults (`SearchRerank.standardDiffusion`), the
/// shortlist at least `k`. Verification (`verify`, `verify+diffusion`) is refused here: a
/// search request cannot carry it yet (`parseRerankPlan` accepts it).
public func parseRerank(_ text: String, k: Int) throws -> SearchRerank {
    let plan = try parseRerankPlan(text, k: k)
    guard plan.verification == nil else {
        throw ValidationError("--rerank \(text): geometric verification runs offline only so far (pharos eval --database ... --local FILE): the shards do not keep local features yet")
    }
    return plan.search
}

/// Parses `--rerank none | diffusion[:shortlist=K,k=N,alpha=A,gamma=G] |
/// verify[:shortlist=S,inliers=I,threshold=PX,ratio=R,model=affine|similarity,keypoints=N,iterations=M] |
/// verify+diffusion[:verify's settings]` (diffusion at its defaults, over a shortlist at least
/// as long as the verified one, which is then verified).
public func parseRerankPlan(_ text: String, k: Int) throws -> RerankPlan {
    let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
    let kind = parts.first ?? "none"
    let settings = parts.count == 2 ? parts[1].split(separator: ",").map(String.init) : []
    func pairs() throws -> [(String, String)] {
        try settings.map { setting in
            let kv = setting.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw ValidationError("--rerank \(text): expected name=value settings, found \(setting.debugDescription)") }
            return (kv[0], kv[1])
        }
    }
    func number<T: LosslessStringConvertible>(_ name: String, _ value: String, _: T.Type) throws -> T {
        guard let parsed = T(value) else { throw ValidationError("--rerank \(text): \(name)=\(value) is not a number") }
        return parsed
    }
    guard case var .diffusion(shortlist, neighbours, alpha, gamma) = SearchRerank.standardDiffusion else { return RerankPlan(search: .none) }
    switch kind {
    case "none":
        guard parts.count == 1 else { throw ValidationError("--rerank \(text): none takes no settings") }
        return RerankPlan(search: .none)
    case "diffusion":
        shortlist = Swift.max(shortlist, k)
        for (name, value) in try pairs() {
            switch name {
            case "shortlist": shortlist = try number(name, value, Int.self)
            case "k": neighbours = try number(name, value, Int.self)
            case "alpha": alpha = try number(name, value, Float.self)
            case "gamma": gamma = try number(name, value, Float.self)
            default: throw ValidationError("--rerank \(text): unknown setting \(name) (shortlist, k, alpha, gamma)")
            }
        }
        let rerank = SearchRerank.diffusion(shortlist: shortlist, neighbours: neighbours, alpha: alpha, gamma: gamma)
        if let problem = rerank.problem(k: k) { throw ValidationError("--rerank \(text): \(problem)") }
        return RerankPlan(search: rerank)
    case "verify", "verify+diffusion":
        var verification = VerificationParameters()
        for (name, value) in try pairs() {
            switch name {
            case "shortlist": verification.shortlist = try number(name, value, Int.self)
            case "inliers": verification.minimumInliers = try number(name, value, Int.self)
            case "threshold": verification.threshold = try number(name, value, Float.self)
            case "ratio": verification.ratio = try number(name, value, Float.self)
            case "keypoints": verification.maximumKeypoints = try number(name, value, Int.self)
            case "iterations": verification.maximumIterations = try number(name, value, Int.self)
            case "model":
                guard let model = VerificationParameters.Model(rawValue: value) else {
                    throw ValidationError("--rerank \(text): model=\(value), expected affine or similarity")
                }
                verification.model = model
            default: throw ValidationError("--rerank \(text): unknown setting \(name) (shortlist, inliers, threshold, ratio, model, keypoints, iterations)")
            }
        }
        if let problem = verification.problem() { throw ValidationError("--rerank \(text): \(problem)") }
        guard kind == "verify+diffusion" else { return RerankPlan(search: .none, verification: verification) }
        let length = Swift.max(k, verification.shortlist)
        let rerank = SearchRerank.diffusion(shortlist: Swift.max(shortlist, length), neighbours: neighbours, alpha: alpha, gamma: gamma)
        if let problem = rerank.problem(k: length) { throw ValidationError("--rerank \(text): \(problem)") }
        return RerankPlan(search: rerank, verification: verification)
    default:
        throw ValidationError("--rerank \(text): expected none, diffusion[:shortlist=K,k=N,alpha=A,gamma=G], verify[:shortlist=S,inliers=I,threshold=PX,ratio=R,model=affine|similarity,keypoints=N,iterations=M] or verify+diffusion[:the same]")
    }
}
