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
        let reader = try VectorFileReader(path: vectors)
        var keyList: [String]?
        if let keys {
            guard let text = try? String(contentsOfFile: keys, encoding: .utf8) else { throw ValidationError("cannot read \(keys)") }
            keyList = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            if keyList?.last == "" { keyList?.removeLast() }
            guard keyList!.count == reader.count else {
                throw ValidationError("\(keys) has \(keyList!.count) keys, \(vectors) has \(reader.count) rows")
            }
        }
        var options = Shard.Options()
        options.encodeThreads = threads
        let shard = try Shard.open(at: data, options: options)
        defer { shard.close() }
        let bar = ProgressBar("ingest", total: reader.count)
        let total = reader.count, size = batch, prefix = keyPrefix, names = keyList
        // Two batches in flight: one encodes while the other is logged and applied.
        try shard.upsertInOrder(count: (total + size - 1) / size, inFlight: 2, batch: { b in
            let rows = b * size ..< min(total, (b + 1) * size)
            return (rows.map { names?[$0] ?? "\(prefix)\($0)" }, try reader.readRows(rows), nil)
        }, committed: { b in bar.update(min(total, (b + 1) * size)) })
        try shard.seal()
        bar.finish()
        let s = shard.statistics
        print("ingested \(reader.count) vectors into \(data): \(s.liveEntries) live entries in \(s.segments) segments")
    }
}
