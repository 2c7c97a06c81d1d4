import Foundation
import NIOPosix
import PharosIndex
import PharosStorage
import PharosVectors
import PharosObservability
import PharosRouting
import PharosWire

/// The shard node's request logic, independent of the network: one storage directory,
/// answering every `WireMessage` with a reply (errors included, never a throw).
///
/// A node starts without a trained state when its directory holds no shard; it then refuses
/// vectors (`notReady`) until a coordinator pushes one (`TrainedState`).
public final class ShardService: WireService, @unchecked Sendable {
    // @unchecked: `shard` is set once under `lock`; `Shard` is itself thread-safe.

    /// What a node serves and how.
    public struct Configuration: Sendable {
        /// The storage directory.
        public var dataDirectory: String
        /// Storage tunables.
        public var storage: Shard.Options
        /// Threads one search request may use.
        public var searchThreads: Int
        /// Node name sent in `Hello`.
        public var nodeName: String

        /// A configuration with default storage options.
        public init(dataDirectory: String, storage: Shard.Options = Shard.Options(), searchThreads: Int = 1, nodeName: String = "shard") {
            self.dataDirectory = dataDirectory
            self.storage = storage
            self.searchThreads = searchThreads
            self.nodeName = nodeName
        }
    }

    /// What this node serves.
    public let configuration: Configuration
    private let lock = NSLock()
    private var shard: Shard?
    /// The data directory, locked from the start (also while no trained state exists).
    private var claim: Shard.DirectoryClaim?
    /// The newest cluster-map epoch seen (requests routed by an older one are refused).
    let mapEpoch: MapEpoch
    /// Buckets this node receives as a move's target, and the keys clients wrote to them since.
    let receiving = ReceivingBuckets()

    /// Claims the data directory (creating it) and opens the shard in it if there is one. A
    /// directory that holds files but no `MANIFEST` is refused, never served as a new node:
    /// which of its files are current cannot be known.
    public init(configuration: Configuration) throws {
        self.configuration = configuration
        let claim = try Shard.DirectoryClaim(configuration.dataDirectory)
        var contents = try claim.contents()
        if contents.contains(Shard.dropMarkerName) {   // a drop or a create cut short: finish emptying it
            try Shard.destroy(claim)
            contents = []
        }
        if contents.contains("MANIFEST") {
            shard = try Shard.open(at: configuration.dataDirectory, options: configuration.storage, claim: claim)
        } else if !contents.isEmpty {
            throw StorageError.notAShard(path: configuration.dataDirectory, problem:
                "holds \(contents.joined(separator: ", ")) but no MANIFEST: refusing to serve it as a new, empty node (restore MANIFEST from a backup, or move the files away to start over)")
        }
        self.claim = claim
        mapEpoch = try MapEpoch(directory: configuration.dataDirectory)
    }

    /// The open shard, if a trained state exists.
    public var currentShard: Shard? { lock.withLock { shard } }

    /// Stops background work and releases the directory.
    public func close() {
        currentShard?.close()
        lock.withLock { claim = nil }
        workers.shutdownGracefully { _ in }
    }

    public var serviceName: String { "shard \(configuration.nodeName) (\(configuration.dataDirectory))" }

    /// Storage calls block, so requests run on a worker queue, except small reads (a few
    /// queries, stats, health) that take well under a millisecond: those answer on the
    /// calling event loop, which saves two thread switches per request.
    /// Checks the envelope's map epoch first: a request routed by an older map than this node
    /// has seen is answered `staleMap` and not served.
    public func respond(to envelope: Envelope, reply: @escaping @Sendable (WireMessage) -> Void) {
        // A newer epoch is kept durably (an fsync) before the request is served: not on the
        // event loop, where it would stall every search of the loop once per map change.
        if envelope.mapEpoch > mapEpoch.value {
            workers.submit { state in
                guard state == .active else { return reply(.error(WireError(.unavailable, "\(self.serviceName) is shutting down"))) }
                self.respondAdmitted(to: envelope, reply: reply)
            }
            return
        }
        respondAdmitted(to: envelope, reply: reply)
    }

    private func respondAdmitted(to envelope: Envelope, reply: @escaping @Sendable (WireMessage) -> Void) {
        let epoch = envelope.mapEpoch
        let isWrite: Bool
        switch envelope.body {
        case .upsert, .delete, .bucketWrite: isWrite = true
        default: isWrite = false
        }
        do { try isWrite ? mapEpoch.admitWrite(epoch) : mapEpoch.admit(epoch) } catch {
            reply(.error(ShardService.wireError(error)))
            return
        }
        if isWrite {
            let inner = reply
            let epochs = mapEpoch
            let counted: @Sendable (WireMessage) -> Void = { message in
                epochs.finishWrite(epoch)
                inner(message)
            }
            return respondChecked(envelope, reply: counted)
        }
        respondChecked(envelope, reply: reply)
    }

    private func respondChecked(_ envelope: Envelope, reply: @escaping @Sendable (WireMessage) -> Void) {
        switch envelope.body {
        case .bucketWrite, .bucketDrop, .bucketRead:
            // Moving buckets is the coordinator's, which always routes by a map epoch.
            if envelope.mapEpoch == 0 {
                reply(.error(WireError(.invalidArgument, "\(envelope.body.name) is sent by a coordinator moving buckets, with its map epoch (map_epoch 0 here)")))
                return
            }
        default:
            break
        }
        switch envelope.body {
        case .bucketRead, .bucketDrop:
            // A read or drop of a newer map waits for writes an older map sent here.
            workers.submit { state in
                guard state == .active else { return reply(.error(WireError(.unavailable, "\(self.serviceName) is shutting down"))) }
                self.mapEpoch.waitForWrites(before: envelope.mapEpoch)
                reply(self.handle(envelope.body))
            }
        default:
            respond(to: envelope.body, reply: reply)
        }
    }

    public func respond(to message: WireMessage, reply: @escaping @Sendable (WireMessage) -> Void) {
        if Self.isSmallRead(message) {
            reply(handle(message))
        } else {
            workers.submit { state in
                reply(state == .active ? self.handle(message)
                      : .error(WireError(.unavailable, "\(self.serviceName) is shutting down")))
            }
        }
    }

    /// Requests cheap enough to serve on an event loop: a few queries by vector, a short
    /// shortlist, few lists. Anything costlier goes to the workers, so that one connection's
    /// pipelined large searches cannot stall every other connection of the loop.
    static func isSmallRead(_ message: WireMessage) -> Bool {
        switch message {
        case let .search(s):
            let queries = s.vectors.count / Swift.max(1, s.dimension) + s.queryKeys.count
            return queries <= 4 && !s.withVectors && s.queryKeys.isEmpty
                && s.k * s.effectiveRefineFactor <= 1024 && s.effectiveNprobe <= 64
        case .stats, .health, .hello: return true
        default: return false
        }
    }
    /// Dedicated threads for blocking storage work. Not the shared dispatch pool: on Linux that
    /// pool also runs Swift concurrency, and a few long searches blocking it would stall every
    /// task of the process. Twice the cores (at least 4): writers spend much of their time
    /// waiting for the log's fsync, and more of them waiting at once share one fsync.
    private let workers: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: Swift.max(4, 2 * ProcessInfo.processInfo.activeProcessorCount))
        pool.start()
        return pool
    }()

    /// The reply to `message`.
    public func handle(_ message: WireMessage) -> WireMessage {
        do {
            return try reply(to: message)
        } catch let error as WireError {
            return .error(error)
        } catch {
            return .error(ShardService.wireError(error))
        }
    }

    func ready() throws -> Shard {
        guard let shard = currentShard else {
            throw WireError(.notReady, "this shard has no trained state yet: push one (TrainedState) first")
        }
        return shard
    }

    private func reply(to message: WireMessage) throws -> WireMessage {
        switch message {
        case let .hello(request):
            return .hello(Hello.answer(to: request, role: .shard, nodeName: configuration.nodeName, software: BuildInfo.versionLine(program: "pharos-shard")))
        case let .search(request):
            // Answered without it, the client would get an order it did not ask for.
            guard request.rerank == .none else {
                throw WireError(.invalidArgument, "Search.rerank is applied by a coordinator over every shard's hits; a shard does not re-rank")
            }
            return .searchResult(try search(request))
        case let .upsert(request) where !request.encoded.isEmpty:
            // Rows a coordinator encoded once for all their copies: stored as sent, after the
            // checks every encoded entry gets (`Shard.validate(encoded:)`, as for BucketWrite).
            let shard = try ready()
            guard request.trainedVersion == shard.trainedStateVersion else {
                throw WireError(.invalidArgument, "Upsert.trained_version is \(request.trainedVersion), this shard's trained state is version \(shard.trainedStateVersion): send vectors")
            }
            guard request.encoded.count == request.keys.count, request.metadata.isEmpty || request.metadata.count == request.keys.count else {
                throw WireError(.invalidArgument, "Upsert: \(request.encoded.count) encoded rows and \(request.metadata.count) metadata values for \(request.keys.count) keys")
            }
            let entries = request.keys.indices.map { i in
                let row = request.encoded[i], key = request.keys[i]
                return Shard.BucketEntry(key: key, hash: KeyHash.of(key), stored: Shard.StoredEntry(
                    list: row.list, code: row.code, refine: row.refine, metadata: request.metadata.isEmpty ? [] : request.metadata[i]))
            }
            // Checked before the write is noted: a refused batch must not spoil a copy in progress.
            try shard.validate(encoded: entries)
            receiving.noteWritten(request.keys)
            do {
                let replaced = try shard.upsert(encoded: entries)
                return .upsertResult(written: request.keys.count, replaced: replaced)
            } catch {
                receiving.writeFailed(request.keys)
                throw error
            }
        case let .upsert(request):
            let shard = try ready()
            let vectors = try matrix(request.vectors, rows: request.keys.count, dimension: request.dimension, of: shard, field: "vectors")
            receiving.noteWritten(request.keys)
            do {
                let replaced = try shard.upsert(keys: request.keys, vectors: vectors, metadata: request.metadata.isEmpty ? nil : request.metadata)
                return .upsertResult(written: request.keys.count, replaced: replaced)
            } catch {
                receiving.writeFailed(request.keys)
                throw error
            }
        case let .delete(keys):
            let shard = try ready()
            receiving.noteWritten(keys)
            do { return .deleteResult(deleted: try shard.delete(keys: keys)) } catch {
                receiving.writeFailed(keys)
                throw error
            }
        case let .fetch(keys):
            let shard = try ready()   // the key count was checked against RequestLimits
            return .fetchResult(try keys.map { key in
                guard let entry = try shard.entry(forKey: key) else { return FetchedEntry(key: key, found: false) }
                return FetchedEntry(key: key, found: true, vector: try shard.vector(of: entry), metadata: entry.metadata)
            })
        case .stats:
            let shard = try ready()
            let s = shard.statistics
            return .statsResult(ShardStatistics(liveEntries: UInt64(s.liveEntries), segments: UInt64(s.segments),
                                                sealedEntries: UInt64(s.sealedEntries), memoryEntries: UInt64(s.memoryEntries),
                                                factory: shard.index.factoryString, dimension: shard.index.dimension,
                                                trainedVersion: shard.trainedStateVersion, metric: shard.index.metric.rawValue))
        case .health:
            let shard = currentShard
            return .healthResult(ready: shard != nil, status: shard.map { "serving \($0.statistics.liveEntries) entries" }
                                 ?? "waiting for a trained state")
        case let .trainedState(indexFile, _):   // a whitening is the coordinator's business
            return .trainedStateAck(version: try install(indexFile))
        case let .drop(confirm):
            return .dropResult(droppedEntries: try drop(confirm: confirm))
        case .schema:
            throw WireError(.unsupported, "Schema is the coordinator's to answer (it holds the collection's vector space); ask it")
        case .bucketRead, .bucketWrite, .bucketDrop, .bucketCounts:
            return try bucketReply(to: message)
        case .clusterStatus, .addNode, .removeNode, .rebalance:
            throw WireError(.unsupported, "\(message.name) is the coordinator's to answer (it holds the cluster map); ask it")
        case .searchResult, .upsertResult, .deleteResult, .fetchResult, .statsResult, .healthResult, .trainedStateAck, .dropResult,
             .schemaResult, .bucketEntries, .bucketCountsResult, .clusterStatusResult, .error:
            throw WireError(.unsupported, "\(message.name) is a reply, not a request a shard serves")
        }
    }

    /// Creates the shard from a pushed trained state; the same state again is acknowledged,
    /// a different one refused (re-training is a new collection).
    private func install(_ bytes: [UInt8]) throws -> UInt64 {
        try lock.withLock {
            let loaded: any VectorIndex
            do { loaded = try IndexFactory.load(bytes: bytes, name: "pushed trained state") } catch {
                throw WireError(.invalidArgument, "\(error)")
            }
            guard let index = loaded as? any InvertedFileIndex else {
                throw WireError(.invalidArgument, "the trained state is not an IVF/PQ index")
            }
            // The version of the file the shard would write (the canonical encoding).
            let version = UInt64(IndexFactory.encoded(index).withUnsafeBytes { Shard.checksum($0) })
            if let shard {
                guard shard.trainedStateVersion == version else {
                    throw WireError(.invalidArgument, "this shard already holds trained state \(shard.trainedStateVersion); refusing \(version)")
                }
                return version
            }
            let created = try Shard.create(at: configuration.dataDirectory, trainedIndex: index, options: configuration.storage, claim: claim)
            shard = created
            return created.trainedStateVersion
        }
    }

    /// Empties the directory (entries, trained state), after which a new trained state can be
    /// pushed. Nothing to drop on an untrained node is not an error (a retried drop).
    private func drop(confirm: String) throws -> UInt64 {
        try lock.withLock {
            guard let current = shard, let claim else { return 0 }
            let factory = current.index.factoryString
            guard confirm == factory else {
                throw WireError(.invalidArgument, "Drop.confirm is \(confirm.debugDescription): to drop this collection give its factory, \(factory.debugDescription)")
            }
            let dropped = UInt64(current.statistics.liveEntries)
            current.close()
            shard = nil
            do { try Shard.destroy(claim) } catch { throw WireError(.storage, "dropping the collection: \(error)") }
            return dropped
        }
    }

    private func search(_ request: SearchRequest) throws -> SearchResponse {
        let shard = try ready()
        let d = shard.index.dimension
        // Counts, ranges and finiteness were checked against `RequestLimits` by the server.
        let vectorRows = request.dimension == 0 && request.vectors.isEmpty ? 0 : request.vectors.count / Swift.max(1, request.dimension)
        var queries = try matrix(request.vectors, rows: vectorRows, dimension: request.dimension, of: shard, field: "query vectors")
        for key in request.queryKeys {
            guard let v = try shard.vector(forKey: key) else {
                throw WireError(.invalidArgument, "query key \(key.debugDescription) is not in this shard")
            }
            queries.append(contentsOf: Matrix(rows: 1, columns: d, values: v))
        }
        let parameters = SearchParameters(nprobe: request.effectiveNprobe, refineFactor: request.effectiveRefineFactor,
                                          threads: configuration.searchThreads)
        // Lists found by the coordinator with this trained state are scanned as given; with
        // another (a retrain racing the request) the shard finds its own.
        var probes: ProbeAssignment?
        if !request.probeLists.isEmpty, request.probeTrainedVersion == shard.trainedStateVersion, request.queryKeys.isEmpty {
            if let i = request.probeLists.firstIndex(where: { $0 > UInt32(Int32.max) }) {
                throw WireError(.invalidArgument, "Search.probe_lists[\(i)] is \(request.probeLists[i]): past any list of this index (\(shard.index.listCount))")
            }
            do {
                probes = try ProbeAssignment(perQuery: request.probeLists.count / Swift.max(1, queries.rows),
                                             lists: request.probeLists.map { Int32(truncatingIfNeeded: $0) }, biases: request.probeBiases)
            } catch {
                throw WireError(.invalidArgument, "Search.probe_lists: \(error)")
            }
        }
        let hits = try shard.search(queries, k: request.k, parameters: parameters, buckets: try Self.bucketSet(request.buckets),
                                    probes: probes)
        return SearchResponse(queries: try hits.map { row in
            guard request.withVectors else { return QueryHits(keys: row.map(\.key), scores: row.map(\.score)) }
            // A hit deleted since the search has no vector any more: it is left out, so the
            // flat vector array stays one row per hit.
            var kept = QueryHits(keys: [], scores: [])
            for hit in row {
                guard let vector = try shard.vector(forKey: hit.key) else { continue }
                kept.keys.append(hit.key)
                kept.scores.append(hit.score)
                kept.vectors += vector
            }
            return kept
        })
    }

    /// `values` as a `rows x dimension` matrix, checked against the shard's dimension.
    private func matrix(_ values: [Float], rows: Int, dimension: Int, of shard: Shard, field: String) throws -> Matrix {
        let d = shard.index.dimension
        if rows == 0 && values.isEmpty { return Matrix(rows: 0, columns: d) }
        guard dimension == d else {
            throw WireError(.invalidArgument, "\(field): dimension \(dimension), this shard holds \(d)-D vectors")
        }
        guard values.count == rows * d else {
            throw WireError(.invalidArgument, "\(field): \(values.count) floats for \(rows) rows of \(d)")
        }
        return Matrix(rows: rows, columns: d, values: values)
    }

    /// The wire form of an error from the libraries.
    static func wireError(_ error: any Error) -> WireError {
        switch error {
        case let e as WireError: return e
        case let e as IndexError:
            switch e {
            case .dimensionMismatch, .nonFiniteValue, .invalidParameter, .idCountMismatch: return WireError(.invalidArgument, e.description)
            case .notTrained: return WireError(.notReady, e.description)
            default: return WireError(.storage, e.description)
            }
        case let e as StorageError:
            switch e {
            case .invalidInput: return WireError(.invalidArgument, e.description)
            case .closed: return WireError(.unavailable, e.description)
            default: return WireError(.storage, e.description)
            }
        default:
            return WireError(.internalError, "\(error)")
        }
    }
}
