import ArgumentParser
import PharosWire

/// Parses `--rerank none|diffusion[:shortlist=K,k=N,alpha=A,gamma=G]` for a ranking of `k`
/// hits; settings not given take the paper's values (`SearchRerank.standardDiffusion`), the
/// shortlist at least `k`.
public func parseRerank(_ text: String, k: Int) throws -> SearchRerank {
    let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
    guard case var .diffusion(shortlist, neighbours, alpha, gamma) = SearchRerank.standardDiffusion else { return .none }
    shortlist = Swift.max(shortlist, k)
    switch parts.first ?? "none" {
    case "none":
        guard parts.count == 1 else { throw ValidationError("--rerank \(text): none takes no settings") }
        return .none
    case "diffusion": break
    case "verify", "verify+diffusion":
        throw ValidationError("--rerank \(text): geometric verification is not built yet (none or diffusion)")
    default:
        throw ValidationError("--rerank \(text): expected none or diffusion[:shortlist=K,k=N,alpha=A,gamma=G]")
    }
    for setting in parts.count == 2 ? parts[1].split(separator: ",").map(String.init) : [] {
        let kv = setting.split(separator: "=", maxSplits: 1).map(String.init)
        guard kv.count == 2 else { throw ValidationError("--rerank \(text): expected name=value settings, found \(setting.debugDescription)") }
        func number<T: LosslessStringConvertible>(_: T.Type) throws -> T {
            guard let value = T(kv[1]) else { throw ValidationError("--rerank \(text): \(kv[0])=\(kv[1]) is not a number") }
            return value
        }
        switch kv[0] {
        case "shortlist": shortlist = try number(Int.self)
        case "k": neighbours = try number(Int.self)
        case "alpha": alpha = try number(Float.self)
        case "gamma": gamma = try number(Float.self)
        default: throw ValidationError("--rerank \(text): unknown setting \(kv[0]) (shortlist, k, alpha, gamma)")
        }
    }
    let rerank = SearchRerank.diffusion(shortlist: shortlist, neighbours: neighbours, alpha: alpha, gamma: gamma)
    if let problem = rerank.problem(k: k) { throw ValidationError("--rerank \(text): \(problem)") }
    return rerank
}
