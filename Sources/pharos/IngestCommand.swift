import ArgumentParser
import Foundation
import PharosCluster
import PharosCommandLine
import PharosDescriptors
import PharosVectors
import PharosWire

/// `pharos ingest`: upserts a vector file, or describes photos and upserts them as they are
/// described (`ingest run`, the default), and checks what a photo ingestion stored
/// (`ingest verify`).
struct IngestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest", abstract: "Upsert a vector file or a folder of photos through the coordinator; verify what is stored.",
        subcommands: [IngestRunCommand.self, IngestVerifyCommand.self], defaultSubcommand: IngestRunCommand.self)
}

/// `pharos ingest [run]`: a vector file in batches (`VectorIngestion`), or photos described
/// and upserted as a pipeline (`PhotoIngestion`), both resumable.
struct IngestRunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Upsert a vector file, or photos described as they go (durable on every shard when acknowledged).",
        discussion: """
            With --images DIR (or --image-list FILE), photos are decoded and described on --threads \
            workers and sent in batches as soon as a batch is described, a few batches in flight, \
            keys being the paths relative to DIR. Every acknowledged batch is recorded in the \
            journal (--checkpoint, default data/ingest/NAME.journal): run the same command again \
            after any stop and the photos already stored are skipped without being decoded. \
            Unreadable photos are reported, listed in the journal's .errors.tsv and skipped. \
            --part I/N splits the photos among N machines; `pharos ingest verify` counts what is \
            stored.
            """)

    @OptionGroup var options: CoordinatorOptions
    @Option(help: "Vectors (.fvecs/.bvecs/.npy).") var vectors: String?
    @OptionGroup(title: "Photos (--images)") var extraction: ExtractionOptions
    @Option(help: "With --images: also append the descriptors acknowledged to PREFIX.npy and PREFIX.keys (resumable as `pharos extract`).")
    var descriptorsOut: String?
    @Option(help: "Keys, one per line, in row order (default: <key-prefix><row>).") var keys: String?
    @Option(help: "Key of row i without a key file.") var keyPrefix: String = "row-"
    @Option(help: "Rows per request (default 5000 for vector files, 64 for photos).") var batch: Int?
    @Option(help: "Requests in flight: the coordinator splits each over the shards, so a few keep every shard busy (keys should be unique across batches in flight).") var inFlight: Int = 4
    @Option(help: "Checkpoint: for a vector file, records the batches acknowledged; for photos, the journal of the photos stored (default data/ingest/NAME.journal). A rerun with the same file resumes.")
    var checkpoint: String?
    @Flag(help: "With --images: start the journal (and --descriptors-out) over instead of resuming; photos stored before are described again and replaced.")
    var restart = false
    @Flag(help: "Print the summary as one JSON object (sent, replaced, seconds, vectors_per_second; for photos also photos, resumed, skipped, errors).") var json = false

    func validate() throws {
        let photos = extraction.images != nil || extraction.imageList != nil
        if photos && (vectors != nil || keys != nil) { throw ValidationError("--images replaces --vectors and --keys") }
        if !photos && vectors == nil { throw ValidationError("give --vectors (a vector file) or --images (a folder of photos)") }
        if let batch, batch < 1 { throw ValidationError("--batch \(batch): expected at least 1") }
        if inFlight < 1 { throw ValidationError("--in-flight \(inFlight): expected at least 1") }
    }

    func run() throws {
        if extraction.images != nil || extraction.imageList != nil { return try ingestPhotos() }
        guard let vectors else { throw ValidationError("give --vectors (a vector file) or --images (a folder of photos)") }
        let rows = try VectorFileReader(path: vectors).count
        let ingestion = VectorIngestion(vectors: vectors, keys: try keys.map { try KeyFile.read($0, rows: rows) }, keyPrefix: keyPrefix,
                                        batch: batch ?? 5000, inFlight: inFlight, checkpoint: checkpoint)
        do {
            let start = try ingestion.startingPoint(rows: rows)
            if start.acknowledgedBatches > 0, let checkpoint {
                printError("resuming after \(start.acknowledgedBatches) acknowledged batches (\(min(rows, start.acknowledgedBatches * ingestion.batch)) rows) from \(checkpoint)")
            }
            let bar = ProgressBar("ingest", total: rows, baseline: min(rows, start.acknowledgedBatches * ingestion.batch))
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

    /// Where the journal goes by default: data/ingest/NAME[.part-I-of-N].journal, NAME being
    /// the folder's (or list file's) name.
    func defaultJournal() -> String {
        let source = extraction.imageList ?? extraction.images ?? "photos"
        var name = URL(fileURLWithPath: source).standardizedFileURL.lastPathComponent
        if name.isEmpty || name == "/" { name = "photos" }
        if let part = extraction.part { name += ".part-" + part.replacingOccurrences(of: "/", with: "-of-") }
        return "data/ingest/\(name).journal"
    }

    func ingestPhotos() throws {
        guard !extraction.local else {
            throw ValidationError("--local: ingest sends global descriptors; write local features with `pharos extract --local`")
        }
        do {
            let photos = try extraction.photos()
            let extractor = try extraction.extractor()
            let extractionSettings = try extraction.settings(dimension: extractor.dimension)
            var settings = extractionSettings
            settings["images"] = URL(fileURLWithPath: extraction.imageList ?? extraction.images ?? "").standardizedFileURL.path
            let journalPath = checkpoint ?? defaultJournal()
            let journal = try IngestJournal(path: journalPath, settings: settings, restart: restart)
            defer { journal.close() }
            let errors = (journalPath.hasSuffix(".journal") ? String(journalPath.dropLast(8)) : journalPath) + ".errors.tsv"
            let descriptors = try descriptorsOut.map {
                try ExtractionFiles(prefix: $0, format: "npy", dimension: extractor.dimension, settings: extractionSettings, local: false, restart: restart)
            }
            defer { descriptors?.close() }
            printError("journal: \(journalPath) (run the same command again to resume); skipped photos: \(errors)")
            let ingestion = PhotoIngestion(extractor: extractor, threads: extraction.threads, batch: batch ?? 64, inFlight: inFlight)
            let bar = ProgressBar("ingest", total: photos.count, baselineFromFirstUpdate: true)
            let clock = Date()
            nonisolated(unsafe) let files = descriptors   // appended under PhotoIngestion's lock only
            let summary = try options.withClient { client in
                try await ingestion.run(photos: photos, journal: journal, errors: errors, descriptors: files, upsert: { keys, vectors, dimension in
                    let reply = try await client.call(.upsert(UpsertRequest(keys: keys, vectors: vectors, dimension: dimension)), timeout: .seconds(120))
                    guard case let .upsertResult(_, replaced) = reply else {
                        throw WireError(.internalError, "the coordinator answered Upsert with \(reply.name)")
                    }
                    return replaced
                }, progress: { bar.update($0, of: $1) }, report: printError)
            }
            bar.finish()
            let seconds = Date().timeIntervalSince(clock)
            if json {
                try JSONLines.print([["photos": summary.photos, "resumed": summary.resumed, "sent": summary.sent, "replaced": summary.replaced,
                                      "skipped": summary.skipped, "errors": errors, "journal": journalPath, "seconds": seconds,
                                      "vectors_per_second": seconds > 0 ? Double(summary.sent) / seconds : 0]])
            } else {
                print(String(format: "ingested %d photos in %.2f s (%.2f photos/s); %d stored by an earlier run, %d skipped (listed in %@), %d replaced a key already stored",
                             summary.sent, seconds, Double(summary.sent) / max(seconds, 1e-9), summary.resumed, summary.skipped, errors, summary.replaced))
            }
        } catch let error as DescriptorError {
            throw ValidationError(error.description)
        } catch let error as VectorFileError {
            throw ValidationError(error.description)
        } catch let error as PhotoIngestion.BatchRefused {
            throw ValidationError("\(error); the photos acknowledged so far are in the journal: run the same command again to go on")
        } catch let error as WireError {
            throw ValidationError("coordinator \(options.coordinator): \(error.message)")
        }
    }
}

/// `pharos ingest verify`: which photos of a folder (or list) the cluster holds, per part.
struct IngestVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Count the photos of a folder (or list) stored in the cluster, per part, and list the missing.",
        discussion: "Exit status 0 when every photo is stored, 1 when some are missing (their keys are listed).")

    @OptionGroup var options: CoordinatorOptions
    @Option(help: "Folder of photos, as given to ingest.") var images: String?
    @Option(help: "A file naming the photos, as given to ingest.") var imageList: String?
    @Option(help: "Count per part for N parts (as `ingest --part I/N`).") var parts: Int = 1
    @Option(help: "Write the missing keys here (one per line) instead of to standard output.") var missingOut: String?
    @Option(help: "An errors file ingest wrote (path TAB reason): the unreadable photos it lists are counted apart, not as missing.")
    var errors: String?
    @Flag(help: "Print one JSON object per part ({\"part\", \"photos\", \"stored\", \"unreadable\", \"missing\"}).") var json = false

    /// Keys per Fetch request (well under the protocol's 10,000).
    static let keysPerRequest = 500

    func validate() throws {
        if images == nil && imageList == nil { throw ValidationError("give --images DIR or --image-list FILE") }
        guard (1...PhotoPart.maximumCount).contains(parts) else { throw ValidationError("--parts \(parts): expected 1...\(PhotoPart.maximumCount)") }
    }

    func run() throws {
        let photos: [Photo]
        do {
            photos = try imageList.map { try PhotoList.read(listFile: $0, root: images) } ?? PhotoList.scan(folder: images ?? ".")
        } catch let error as DescriptorError {
            throw ValidationError(error.description)
        }
        let keys = photos.map(\.key)
        var unreadablePaths = Set<String>()
        if let errors {
            for line in try KeyFile.read(errors) where !line.isEmpty {
                unreadablePaths.insert(String(line.prefix { $0 != "\t" }))
            }
        }
        let unreadable = photos.map { unreadablePaths.contains($0.path) }
        let found: [Bool] = try options.withClient { client in
            var found: [Bool] = []
            found.reserveCapacity(keys.count)
            for start in stride(from: 0, to: keys.count, by: Self.keysPerRequest) {
                let chunk = Array(keys[start ..< min(keys.count, start + Self.keysPerRequest)])
                let reply = try await client.call(.fetch(keys: chunk), timeout: .seconds(60))
                guard case let .fetchResult(entries) = reply, entries.count == chunk.count else {
                    throw ValidationError("the coordinator answered Fetch with \(reply.name)")
                }
                found += entries.map(\.found)
            }
            return found
        }
        var missing: [String] = []
        var lines: [[String: Any]] = []
        for part in 1...parts {
            let members = keys.indices.filter { parts == 1 || PhotoPart.of(keys[$0], count: parts) == part }
            let stored = members.filter { found[$0] }.count
            let bad = members.filter { !found[$0] && unreadable[$0] }.count
            let absent = members.filter { !found[$0] && !unreadable[$0] }.map { keys[$0] }
            missing += absent
            if json {
                lines.append(["part": "\(part)/\(parts)", "photos": members.count, "stored": stored, "unreadable": bad, "missing": absent.count])
            } else {
                print("part \(part)/\(parts): \(stored) of \(members.count) photos stored, \(bad) unreadable, \(absent.count) missing")
            }
        }
        if json { try JSONLines.print(lines) }
        if let missingOut {
            try Array(missing.map { $0 + "\n" }.joined().utf8).withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: missingOut)) }
        } else if !json {
            // One key per line: a key with a line break or another control character is printed
            // quoted and escaped, so the list stays one per line.
            for key in missing { print(key.unicodeScalars.contains { $0.properties.generalCategory == .control } ? key.debugDescription : key) }
        }
        if !missing.isEmpty {
            printError("\(missing.count) of \(keys.count) photos are not stored")
            throw ExitCode.failure
        }
    }
}
