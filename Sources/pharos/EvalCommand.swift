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
    @Option(help: "Re-rank each shortlist: none, diffusion[:shortlist=K,k=N,alpha=A,gamma=G] (defaults 200, 5, 0.9, 3; the paper's k 50, alpha 0.99 hurt on sets of few views per object: Benchmarks/RESULTS.md).")
    var rerank: String = "none"
    @Option(help: "With --database: whiten database and queries with this file first (PHXWHITN).") var whitening: String?
    @Option(help: "A label for the result line.") var label: String = ""
    @Flag(help: "Print each result as one JSON object per line (label, setup, map, mp@1/5/10, queries, without_positives).") var json = false

    func validate() throws {
        if queries != nil && queryKeysFile == nil { throw ValidationError("--queries needs --query-keys-file") }
        if database != nil && databaseKeys == nil { throw ValidationError("--database needs --database-keys") }
        guard k > 0 else { throw ValidationError("-k \(k): expected at least 1") }
        _ = try parseRerank(rerank, k: k)   // a usage error, before anything is read
    }

    func run() throws {
        let rerank = try parseRerank(self.rerank, k: k)
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
        if let database {
            guard let databaseKeys else { throw ValidationError("--database needs --database-keys") }
            let base = try VectorFileReader(path: database).readAll()
            let ranker = try ExactRanker(database: base, keys: try KeyFile.read(databaseKeys, rows: base.rows),
                                         whitening: try whitening.map(Whitening.load))
            let expansion = try parseExpansion(expand)
            rankings = try keys.map { key in
                if let given = queryVectors[key] { return ranker.ranking(try ranker.space.prepare(given), k: k, expansion: expansion, rerank: rerank) }
                guard let q = ranker.vector(ofKey: key) else {
                    throw ValidationError("query \(key.debugDescription) is neither in --queries nor in --database")
                }
                return ranker.ranking(q, k: k, expansion: expansion, own: key, rerank: rerank)
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
        let setups: [RevisitedProtocol.Setup] = truth.labelled ? [.easy] : RevisitedProtocol.Setup.allCases
        for setup in setups {
            let s = RevisitedProtocol.evaluate(rankings, truth: truth, setup: setup)
            let name = truth.labelled ? "labelled" : setup.rawValue
            if json {
                try JSONLines.print([["label": label, "setup": name, "map": s.meanAveragePrecision, "mp@1": s.meanPrecision[1] ?? 0,
                                      "mp@5": s.meanPrecision[5] ?? 0, "mp@10": s.meanPrecision[10] ?? 0,
                                      "queries": truth.queries.count - s.emptyQueries, "without_positives": s.emptyQueries]])
                continue
            }
            print(String(format: "%@%@: mAP %.4f  mP@1 %.4f  mP@5 %.4f  mP@10 %.4f  (%d queries, %d without positives)",
                         label.isEmpty ? "" : label + " ", name, s.meanAveragePrecision, s.meanPrecision[1]!, s.meanPrecision[5]!,
                         s.meanPrecision[10]!, truth.queries.count - s.emptyQueries, s.emptyQueries))
        }
    }
}
