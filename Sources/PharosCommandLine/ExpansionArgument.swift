import ArgumentParser
import PharosWire

/// Parses `--expand`: none, aqe[:n=N], alpha[:alpha=A,n=N].
public func parseExpansion(_ expand: String) throws -> QueryExpansion {
    let parts = expand.split(separator: ":", maxSplits: 1)
    var n = 10, alpha: Float = 3
    if parts.count == 2 {
        for setting in parts[1].split(separator: ",") {
            let kv = setting.split(separator: "=")
            guard kv.count == 2 else { throw ValidationError("--expand \(expand): expected name=value settings") }
            switch kv[0] {
            case "n": n = Int(kv[1]) ?? n
            case "alpha": alpha = Float(kv[1]) ?? alpha
            default: throw ValidationError("--expand \(expand): unknown setting \(kv[0]) (n, alpha)")
            }
        }
    }
    switch parts.first.map(String.init) ?? "none" {
    case "none": return .none
    case "aqe": return .averageQE(n: n)
    case "alpha", "alpha-qe", "aqe-alpha": return .alphaQE(n: n, alpha: alpha)
    default: throw ValidationError("--expand \(expand): expected none, aqe[:n=N] or alpha[:alpha=A,n=N]")
    }
}
