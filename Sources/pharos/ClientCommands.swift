import PharosDurability
import ArgumentParser
import Foundation
import NIOPosix
import PharosCluster
import PharosCommandLine
import PharosCoordinator
import PharosIndex
import PharosVectors
import PharosWire

/// The coordinator address option shared by the client commands.
struct CoordinatorOptions: ParsableArguments {
    @Option(help: "Coordinator address, HOST:PORT.") var coordinator: String = "127.0.0.1:7700"

    /// The coordinator's host and port.
    func address() throws -> (host: String, port: Int) {
        let parts = coordinator.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { throw ValidationError("--coordinator \(coordinator): expected HOST:PORT") }
        return (String(parts[0]), port)
    }

    /// Connects, runs `body` with the client, closes.
    func withClient<T: Sendable>(_ body: @escaping @Sendable (WireClient) async throws -> T) throws -> T {
        let (host, port) = try address()
        return try runBlocking {
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let client = try await WireClient.connect(host: host, port: port, group: group)
            do {
                let result = try await body(client)
                await client.close()
                try? await group.shutdownGracefully()
                return result
            } catch {
                await client.close()
                try? await group.shutdownGracefully()
                throw error
            }
        }
    }
}

/// `pharos train`: trains the collection's configuration on a sample and pushes it to every
/// shard, optionally with a PCA whitening the coordinator then applies to every vector.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Train the collection on a sample; push the trained state to every shard.",
        discussion: """
            The coordinator says what the collection is (its Schema: dimension, metric, factory, \
            normalisation); no cluster file is read here. With --whiten, a PCA whitening is learned \
            from the same sample first (or read from --whitening-file), the index is trained on the \
            whitened sample, and the coordinator keeps the whitening and applies it to every query \
            and ingested vector. The whitening's output dimension must be the collection's \
            dimension; its input is the sample's.
            """)

    @OptionGroup var options: CoordinatorOptions
    @Option(help: "Training vectors (.fvecs/.bvecs/.npy).") var train: String
    @Option(help: "Use at most this many training vectors (evenly spaced).") var trainCount: Int = 100_000
    @Option(help: "Worker threads.") var threads: Int = Parallel.defaultThreads
    @Flag(help: "Learn a PCA whitening from the sample and make it the collection's.") var whiten = false
    @Option(help: "Use this whitening file (PHXWHITN) instead of learning one.") var whiteningFile: String?
    @Option(help: "PCA whitening: eigenvalue power (0.5 whitens fully, 0 is plain PCA).") var whitenPower: Float = 0.5
    @Option(help: "PCA whitening: shrinkage of eigenvalues toward their mean, 0...1.") var whitenShrinkage: Float = 0
    @Flag(help: "Drop the collection first (every entry, its trained state and whitening), then train anew. Without it a trained collection refuses a different trained state or whitening.")
    var replace = false

    func run() throws {
        let source: CollectionTrainer.WhiteningSource = try whiteningFile.map { .given(try Whitening.load($0)) }
            ?? (whiten ? .learnPCA(power: whitenPower, shrinkage: whitenShrinkage) : .none)
        let sample = try VectorFileReader(path: train).readEvenlySpaced(atMost: trainCount)
        let (threads, replace) = (self.threads, self.replace)
        let clock = Date()
        let (factory, version) = try options.withClient { client -> (String, UInt64) in
            let trainer = CollectionTrainer(schema: try await CollectionTrainer.fetchSchema(client), threads: threads, report: printError)
            let trained: CollectionTrainer.Trained
            do { trained = try trainer.train(sample, whitening: source) } catch let error as CollectionTrainer.TrainingError {
                throw ValidationError("\(error.description.replacingOccurrences(of: "the sample", with: train))")
            }
            return (trained.factory, try await trainer.push(trained, through: client, replace: replace))
        }
        print(String(format: "trained %@ in %.2f s; every shard holds trained state %llu", factory, Date().timeIntervalSince(clock), version))
    }
}

/// `pharos ingest`: upserts a vector file through the coordinator in batches.
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

    /// What a checkpoint records: how far the acknowledged prefix of batches reaches, and the
    /// input it refers to (a checkpoint of another file or batch size is refused).
    struct Checkpoint: Codable, Equatable {
        var vectors: String
        var rows: Int
        var batch: Int
        var acknowledgedBatches: Int
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
        let reader = try VectorFileReader(path: vectors)
        let names = try keys.map { try KeyFile.read($0, rows: reader.count) }
        let prefix = keyPrefix, size = batch, total = reader.count, window = max(1, inFlight)
        var state = Checkpoint(vectors: vectors, rows: total, batch: size, acknowledgedBatches: 0)
        if let checkpoint, let data = FileManager.default.contents(atPath: checkpoint) {
            guard let saved = try? JSONDecoder().decode(Checkpoint.self, from: data) else {
                throw ValidationError("\(checkpoint) is not an ingest checkpoint")
            }
            guard saved.vectors == vectors, saved.rows == total, saved.batch == size else {
                throw ValidationError("\(checkpoint) belongs to \(saved.vectors) (\(saved.rows) rows, batches of \(saved.batch)), not this run")
            }
            state = saved
            printError("resuming after \(saved.acknowledgedBatches) acknowledged batches (\(min(total, saved.acknowledgedBatches * size)) rows) from \(checkpoint)")
        }
        let first = state.acknowledgedBatches
        let checkpointPath = checkpoint
        let initial = state
        let bar = ProgressBar("ingest", total: total)
        let clock = Date()
        let replaced = ReplacedCount()
        try options.withClient { client in
            let batches = (total + size - 1) / size
            var next = first, done = min(total, first * size)
            var saved = initial
            var finishedBatches = Set<Int>()
            try await withThrowingTaskGroup(of: (batch: Int, replaced: Int).self) { group in
                func submit(_ b: Int) throws {
                    let rows = b * size ..< min(total, (b + 1) * size)
                    let m = try reader.readRows(rows)
                    let request = UpsertRequest(keys: rows.map { names?[$0] ?? "\(prefix)\($0)" }, vectors: m.values, dimension: m.columns)
                    group.addTask {
                        do {
                            guard case let .upsertResult(_, replaced) = try await client.call(.upsert(request), timeout: .seconds(120)) else {
                                return (b, 0)
                            }
                            return (b, replaced)
                        } catch let error as WireError {
                            throw ValidationError(IngestCommand.inFile(error, vectors: vectors, firstRow: rows.lowerBound))
                        }
                    }
                }
                while next < min(first + window, batches) { try submit(next); next += 1 }
                while let (b, replacedInBatch) = try await group.next() {
                    replaced.value += replacedInBatch
                    done += min(total, (b + 1) * size) - b * size
                    bar.update(done)
                    // The checkpoint advances over the contiguous prefix of acknowledged batches.
                    finishedBatches.insert(b)
                    while finishedBatches.remove(saved.acknowledgedBatches) != nil { saved.acknowledgedBatches += 1 }
                    if let checkpointPath {
                        try FileIO.writeAtomically(Array(try JSONEncoder().encode(saved)), to: checkpointPath)
                    }
                    if next < batches { try submit(next); next += 1 }
                }
            }
        }
        bar.finish()
        let seconds = Date().timeIntervalSince(clock), sent = total - min(total, first * size)
        print(String(format: "ingested %d vectors in %.2f s (%.0f vectors/s); %d replaced a key already stored",
                     sent, seconds, Double(sent) / seconds, replaced.value))
    }

    /// A refusal of the cluster, with the request's row numbers translated to rows of the file.
    static func inFile(_ error: WireError, vectors: String, firstRow: Int) -> String {
        var text = error.message
        // "row 6" and "keys[6]" count rows of the request; the batch began at `firstRow`.
        if let match = text.firstMatch(of: /(?:row |keys\[)(\d+)/), let row = Int(match.1) {
            text += " (row \(firstRow + row) of \(vectors))"
        }
        return "the cluster refused a batch (\(error.code)): \(text)"
    }
}

/// `pharos search`: queries the cluster with a vector file (or keys); prints latency, QPS and recall.
struct SearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "search", abstract: "Search the cluster; print latency percentiles, QPS and (with --truth) recall.")

    @OptionGroup var options: CoordinatorOptions
    @Option(help: "Query vectors.") var queries: String?
    @Option(help: "Query by these keys of indexed images (comma-separated) instead of vectors.") var queryKeys: String?
    @Option(name: .customShort("k"), help: "Results per query.") var k: Int = 10
    @Option(help: "Lists probed per query.") var nprobe: Int = 16
    @Option(help: "Refine factor.") var refineFactor: Int = 4
    @Option(help: "Query expansion: none, aqe[:n=N], alpha[:alpha=A,n=N].") var expand: String = "none"
    @Option(help: "Queries per request.") var batch: Int = 1
    @Option(help: "Use only the first N queries; 0 for all.") var limit: Int = 0
    @Option(help: "Exact neighbour rows (.ivecs) for recall; keys must be <key-prefix><row>.") var truth: String?
    @Option(help: "Key prefix of row numbers (with --truth).") var keyPrefix: String = "row-"
    @Option(help: "Per-request deadline in milliseconds.") var deadline: Int = 5000
    @Flag(help: "Print each query's hits.") var show = false
    @Flag(help: "Exit 0 even when some answers were partial (a shard missing); without it such a run exits 2.")
    var allowPartial = false


    func run() throws {
        let expansion = try parseExpansion(expand)
        let keys = queryKeys?.split(separator: ",").map(String.init) ?? []
        var rows = Matrix(rows: 0, columns: 0)
        if let queries {
            let reader = try VectorFileReader(path: queries)
            rows = try reader.readRows(0 ..< (limit > 0 ? min(limit, reader.count) : reader.count))
        } else if keys.isEmpty {
            throw ValidationError("give --queries FILE or --query-keys KEY,...")
        }
        let count = keys.isEmpty ? rows.rows : keys.count
        let (k, nprobe, refine, deadline, size) = (self.k, self.nprobe, self.refineFactor, self.deadline, max(1, batch))
        let queryRows = rows
        let (hits, latencies, seconds, partial) = try options.withClient { client -> ([QueryHits], [Double], Double, Int) in
            var hits: [QueryHits] = [], latencies: [Double] = [], partial = 0
            let start = Date()
            for first in stride(from: 0, to: count, by: size) {
                let range = first ..< min(count, first + size)
                let request = keys.isEmpty
                    ? SearchRequest(vectors: queryRows.rows(range).values, dimension: queryRows.columns, k: k, nprobe: nprobe,
                                    refineFactor: refine, expansion: expansion, deadlineMilliseconds: deadline)
                    : SearchRequest(queryKeys: Array(keys[range]), k: k, nprobe: nprobe, refineFactor: refine, expansion: expansion,
                                    deadlineMilliseconds: deadline)
                let clock = Date()
                guard case let .searchResult(result) = try await client.call(.search(request), timeout: .milliseconds(Int64(deadline) + 1000)) else {
                    throw ValidationError("unexpected reply")
                }
                latencies.append(Date().timeIntervalSince(clock) * 1000)
                if result.partial { partial += 1; printError("partial answer, missing: \(result.missing.map { "\($0.shard) (\($0.reason))" })") }
                hits += result.queries
            }
            return (hits, latencies, Date().timeIntervalSince(start), partial)
        }
        print(String(format: "searched %d queries (%d per request, k=%d, nprobe=%d, expansion %@): %.1f QPS, latency p50 %.2f ms, p99 %.2f ms%@",
                     count, size, k, nprobe, expand, Double(count) / seconds, latencies.median, latencies.percentile(0.99),
                     partial > 0 ? ", \(partial) partial answers" : ""))
        if show {
            for (q, h) in hits.enumerated() {
                print("query \(q): " + zip(h.keys, h.scores).map { "\($0) \(String(format: "%.4f", $1))" }.joined(separator: ", "))
            }
        }
        if let truth {
            let truthFile = try VectorFileReader(path: truth)
            let truthIDs = try truthFile.readInt32Rows(0..<count).map(Int64.init)
            let ids = hits.flatMap { h in (0..<k).map { r in r < h.keys.count ? Int64(h.keys[r].dropFirst(keyPrefix.count)) ?? -1 : -1 } }
            print([1, 10, 100].filter { $0 <= k && $0 <= truthFile.dimension }.map { at in
                String(format: "recall@%d %.4f", at, GroundTruth.recall(at: at, result: ids, resultK: k, truth: truthIDs, truthK: truthFile.dimension))
            }.joined(separator: "  "))
        }
        if partial > 0 && !allowPartial {
            printError("\(partial) of \(latencies.count) answers were partial (exit status 2; --allow-partial exits 0)")
            throw ExitCode.degraded
        }
    }
}

/// `pharos status`: the cluster's health and counts.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Print the cluster's health and counts; exit 2 when it is not ready.")

    @OptionGroup var options: CoordinatorOptions

    func run() throws {
        let (health, stats) = try options.withClient { client -> (WireMessage, WireMessage) in
            let health = try await client.call(.health)
            let stats = (try? await client.call(.stats)) ?? .error(WireError(.notReady, "no trained state yet"))
            return (health, stats)
        }
        if case let .healthResult(ready, status) = health {
            print("ready: \(ready ? "yes" : "no")")
            for line in status.split(separator: ";") { print("  \(line.trimmingCharacters(in: .whitespaces))") }
        }
        if case let .statsResult(s) = stats {
            print("collection: \(s.factory), \(s.dimension)-D, \(s.metric); \(s.liveEntries) live entries, \(s.segments) segments, \(s.memoryEntries) in memory; trained state \(s.trainedVersion)")
        }
        // Scripts wait for readiness with `until pharos status; do ...`.
        if case .healthResult(false, _) = health { throw ExitCode.degraded }
    }
}

/// Parses `--expand`: none, aqe[:n=N], alpha[:alpha=A,n=N].
func parseExpansion(_ expand: String) throws -> QueryExpansion {
    let parts = expand.split(separator: ":", maxSplits: 1)
    var n = 10, alpha: Float = 3
    if parts.count == 2 {
        for setting in parts[1].split(separator: ",") {
            let kv = setting.split(separator: "=")
            guard kv.count == 2 else { throw ValidationError("--expand \(expand): expected name=value settings") }
            switch kv[0] {
            case "n": n = Int(kv[1]) ?? n
            case "alpha": alpha = Float(kv[1]) ?? alpha
            default: throw ValidationError("--expand \(expand): unknown setting \(kv[0]) (n, alpha)")
            }
        }
    }
    switch parts.first.map(String.init) ?? "none" {
    case "none": return .none
    case "aqe": return .averageQE(n: n)
    case "alpha", "alpha-qe", "aqe-alpha": return .alphaQE(n: n, alpha: alpha)
    default: throw ValidationError("--expand \(expand): expected none, aqe[:n=N] or alpha[:alpha=A,n=N]")
    }
}

/// Rows that replaced a stored key, summed across the ingest's concurrent batches.
private final class ReplacedCount: @unchecked Sendable {
    // @unchecked: updated only from the one task that drains the task group.
    var value = 0
}
