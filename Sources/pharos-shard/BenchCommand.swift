import ArgumentParser
import Foundation
import PharosBenchmarks

/// `pharos-shard bench`: the storage engine against the in-memory engine (`StorageBenchmark`).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Compare durable ingestion and sealed search with the in-memory engine; print a table.")

    @Option(help: "Vectors to ingest.") var count: Int = 1_000_000
    @Option(help: "Dimension.") var dimension: Int = 128
    @Option(help: "Factory string of the index.") var factory: String = "IVF1024,PQ32x4fs,RefineSQ8"
    @Option(help: "Worker threads (encoding and search).") var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "Interleaved repetitions; medians are reported.") var repeats: Int = 3
    @Option(help: "Queries per search run.") var queries: Int = 2000
    @Option(help: "Lists probed per query.") var nprobe: Int = 16
    @Option(help: "Vectors per upsert call.") var batch: Int = 10_000
    @Option(help: "Batches in flight during ingestion (encoding overlaps logging; commits stay in order).") var writers: Int = 2
    @Option(help: "Shard data directory (replaced).") var data: String = "data/bench-shard"

    func run() throws {
        var bench = StorageBenchmark()
        (bench.count, bench.dimension, bench.factory, bench.threads, bench.repeats) = (count, dimension, factory, threads, repeats)
        (bench.queries, bench.nprobe, bench.batch, bench.writers, bench.data) = (queries, nprobe, batch, writers, data)
        print(try bench.run { FileHandle.standardError.write(Data(($0 + "\n").utf8)) })
    }
}

/// `pharos-shard bench-open`: opens a shard and prints `milliseconds rss-before rss-open
/// rss-after-queries` (MB); run by `bench` in a fresh process.
struct BenchOpenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-open", abstract: "Time opening a shard (used by bench).", shouldDisplay: false)

    @Option var data: String
    @Option var dimension: Int
    @Option var queries: Int
    @Option var nprobe: Int

    func run() throws {
        print(try OpenMeasurement.measure(data: data, dimension: dimension, queries: queries, nprobe: nprobe).line)
    }
}
