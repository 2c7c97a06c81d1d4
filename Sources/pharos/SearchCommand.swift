import ArgumentParser
import Foundation
import PharosCluster
import PharosCommandLine
import PharosVectors
import PharosWire

/// `pharos search`: queries the cluster with a vector file (or keys); prints latency, QPS and
/// recall (`ClusterSearch`).
struct SearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "search", abstract: "Search the cluster; print latency percentiles, QPS and (with --truth) recall.")

    @OptionGroup var options: CoordinatorOptions
    @Option(help: "Query vectors.") var queries: String?
    @Option(help: "Query by this key of an indexed image instead of vectors (repeatable).") var queryKey: [String] = []
    @Option(help: "Query by the keys in this file (one per line) instead of vectors.") var queryKeysFile: String?
    @Option(name: .customShort("k"), help: "Results per query.") var k: Int = 10
    @Option(help: "Lists probed per query.") var nprobe: Int = 16
    @Option(help: "Refine factor.") var refineFactor: Int = 4
    @Option(help: "Query expansion: none, aqe[:n=N], alpha[:alpha=A,n=N].") var expand: String = "none"
    @Option(help: "Re-rank each shortlist: none, diffusion[:shortlist=K,k=N,alpha=A,gamma=G] (defaults 200, 5, 0.9, 3; the paper's k 50, alpha 0.99 hurt on sets of few views per object: Benchmarks/RESULTS.md).")
    var rerank: String = "none"
    @Option(help: "Queries per request.") var batch: Int = 1
    @Option(help: "Use only the first N queries; 0 for all.") var limit: Int = 0
    @Option(help: "Exact neighbour rows (.ivecs) for recall; keys must be <key-prefix><row>.") var truth: String?
    @Option(help: "Key prefix of row numbers (with --truth).") var keyPrefix: String = "row-"
    @Option(help: "Per-request deadline in milliseconds.") var deadline: Int = 5000
    @Flag(help: "Print each query's hits.") var show = false
    @Flag(help: "Print each query's hits as one JSON object per line on standard output ({\"query\", \"query_key\", \"hits\": [{\"key\", \"score\"}]}); the summary goes to standard error.")
    var json = false
    @Option(help: "Write each query's hits to this file, one JSON object per line (as --json prints them).") var out: String?
    @Flag(help: "Exit 0 even when some answers were partial (a shard missing); without it such a run exits 2.")
    var allowPartial = false

    func validate() throws {
        let byKey = !queryKey.isEmpty || queryKeysFile != nil
        if queries != nil && byKey { throw ValidationError("give query vectors (--queries) or query keys (--query-key, --query-keys-file), not both") }
        if queries == nil && !byKey { throw ValidationError("give --queries FILE, --query-key KEY (repeatable) or --query-keys-file FILE") }
        guard k > 0, nprobe > 0, batch > 0, limit >= 0 else { throw ValidationError("-k, --nprobe and --batch must be at least 1, --limit at least 0") }
        _ = try parseRerank(rerank, k: k)   // a usage error, before anything is read
    }

    func run() throws {
        let search = ClusterSearch(k: k, nprobe: nprobe, refineFactor: refineFactor, expansion: try parseExpansion(expand),
                                   deadlineMilliseconds: deadline, batch: batch, rerank: try parseRerank(rerank, k: k))
        let keys = queryKey + (try queryKeysFile.map { try KeyFile.read($0).filter { !$0.isEmpty } } ?? [])
        var rows = Matrix(rows: 0, columns: 0)
        if let queries {
            let reader = try VectorFileReader(path: queries)
            rows = try reader.readRows(0 ..< (limit > 0 ? min(limit, reader.count) : reader.count))
        } else if keys.isEmpty {
            throw ValidationError("\(queryKeysFile ?? "the keys file") holds no keys")
        }
        let queryRows = rows
        let run = try options.withClient { client in
            try await search.run(through: client, vectors: queryRows, keys: keys) { missing in
                printError("partial answer, missing: \(missing.map { "\($0.shard) (\($0.reason))" })")
            }
        }
        let count = run.hits.count
        let lines: [[String: Any]] = run.hits.enumerated().map { q, h in
            var object: [String: Any] = ["query": q, "hits": zip(h.keys, h.scores).map { ["key": $0, "score": Double($1)] }]
            if !keys.isEmpty { object["query_key"] = keys[q] }
            return object
        }
        if let out { try JSONLines.write(lines, to: out) }
        if json { try JSONLines.print(lines) }
        let summary = (json ? printError : { Swift.print($0) }) as (String) -> Void
        summary(String(format: "searched %d queries (%d per request, k=%d, nprobe=%d, expansion %@, rerank %@): %.1f QPS, latency p50 %.2f ms, p99 %.2f ms%@",
                     count, search.batch, k, nprobe, expand, rerank, Double(count) / run.seconds, run.latencies.median, run.latencies.percentile(0.99),
                     run.partialAnswers > 0 ? ", \(run.partialAnswers) partial answers" : ""))
        if show && !json {
            for (q, h) in run.hits.enumerated() {
                print("query \(q): " + zip(h.keys, h.scores).map { "\($0) \(String(format: "%.4f", $1))" }.joined(separator: ", "))
            }
        }
        if let truth {
            summary(try ClusterSearch.recall(of: run.hits, k: k, keyPrefix: keyPrefix, truth: truth)
                .map { String(format: "recall@%d %.4f", $0.at, $0.recall) }.joined(separator: "  "))
        }
        if run.partialAnswers > 0 && !allowPartial {
            printError("\(run.partialAnswers) of \(run.latencies.count) answers were partial (exit status 2; --allow-partial exits 0)")
            throw ExitCode.degraded
        }
    }
}
