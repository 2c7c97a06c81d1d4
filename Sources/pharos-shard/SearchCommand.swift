import ArgumentParser
import Foundation
import PharosCommandLine
import PharosIndex
import PharosStorage
import PharosVectors

/// `pharos-shard search`: searches a shard with a query file; prints QPS, optionally recall
/// against exact neighbours (when keys are `<prefix><row>`) and writes the keys found.
struct SearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "search", abstract: "Search a shard with a query file.")

    @Option(help: "The shard's data directory.") var data: String
    @Option(help: "Query vectors.") var queries: String
    @Option(name: .customShort("k"), help: "Results per query.") var k: Int = 10
    @Option(help: "Lists probed per query.") var nprobe: Int = 16
    @Option(help: "Refine factor.") var refineFactor: Int = 4
    @Option(help: "Worker threads.") var threads: Int = Parallel.defaultThreads
    @Option(help: "Exact neighbour rows (.ivecs) for recall; keys must be <key-prefix><row>.") var truth: String?
    @Option(help: "Key prefix of row numbers (with --truth).") var keyPrefix: String = "row-"
    @Option(help: "Write one line per query: key<TAB>score pairs.") var out: String?
    @Option(help: "Queries per search call (0: all in one call); with 1, the latency of each is reported, as a shard serves interactive searches.")
    var batch: Int = 0

    func validate() throws {
        guard batch >= 0 else { throw ValidationError("--batch \(batch): expected 0 (all) or more") }
    }

    func run() throws {
        let queryRows = try VectorFileReader(path: queries).readAll()
        var options = Shard.Options()
        options.automaticMaintenance = false
        let clock = Date()
        let shard = try Shard.open(at: data, options: options)
        let opened = Date().timeIntervalSince(clock)
        defer { shard.close() }
        let parameters = SearchParameters(nprobe: nprobe, refineFactor: refineFactor, threads: threads)
        let start = Date()
        let step = batch == 0 ? Swift.max(1, queryRows.rows) : batch
        var hits: [[Shard.Hit]] = []
        var latencies: [Double] = []
        for first in stride(from: 0, to: queryRows.rows, by: step) {
            let call = Date()
            hits += try shard.search(queryRows.rows(first ..< Swift.min(queryRows.rows, first + step)), k: k, parameters: parameters)
            latencies.append(Date().timeIntervalSince(call) * 1000)
        }
        let seconds = Date().timeIntervalSince(start)
        print(String(format: "opened %@ in %.1f ms; searched %d queries, k=%d, nprobe=%d, %d threads: %.1f QPS",
                     data, opened * 1000, queryRows.rows, k, nprobe, threads, Double(queryRows.rows) / seconds))
        if batch > 0, !latencies.isEmpty {
            let sorted = latencies.sorted()
            print(String(format: "latency per call of %d queries: p50 %.3f ms, p99 %.3f ms", batch, sorted[sorted.count / 2],
                         sorted[Swift.min(sorted.count - 1, sorted.count * 99 / 100)]))
        }
        if let truth {
            print(try GroundTruth.recall(ofKeys: hits.map { $0.map(\.key) }, k: k, keyPrefix: keyPrefix, truth: truth)
                .map { String(format: "recall@%d %.4f", $0.at, $0.recall) }.joined(separator: "  "))
        }
        if let out {
            let text = hits.map { $0.map { "\($0.key)\t\($0.score)" }.joined(separator: "\t") }.joined(separator: "\n") + "\n"
            try text.write(toFile: out, atomically: true, encoding: .utf8)
        }
    }
}
