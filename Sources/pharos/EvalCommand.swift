import ArgumentParser
import Foundation
import PharosCluster
import PharosCommandLine
import PharosCoordinator
import PharosEvaluation
import PharosIndex
import PharosVectors
import PharosWire

/// `pharos eval`: retrieval quality of a cluster's (or an exact) ranking against ground truth.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Measure mAP and mP@1/5/10 (revisited Oxford/Paris protocol, or a labelled set).",
        discussion: """
            Rankings come from the cluster (--coordinator) or, with --database, from an exact \
            inner-product ranking of a descriptor file. Queries are the ground truth's query keys: \
            looked up in --queries/--query-keys-file when given, else searched by key (indexed images). \
            Ground-truth JSON: see Sources/PharosEvaluation/RetrievalGroundTruth.swift; \
            Scripts/convert-revisited-gnd.py converts the official .pkl files.
            """)

    @OptionGroup var options: CoordinatorOptions
    @Option(help: "Ground truth (JSON, revisited or labelled form).") var groundTruth: String
    @Option(help: "Query descriptors (.npy/.fvecs) with --query-keys-file; default: search by key.") var queries: String?
    @Option(help: "Keys of the query descriptors, one per line.") var queryKeysFile: String?
    @Option(help: "Rank exactly against this descriptor file instead of asking the cluster.") var database: String?
    @Option(help: "Keys of --database, one per line.") var databaseKeys: String?
    @Option(name: .customShort("k"), help: "Ranking length (positives beyond it count as not found).") var k: Int = 100
    @Option(help: "Lists probed per query (cluster).") var nprobe: Int = 16
    @Option(help: "Query expansion: none, aqe[:n=N], alpha[:alpha=A,n=N].") var expand: String = "none"
    @Option(help: "Re-rank each shortlist: none, diffusion[:shortlist=K,k=N,alpha=A,gamma=G] (defaults 200, 5, 0.9, 3; the paper's k 50, alpha 0.99 hurt on sets of few views per object: Benchmarks/RESULTS.md), verify[:shortlist=S,inliers=I,threshold=PX,ratio=R,model=affine|similarity,keypoints=N,iterations=M] (defaults 100, 12, 16, 0.9, affine, 500, 1000; with --database and --local), verify+diffusion[:verify's settings].")
    var rerank: String = "none"
    @Option(help: "With --rerank verify: local features (PREFIX.local of pharos extract --local) of the database and query photos; repeatable.")
    var local: [String] = []
    @Option(help: "With --database: whiten database and queries with this file first (PHXWHITN).") var whitening: String?
    @Option(help: "A label for the result line.") var label: String = ""
    @Flag(help: "Print each result as one JSON object per line (label, setup, map, mp@1/5/10, queries, without_positives).") var json = false

    func validate() throws {
        if queries != nil && queryKeysFile == nil { throw ValidationError("--queries needs --query-keys-file") }
        if database != nil && databaseKeys == nil { throw ValidationError("--database needs --database-keys") }
        guard k > 0 else { throw ValidationError("-k \(k): expected at least 1") }
        // A usage error, before anything is read.
        if try parseRerankPlan(rerank, k: k).verification != nil {
            guard database != nil, !local.isEmpty else {
                throw ValidationError("--rerank \(rerank): geometric verification runs offline only so far: give --database and --local (the shards do not keep local features yet)")
            }
            // A query given by its descriptor is a crop (--queries-of), and extraction keeps no
            // local features of crops: verifying with the whole photo's would break the protocol.
            guard queries == nil else {
                throw ValidationError("--rerank \(rerank) with --queries: the queries' local features would be their whole photos', not their crops' (pharos extract --queries-of does not write local features yet); verify queries by key")
            }
        } else if !local.isEmpty {
            throw ValidationError("--local is read by --rerank verify only")
        }
    }

    func run() throws {
        let plan = try parseRerankPlan(self.rerank, k: k)
        let rerank = plan.search, length = plan.searchLength(k: k)
        let truth = try RetrievalGroundTruth.load(groundTruth)
        let keys = truth.queries.map(\.key)
        var queryVectors: [String: [Float]] = [:]
        if let queries {
            guard let queryKeysFile else { throw ValidationError("--queries needs --query-keys-file") }
            let rows = try VectorFileReader(path: queries).readAll()
            let names = try KeyFile.read(queryKeysFile, rows: rows.rows)
            for (i, name) in names.enumerated() { queryVectors[name] = rows.row(i) }
        }
        let rankings: [[String]]
        var verifyTimes: [Duration] = []   // per query, of the shortlist's verification
        if let database {
            guard let databaseKeys else { throw ValidationError("--database needs --database-keys") }
            let base = try VectorFileReader(path: database).readAll()
            let ranker = try ExactRanker(database: base, keys: try KeyFile.read(databaseKeys, rows: base.rows),
                                         whitening: try whitening.map(Whitening.load))
            let expansion = try parseExpansion(expand)
            let catalog = try plan.verification.map { try LocalFeatureCatalog(files: local, keypoints: $0.maximumKeypoints) }
            let threads = ProcessInfo.processInfo.activeProcessorCount
            verifyTimes.reserveCapacity(keys.count)
            rankings = try keys.map { key in
                var ranking: [String]
                if let given = queryVectors[key] {
                    ranking = ranker.ranking(try ranker.space.prepare(given), k: length, expansion: expansion, rerank: rerank)
                } else {
                    guard let q = ranker.vector(ofKey: key) else {
                        throw ValidationError("query \(key.debugDescription) is neither in --queries nor in --database")
                    }
                    ranking = ranker.ranking(q, k: length, expansion: expansion, own: key, rerank: rerank)
                }
                if let verification = plan.verification, let catalog {
                    let start = ContinuousClock.now
                    ranking = try catalog.verified(ranking, query: key, parameters: verification, threads: threads)
                    verifyTimes.append(ContinuousClock.now - start)
                }
                return Array(ranking.prefix(k))
            }
        } else {
            let search = ClusterSearch(k: k, nprobe: nprobe, expansion: try parseExpansion(expand), rerank: rerank)
            let vectors = queryVectors
            rankings = try options.withClient { client in
                try await search.rankings(of: keys, vectors: vectors, through: client) { key, missing in
                    printError("query \(key): partial answer (missing \(missing.map(\.shard)))")
                }
            }
        }
        // The time verification added per query (all the client's threads), as a median and p99.
        let verifyMilliseconds = verifyTimes.map { Double($0.components.seconds) * 1e3 + Double($0.components.attoseconds) * 1e-15 }
        let setups: [RevisitedProtocol.Setup] = truth.labelled ? [.easy] : RevisitedProtocol.Setup.allCases
        for setup in setups {
            let s = RevisitedProtocol.evaluate(rankings, truth: truth, setup: setup)
            let name = truth.labelled ? "labelled" : setup.rawValue
            if json {
                var line: [String: Any] = ["label": label, "setup": name, "map": s.meanAveragePrecision, "mp@1": s.meanPrecision[1] ?? 0,
                                           "mp@5": s.meanPrecision[5] ?? 0, "mp@10": s.meanPrecision[10] ?? 0,
                                           "queries": truth.queries.count - s.emptyQueries, "without_positives": s.emptyQueries]
                if !verifyMilliseconds.isEmpty {
                    line["verify_ms_p50"] = verifyMilliseconds.percentile(0.5)
                    line["verify_ms_p99"] = verifyMilliseconds.percentile(0.99)
                }
                try JSONLines.print([line])
                continue
            }
            print(String(format: "%@%@: mAP %.4f  mP@1 %.4f  mP@5 %.4f  mP@10 %.4f  (%d queries, %d without positives)",
                         label.isEmpty ? "" : label + " ", name, s.meanAveragePrecision, s.meanPrecision[1]!, s.meanPrecision[5]!,
                         s.meanPrecision[10]!, truth.queries.count - s.emptyQueries, s.emptyQueries)
                  + (verifyMilliseconds.isEmpty ? "" : String(format: "; verification %.1f ms a query (p50), %.1f ms (p99)",
                                                               verifyMilliseconds.percentile(0.5), verifyMilliseconds.percentile(0.99))))
        }
    }
}
