import ArgumentParser
import Foundation
import PharosCluster
import PharosCommandLine
import PharosVectors

/// `pharos ingest`: upserts a vector file (or a folder of photos, described first) through the
/// coordinator in batches (`VectorIngestion`).
struct IngestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest", abstract: "Upsert a vector file (or a folder of photos) through the coordinator (durable on every shard when acknowledged).",
        discussion: """
            With --images DIR, the photos are first described (as `pharos extract`, writing \
            --descriptors-out PREFIX.npy and .keys) and then ingested with their relative paths as keys.
            """)

    @OptionGroup var options: CoordinatorOptions
    @Option(help: "Vectors (.fvecs/.bvecs/.npy).") var vectors: String?
    @OptionGroup(title: "Photos (--images)") var extraction: ExtractionOptions
    @Option(help: "With --images: where the descriptors are written (PREFIX.npy, PREFIX.keys).") var descriptorsOut: String = "data/extracted/descriptors"
    @Option(help: "Keys, one per line, in row order (default: <key-prefix><row>).") var keys: String?
    @Option(help: "Key of row i without a key file.") var keyPrefix: String = "row-"
    @Option(help: "Rows per request.") var batch: Int = 5000
    @Option(help: "Requests in flight: the coordinator splits each over the shards, so a few keep every shard busy (keys should be unique across batches in flight).") var inFlight: Int = 4
    @Option(help: "Checkpoint file: records the batches acknowledged so far, so a rerun with the same file resumes after them.") var checkpoint: String?
    @Flag(help: "Print the summary as one JSON object (sent, replaced, seconds, vectors_per_second).") var json = false

    func validate() throws {
        if extraction.images != nil && (vectors != nil || keys != nil) { throw ValidationError("--images replaces --vectors and --keys") }
        if extraction.images == nil && vectors == nil { throw ValidationError("give --vectors (a vector file) or --images (a folder of photos)") }
    }

    func run() throws {
        var vectors = self.vectors, keys = self.keys
        if extraction.images != nil {
            guard vectors == nil, keys == nil else { throw ValidationError("--images replaces --vectors and --keys") }
            let extracted = try extraction.run(prefix: descriptorsOut, format: "npy")
            printError("extracted \(extracted.count) images into \(extracted.vectors)")
            (vectors, keys) = (extracted.vectors, extracted.keys)
        }
        guard let vectors else { throw ValidationError("give --vectors (a vector file) or --images (a folder of photos)") }
        let rows = try VectorFileReader(path: vectors).count
        let ingestion = VectorIngestion(vectors: vectors, keys: try keys.map { try KeyFile.read($0, rows: rows) }, keyPrefix: keyPrefix,
                                        batch: batch, inFlight: inFlight, checkpoint: checkpoint)
        do {
            let start = try ingestion.startingPoint(rows: rows)
            if start.acknowledgedBatches > 0, let checkpoint {
                printError("resuming after \(start.acknowledgedBatches) acknowledged batches (\(min(rows, start.acknowledgedBatches * ingestion.batch)) rows) from \(checkpoint)")
            }
            let bar = ProgressBar("ingest", total: rows)
            let clock = Date()
            let summary = try options.withClient { client in try await ingestion.run(through: client) { done, _ in bar.update(done) } }
            bar.finish()
            let seconds = Date().timeIntervalSince(clock)
            if json {
                try JSONLines.print([["sent": summary.sent, "replaced": summary.replaced, "seconds": seconds,
                                      "vectors_per_second": seconds > 0 ? Double(summary.sent) / seconds : 0]])
            } else {
                print(String(format: "ingested %d vectors in %.2f s (%.0f vectors/s); %d replaced a key already stored",
                             summary.sent, seconds, Double(summary.sent) / seconds, summary.replaced))
            }
        } catch let error as VectorIngestion.IngestionError {
            throw ValidationError(error.description)
        }
    }
}
