import ArgumentParser
import Foundation
import PharosBenchmarks
import PharosCommandLine

/// `pharos cluster-bench`: the cluster against the in-process engine (`ClusterBenchmark`).
struct ClusterBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster-bench", abstract: "Measure a running (empty) cluster against the in-process engine; print a table.")

    @OptionGroup var options: CoordinatorOptions
    @Option(help: "The cluster file.") var cluster: String = "data/cluster/cluster.json"
    @Option(help: "Training vectors.") var train: String
    @Option(help: "Vectors to ingest.") var base: String
    @Option(help: "Query vectors.") var queries: String
    @Option(help: "Queries per latency run.") var queryCount: Int = 500
    @Option(name: .customShort("k"), help: "Results per query.") var k: Int = 100
    @Option(help: "Lists probed per query.") var nprobe: Int = 16
    @Option(help: "Concurrent clients for the throughput row.") var clients: Int = 16
    @Option(help: "Rounds (each: in-process, coordinator and alpha-QE blocks in turn); medians over rounds are reported.") var rounds: Int = 5
    @Option(help: "Upsert requests in flight through the coordinator (as pharos ingest --in-flight).") var inFlight: Int = 4

    func run() throws {
        let (host, port) = try options.address()
        var bench = ClusterBenchmark(host: host, port: port, train: train, base: base, queries: queries)
        (bench.cluster, bench.queryCount, bench.k, bench.nprobe, bench.clients, bench.rounds, bench.inFlight) =
            (cluster, queryCount, k, nprobe, clients, rounds, inFlight)
        let measured = bench
        print(try runBlocking { try await measured.run() })
    }
}
