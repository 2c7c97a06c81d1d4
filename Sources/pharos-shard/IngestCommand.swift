import ArgumentParser
import Foundation
import PharosCommandLine
import PharosIndex
import PharosStorage
import PharosVectors

/// `pharos-shard ingest`: upserts the rows of a vector file into a shard, durably, in batches.
struct IngestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ingest", abstract: "Upsert a vector file into a shard (durable on return).")

    @Option(help: "The shard's data directory.") var data: String
    @Option(help: "Vectors to upsert (.fvecs/.bvecs/.npy).") var vectors: String
    @Option(help: "Keys, one per line, in row order (default: the key prefix and the row number).") var keys: String?
    @Option(help: "Key of row i when no key file is given: <prefix><i>.") var keyPrefix: String = "row-"
    @Option(help: "Rows per upsert (one log record).") var batch: Int = 10_000
    @Option(help: "Worker threads for encoding.") var threads: Int = Parallel.defaultThreads

    func run() throws {
        var options = Shard.Options()
        options.encodeThreads = threads
        let rows = try VectorFileReader(path: vectors).count
        let names = try keys.map { try KeyFile.read($0, rows: rows) }
        let shard = try Shard.open(at: data, options: options)
        defer { shard.close() }
        let bar = ProgressBar("ingest", total: rows)
        let count = try shard.ingest(vectorFile: vectors, keys: names, keyPrefix: keyPrefix, batch: batch) { done, _ in bar.update(done) }
        bar.finish()
        let s = shard.statistics
        print("ingested \(count) vectors into \(data): \(s.liveEntries) live entries in \(s.segments) segments")
    }
}
