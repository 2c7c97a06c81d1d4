/// The revisited Oxford/Paris evaluation (Radenović et al. 2018), computed exactly as its
/// reference code does (`compute_map` of the revisitop toolkit):
/// - per setup, positives and junk: **Easy** positives = easy, junk = junk + hard; **Medium**
///   positives = easy + hard, junk = junk; **Hard** positives = hard, junk = junk + easy;
/// - junk images are removed from the ranking before positions are counted;
/// - AP by the trapezoid rule over recall steps of 1 / (number of positives);
/// - queries without positives are left out of the means;
/// - mP@k with the reference's `k' = min(k, position of the last positive)`.
/// A ranking shorter than the database counts positives it does not contain as never found.
public enum RevisitedProtocol {
    /// The three setups.
    public enum Setup: String, CaseIterable, Sendable {
        /// Easy positives; hard ones are junk.
        case easy
        /// Easy and hard positives.
        case medium
        /// Hard positives; easy ones are junk.
        case hard
    }

    /// One setup's scores.
    public struct Score: Sendable, Equatable {
        /// Mean average precision over queries that have positives.
        public var meanAveragePrecision: Double
        /// Mean precision at each of `kappas`.
        public var meanPrecision: [Int: Double]
        /// Per-query AP (nil for a query without positives).
        public var averagePrecisions: [Double?]
        /// Queries left out for having no positives.
        public var emptyQueries: Int
    }

    /// The precision cut-offs reported.
    public static let kappas = [1, 5, 10]

    /// AP of one ranking: `positions` are the 0-based positions of the positives found, junk
    /// already removed, ascending; `positives` counts all positives (found or not).
    public static func averagePrecision(positions: [Int], positives: Int) -> Double {
        guard positives > 0 else { return 0 }
        let step = 1 / Double(positives)
        var ap = 0.0
        for (j, rank) in positions.enumerated() {
            let before = rank == 0 ? 1 : Double(j) / Double(rank)
            let after = Double(j + 1) / Double(rank + 1)
            ap += (before + after) * step / 2
        }
        return ap
    }

    /// Scores `rankings` (database keys, best first, one list per query in `truth`'s order).
    public static func evaluate(_ rankings: [[String]], truth: RetrievalGroundTruth, setup: Setup) -> Score {
        precondition(rankings.count == truth.queries.count, "\(rankings.count) rankings for \(truth.queries.count) queries")
        var sumAP = 0.0, empty = 0
        var precisionSums = [Int: Double](uniqueKeysWithValues: kappas.map { ($0, 0) })
        var aps: [Double?] = []
        for (ranking, query) in zip(rankings, truth.queries) {
            let (positives, junk): ([String], [String]) = switch setup {
            case .easy: (query.easy, query.junk + query.hard)
            case .medium: (query.easy + query.hard, query.junk)
            case .hard: (query.hard, query.junk + query.easy)
            }
            let positiveSet = Set(positives), junkSet = Set(junk).subtracting(positiveSet)
            guard !positiveSet.isEmpty else {
                empty += 1
                aps.append(nil)
                continue
            }
            // Positions in the ranking with junk removed.
            var positions: [Int] = [], seen = Set<String>(), position = 0
            for key in ranking where !junkSet.contains(key) && seen.insert(key).inserted {
                if positiveSet.contains(key) { positions.append(position) }
                position += 1
            }
            let ap = averagePrecision(positions: positions, positives: positiveSet.count)
            aps.append(ap)
            sumAP += ap
            for k in kappas {
                guard let last = positions.last else { continue }   // nothing found: precision 0
                let cut = Swift.min(last + 1, k)
                precisionSums[k]! += Double(positions.count { $0 + 1 <= cut }) / Double(cut)
            }
        }
        let counted = Double(Swift.max(1, truth.queries.count - empty))
        return Score(meanAveragePrecision: sumAP / counted, meanPrecision: precisionSums.mapValues { $0 / counted },
                     averagePrecisions: aps, emptyQueries: empty)
    }
}
