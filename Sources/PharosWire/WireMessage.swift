/// One framed message: a request id and a body (the protocol's `Envelope`).
///
/// Replies carry the id of the request they answer; ids are chosen by the requester and
/// need only be unique among its requests in flight on one connection.
public struct Envelope: Sendable, Equatable {
    /// The request this message is, or answers.
    public var requestID: UInt64
    /// The message.
    public var body: WireMessage
    /// The cluster-map epoch the sender routes by (0: none, as clients send).
    public var mapEpoch: UInt64
    /// The bearer token the sender presents (empty: none). See `AccessTokens`.
    public var authToken: String

    /// Creates an envelope.
    public init(requestID: UInt64, body: WireMessage, mapEpoch: UInt64 = 0, authToken: String = "") {
        self.requestID = requestID
        self.body = body
        self.mapEpoch = mapEpoch
        self.authToken = authToken
    }
}

/// Every message of `Protocols/pharos.proto`, as Swift values (no C pointers).
public enum WireMessage: Sendable, Equatable {
    case hello(Hello)
    case search(SearchRequest)
    case searchResult(SearchResponse)
    case upsert(UpsertRequest)
    /// Rows written, and of those the ones that replaced an existing entry.
    case upsertResult(written: Int, replaced: Int = 0)
    case delete(keys: [String])
    case deleteResult(deleted: Int)
    case fetch(keys: [String])
    case fetchResult([FetchedEntry])
    case stats
    case statsResult(ShardStatistics)
    case health
    case healthResult(ready: Bool, status: String)
    /// The trained, empty index (the `PHAROSIX` container bytes) and optionally the
    /// collection's whitening (a `PHXWHITN` file; empty for none), which only the coordinator keeps.
    case trainedState(indexFile: [UInt8], whitening: [UInt8] = [])
    case trainedStateAck(version: UInt64)
    /// Drops the collection (entries, trained state, whitening); `confirm` must be its factory.
    case drop(confirm: String)
    case dropResult(droppedEntries: UInt64)
    /// Asks the coordinator for the collection's vector space (`SchemaResult`).
    case schema
    case schemaResult(CollectionSchema)
    /// To a shard: a page of the live entries of some buckets (`BucketEntries`).
    case bucketRead(BucketReadRequest)
    case bucketEntries([MovedEntry])
    /// To a shard: store entries read from another node, of buckets it is receiving, and with
    /// `finishing`, stop receiving those buckets after them (`UpsertResult`).
    case bucketWrite([MovedEntry], finishing: BucketMask = .everything, run: String = "")
    /// To a shard: delete every live entry of the buckets, and with `receive`, start receiving
    /// them (`DeleteResult`).
    case bucketDrop(BucketMask, receive: Bool = false, run: String = "")
    /// To a shard: live entries per bucket, for `count` buckets.
    case bucketCounts(count: Int)
    case bucketCountsResult([UInt64])
    /// To the coordinator: the cluster map and moves (`ClusterStatusResult`).
    case clusterStatus
    case clusterStatusResult(ClusterReport)
    /// To the coordinator: a node joins.
    case addNode(NodeAddition)
    /// To the coordinator: a node is drained and removed.
    case removeNode(name: String)
    /// To the coordinator: move buckets to even out nodes and reach a replication factor.
    case rebalance(RebalanceRequest)
    case error(WireError)

    /// The message's name in the protocol document.
    public var name: String {
        switch self {
        case .hello: return "Hello"
        case .search: return "Search"
        case .searchResult: return "SearchResult"
        case .upsert: return "Upsert"
        case .upsertResult: return "UpsertResult"
        case .delete: return "Delete"
        case .deleteResult: return "DeleteResult"
        case .fetch: return "Fetch"
        case .fetchResult: return "FetchResult"
        case .stats: return "Stats"
        case .statsResult: return "StatsResult"
        case .health: return "Health"
        case .healthResult: return "HealthResult"
        case .trainedState: return "TrainedState"
        case .trainedStateAck: return "TrainedStateAck"
        case .drop: return "Drop"
        case .dropResult: return "DropResult"
        case .schema: return "Schema"
        case .schemaResult: return "SchemaResult"
        case .bucketRead: return "BucketRead"
        case .bucketEntries: return "BucketEntries"
        case .bucketWrite: return "BucketWrite"
        case .bucketDrop: return "BucketDrop"
        case .bucketCounts: return "BucketCounts"
        case .bucketCountsResult: return "BucketCountsResult"
        case .clusterStatus: return "ClusterStatus"
        case .clusterStatusResult: return "ClusterStatusResult"
        case .addNode: return "AddNode"
        case .removeNode: return "RemoveNode"
        case .rebalance: return "Rebalance"
        case .error: return "Error"
        }
    }
}

/// What a peer is.
public enum PeerRole: Int32, Sendable, Equatable {
    case unspecified = 0, client, coordinator, shard
}

/// The first message on a connection, both ways: the protocol versions each side speaks, and
/// the one they agree on.
///
/// A request carries the lowest version its sender speaks in `protocolVersion` (the only field
/// version-1 nodes read, and which they require to be 1) and the highest in
/// `maxProtocolVersion`; the answer carries the highest version both speak. So a node of the
/// next release serves a cluster of this one, and the reverse, during a rolling upgrade.
public struct Hello: Sendable, Equatable {
    /// The oldest protocol version this build speaks.
    public static let oldestVersion: UInt32 = 1
    /// The newest protocol version this build speaks (the one `Protocols/README.md` describes).
    public static let currentVersion: UInt32 = 4
    /// The first version whose shards take `Upsert.encoded`.
    public static let encodedUpsertVersion: UInt32 = 3
    /// The first version whose coordinators re-rank (`Search.rerank`, `SearchResult.reranked`).
    public static let rerankVersion: UInt32 = 4
    /// In a request, the lowest version the sender speaks; in an answer, the agreed version.
    public var protocolVersion: UInt32
    /// The highest version the sender speaks (0: `protocolVersion` only).
    public var maxProtocolVersion: UInt32
    /// What the sender is.
    public var role: PeerRole
    /// The sender's name, for logs.
    public var nodeName: String
    /// The sender's program and version (empty from version-1 nodes).
    public var software: String

    /// A hello from a peer of `role` speaking `protocolVersion...maxProtocolVersion`.
    public init(protocolVersion: UInt32 = Hello.oldestVersion, maxProtocolVersion: UInt32 = Hello.currentVersion, role: PeerRole,
                nodeName: String, software: String = "") {
        self.protocolVersion = protocolVersion
        self.maxProtocolVersion = maxProtocolVersion
        self.role = role
        self.nodeName = nodeName
        self.software = software
    }

    /// The versions the sender speaks.
    public var versions: ClosedRange<UInt32> { protocolVersion...Swift.max(protocolVersion, maxProtocolVersion) }

    /// The highest version this build and the sender of `self` both speak, or nil.
    public var agreedVersion: UInt32? {
        let mine = Hello.oldestVersion...Hello.currentVersion
        guard versions.overlaps(mine) else { return nil }
        return Swift.min(versions.upperBound, mine.upperBound)
    }

    /// This node's answer to `request`: the agreed version, and who answers.
    public static func answer(to request: Hello, role: PeerRole, nodeName: String, software: String) -> Hello {
        Hello(protocolVersion: request.agreedVersion ?? oldestVersion, maxProtocolVersion: currentVersion, role: role,
              nodeName: nodeName, software: software)
    }
}

/// Query expansion, applied by the coordinator.
public enum QueryExpansion: Sendable, Equatable {
    case none
    /// Average query expansion: the mean of the query and its top `n`.
    case averageQE(n: Int)
    /// alpha-QE: the top `n` weighted by max(similarity, 0)^alpha.
    case alphaQE(n: Int, alpha: Float)

    /// How many first-round hits the expansion uses (0 without expansion).
    public var neighbours: Int {
        switch self {
        case .none: 0
        case let .averageQE(n), let .alphaQE(n, _): n
        }
    }
}

/// Re-ranking of each query's shortlist, applied by the coordinator.
public enum SearchRerank: Sendable, Equatable {
    case none
    /// Diffusion over the k-NN graph of the shortlist (`PharosRerank.Diffusion`).
    case diffusion(shortlist: Int, neighbours: Int, alpha: Float, gamma: Float)

    /// The defaults, by evidence: the paper's gamma 3 and a shortlist of 200, with 5 neighbours
    /// and alpha 0.9. The paper's k 50 and alpha 0.99 suit classes of tens of photos (its Oxford
    /// and Paris sets); on the labelled photo set (7 views an object) they took mAP from 0.90 to
    /// 0.35, these to 0.96 (`Benchmarks/rerank.sh`, RESULTS.md). A zero field on the wire means
    /// the value here (a longer shortlist when k is larger).
    public static let standardDiffusion = SearchRerank.diffusion(shortlist: 200, neighbours: 5, alpha: 0.9, gamma: 3)

    /// The longest shortlist a request may re-rank: diffusion's graph is dense,
    /// `shortlist^2` values (8 MB at 1,000), and each solver step a product with it.
    public static let maximumShortlist = 1_000

    /// What is wrong with this re-ranking for a ranking of `k` hits (naming the field as
    /// `Search.rerank.shortlist` and so on), or nil when it is valid.
    public func problem(k: Int) -> String? {
        guard case let .diffusion(shortlist, neighbours, alpha, gamma) = self else { return nil }
        guard (1...Self.maximumShortlist).contains(shortlist) else {
            return "Search.rerank.shortlist is \(shortlist), allowed 1...\(Self.maximumShortlist)"
        }
        guard k <= shortlist else { return "Search.k is \(k), more than Search.rerank.shortlist \(shortlist): the re-ranking orders the shortlist only" }
        guard (1...shortlist).contains(neighbours) else {
            return "Search.rerank.neighbours is \(neighbours), allowed 1...shortlist (\(shortlist))"
        }
        guard alpha.isFinite, alpha > 0, alpha < 1 else { return "Search.rerank.alpha is \(alpha), allowed strictly between 0 and 1" }
        guard gamma.isFinite, gamma > 0, gamma <= 100 else { return "Search.rerank.gamma is \(gamma), allowed above 0, at most 100 (0 on the wire means the default, 3)" }
        return nil
    }

    /// The name of the re-ranking, as `SearchResult.reranked` reports it.
    public var kind: String {
        switch self {
        case .none: "none"
        case .diffusion: "diffusion"
        }
    }
}

/// A batch of queries by vector and/or by key.
public struct SearchRequest: Sendable, Equatable {
    /// Row-major query vectors, `dimension` floats each.
    public var vectors: [Float]
    /// Floats per query vector.
    public var dimension: Int
    /// Keys of indexed images to query by (their stored vectors).
    public var queryKeys: [String]
    /// Results per query (1...65536).
    public var k: Int
    /// Inverted lists probed per query.
    public var nprobe: Int
    /// Candidates re-ranked with refine codes, as a multiple of k.
    public var refineFactor: Int
    /// Query expansion (applied by the coordinator).
    public var expansion: QueryExpansion
    /// Milliseconds the requester will wait; 0 for the server's default.
    public var deadlineMilliseconds: Int
    /// Whether each hit carries its reconstructed vector.
    public var withVectors: Bool
    /// To a shard: the buckets it answers for (`.everything` from clients).
    public var buckets: BucketMask = .everything
    /// To a shard: each query's lists to scan, best first (the same number per query), found
    /// once by the coordinator; empty: the shard finds them. Clients leave it empty.
    public var probeLists: [UInt32] = []
    /// To a shard: the coarse distance of each list in `probeLists`.
    public var probeBiases: [Float] = []
    /// To a shard: the trained state version `probeLists` were found with (a shard holding
    /// another finds its own lists).
    public var probeTrainedVersion: UInt64 = 0
    /// Re-ranking of each query's shortlist (applied by the coordinator; shards refuse it).
    public var rerank: SearchRerank = .none

    /// A search request.
    public init(vectors: [Float] = [], dimension: Int = 0, queryKeys: [String] = [], k: Int, nprobe: Int,
                refineFactor: Int = 4, expansion: QueryExpansion = .none, deadlineMilliseconds: Int = 0, withVectors: Bool = false) {
        self.vectors = vectors
        self.dimension = dimension
        self.queryKeys = queryKeys
        self.k = k
        self.nprobe = nprobe
        self.refineFactor = refineFactor
        self.expansion = expansion
        self.deadlineMilliseconds = deadlineMilliseconds
        self.withVectors = withVectors
    }
}

/// The hits of one query, best first.
public struct QueryHits: Sendable, Equatable {
    /// The hits' keys, best first.
    public var keys: [String]
    /// Their scores (inner products descending, or squared L2 distances ascending).
    public var scores: [Float]
    /// Row-major reconstructed vectors, when requested.
    public var vectors: [Float]

    /// Hits of one query.
    public init(keys: [String], scores: [Float], vectors: [Float] = []) {
        self.keys = keys
        self.scores = scores
        self.vectors = vectors
    }
}

/// A shard left out of a result, and why.
public struct ShardFailure: Sendable, Equatable {
    /// The shard's name in the cluster file.
    public var shard: String
    /// Why it is missing (timeout, connection refused, ...).
    public var reason: String

    /// A missing shard.
    public init(shard: String, reason: String) {
        self.shard = shard
        self.reason = reason
    }
}

/// The answer to a `SearchRequest`.
public struct SearchResponse: Sendable, Equatable {
    /// One entry per query, in request order.
    public var queries: [QueryHits]
    /// The shards left out, and why.
    public var missing: [ShardFailure]
    /// The re-ranking the coordinator applied (`.none` from coordinators before version 4;
    /// for a diffusion, only its kind is carried: the parameters read back are zero).
    public var reranked: SearchRerank = .none

    /// True when some shard's hits are missing (the wire's `partial` flag).
    public var partial: Bool { !missing.isEmpty }

    /// A search answer.
    public init(queries: [QueryHits], missing: [ShardFailure] = []) {
        self.queries = queries
        self.missing = missing
    }
}

/// Entries to insert or replace by key.
public struct UpsertRequest: Sendable, Equatable {
    /// The entries' keys.
    public var keys: [String]
    /// Row-major, `dimension` floats per key.
    public var vectors: [Float]
    /// Floats per vector.
    public var dimension: Int
    /// Empty, or one value per key.
    public var metadata: [[UInt8]]
    /// How long the write may take end to end; 0 for the server's default.
    public var deadlineMilliseconds: Int
    /// To a shard (protocol version 3): the rows already encoded, one per key, instead of
    /// `vectors` (then empty, and `dimension` 0).
    public var encoded: [EncodedRow]
    /// The version of the trained state that made `encoded` (0 without).
    public var trainedVersion: UInt64

    /// An upsert batch.
    public init(keys: [String], vectors: [Float], dimension: Int, metadata: [[UInt8]] = [], deadlineMilliseconds: Int = 0,
                encoded: [EncodedRow] = [], trainedVersion: UInt64 = 0) {
        self.keys = keys
        self.vectors = vectors
        self.dimension = dimension
        self.metadata = metadata
        self.deadlineMilliseconds = deadlineMilliseconds
        self.encoded = encoded
        self.trainedVersion = trainedVersion
    }
}

/// One row's codes as a trained state makes them: what a shard stores for a vector.
public struct EncodedRow: Sendable, Equatable {
    /// Its inverted list.
    public var list: Int
    /// One byte per sub-quantizer.
    public var code: [UInt8]
    /// The refine code (empty without refinement).
    public var refine: [UInt8]

    /// A row's codes.
    public init(list: Int, code: [UInt8], refine: [UInt8]) {
        self.list = list
        self.code = code
        self.refine = refine
    }
}

/// A collection's vector space as the coordinator holds it (the protocol's `SchemaResult`).
public struct CollectionSchema: Sendable, Equatable {
    /// Dimension of stored vectors.
    public var dimension: Int
    /// "l2" or "ip".
    public var metric: String
    /// The index configuration (factory string, as the cluster file gives it).
    public var factory: String
    /// Vectors are L2-normalised (a whitening implies it too).
    public var normalize: Bool
    /// Dimension of the vectors clients send: the whitening's input, else `dimension`.
    public var inputDimension: Int
    /// The coordinator holds a whitening.
    public var whitened: Bool
    /// Virtual buckets keys hash into.
    public var buckets: Int
    /// Shard nodes.
    public var shardCount: Int

    /// A schema.
    public init(dimension: Int, metric: String, factory: String, normalize: Bool, inputDimension: Int, whitened: Bool,
                buckets: Int, shardCount: Int) {
        self.dimension = dimension
        self.metric = metric
        self.factory = factory
        self.normalize = normalize
        self.inputDimension = inputDimension
        self.whitened = whitened
        self.buckets = buckets
        self.shardCount = shardCount
    }
}

/// One entry of a `fetch` answer.
public struct FetchedEntry: Sendable, Equatable {
    /// The key asked for.
    public var key: String
    /// Whether it is stored.
    public var found: Bool
    /// Its stored approximation (refine codes when the index has them).
    public var vector: [Float]
    /// Its metadata.
    public var metadata: [UInt8]

    /// A fetched entry.
    public init(key: String, found: Bool, vector: [Float] = [], metadata: [UInt8] = []) {
        self.key = key
        self.found = found
        self.vector = vector
        self.metadata = metadata
    }
}

/// A shard's counts.
public struct ShardStatistics: Sendable, Equatable {
    /// Entries searches can return.
    public var liveEntries: UInt64
    /// Segment files.
    public var segments: UInt64
    /// Entries in segment files (deleted ones included).
    public var sealedEntries: UInt64
    /// Entries in memory, not yet sealed.
    public var memoryEntries: UInt64
    /// The index configuration.
    public var factory: String
    /// Vector dimension.
    public var dimension: Int
    /// The trained-state version (CRC32C of the trained index file).
    public var trainedVersion: UInt64
    /// "l2" (scores are squared distances, lower is better) or "ip" (higher is better).
    public var metric: String

    /// Counts of a shard (or summed over a cluster).
    public init(liveEntries: UInt64, segments: UInt64, sealedEntries: UInt64, memoryEntries: UInt64,
                factory: String, dimension: Int, trainedVersion: UInt64, metric: String = "") {
        self.metric = metric
        self.liveEntries = liveEntries
        self.segments = segments
        self.sealedEntries = sealedEntries
        self.memoryEntries = memoryEntries
        self.factory = factory
        self.dimension = dimension
        self.trainedVersion = trainedVersion
    }
}

/// An error answer: a code a program can act on and a message a person can.
public struct WireError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The protocol's error codes (see Protocols/README.md).
    public enum Code: Int32, Sendable, Equatable {
        case unspecified = 0, malformed, unsupported, invalidArgument, notReady, overloaded,
             deadlineExceeded, storage, unavailable, internalError, staleMap, unauthorized
    }

    /// What kind of failure.
    public var code: Code
    /// What went wrong, naming the field or shard.
    public var message: String
    /// The request it answers (0 when none could be read).
    public var requestID: UInt64

    /// An error answer.
    public init(_ code: Code, _ message: String, requestID: UInt64 = 0) {
        self.code = code
        self.message = message
        self.requestID = requestID
    }

    public var description: String { "\(code): \(message)" }
}
