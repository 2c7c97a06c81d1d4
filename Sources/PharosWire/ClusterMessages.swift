/// Bucket moves and cluster administration: the messages of `Protocols/pharos.proto` that
/// the elastic cluster adds (`BucketRead` ... `Rebalance`), as Swift values.

/// A set of buckets as it travels: the cluster's bucket count and a bitmap of
/// `ceil(count / 8)` bytes, bucket b in bit `b % 8` of byte `b / 8`. A count of 0 means
/// every bucket (no filter).
public struct BucketMask: Sendable, Equatable {
    /// The cluster's bucket count; 0 for "every entry".
    public var count: Int
    /// The bitmap.
    public var bits: [UInt8]

    /// A mask.
    public init(count: Int = 0, bits: [UInt8] = []) {
        self.count = count
        self.bits = bits
    }

    /// No filter: every entry.
    public static let everything = BucketMask()
}

/// One stored entry as a bucket move carries it: codes as stored.
public struct MovedEntry: Sendable, Equatable {
    /// The key.
    public var key: String
    /// Its inverted list.
    public var list: Int
    /// One byte per sub-quantizer.
    public var code: [UInt8]
    /// The refine code (empty without refinement).
    public var refine: [UInt8]
    /// Metadata bytes.
    public var metadata: [UInt8]

    /// An entry.
    public init(key: String, list: Int, code: [UInt8], refine: [UInt8], metadata: [UInt8]) {
        self.key = key
        self.list = list
        self.code = code
        self.refine = refine
        self.metadata = metadata
    }
}

/// A page of a bucket's live entries, in (key hash, key) order after a cursor.
public struct BucketReadRequest: Sendable, Equatable {
    /// The buckets read.
    public var buckets: BucketMask
    /// Read after this (key hash, key); nil from the start.
    public var after: (hash: UInt64, key: String)?
    /// Entries at most (1...`RequestLimits.maximumBucketPage`).
    public var limit: Int

    /// A read.
    public init(buckets: BucketMask, after: (hash: UInt64, key: String)? = nil, limit: Int) {
        self.buckets = buckets
        self.after = after
        self.limit = limit
    }

    public static func == (a: BucketReadRequest, b: BucketReadRequest) -> Bool {
        a.buckets == b.buckets && a.limit == b.limit && a.after?.hash == b.after?.hash && a.after?.key == b.after?.key
    }
}

/// A node of the cluster map, as `ClusterStatusResult` reports it.
public struct NodeReport: Sendable, Equatable, Codable {
    /// Its name.
    public var name: String
    /// host:port.
    public var address: String
    /// Its zone label (empty: none).
    public var zone: String
    /// "joining", "active", "draining" or "down".
    public var state: String
    /// Bucket copies it holds.
    public var buckets: Int
    /// Live entries it reported.
    public var entries: UInt64
    /// Why it could not be asked, if it could not.
    public var problem: String
    /// What it runs, from its Hello (empty until the coordinator connected).
    public var software: String
    /// The protocol version the coordinator and it agreed on (0: not yet connected).
    public var protocolVersion: UInt32

    /// A node report.
    public init(name: String, address: String, zone: String = "", state: String, buckets: Int, entries: UInt64 = 0, problem: String = "",
                software: String = "", protocolVersion: UInt32 = 0) {
        self.software = software
        self.protocolVersion = protocolVersion
        self.name = name
        self.address = address
        self.zone = zone
        self.state = state
        self.buckets = buckets
        self.entries = entries
        self.problem = problem
    }
}

/// A bucket move in progress.
public struct MoveReport: Sendable, Equatable, Codable {
    /// The bucket.
    public var bucket: Int
    /// The node it leaves (empty: a new copy).
    public var source: String
    /// The node it goes to.
    public var target: String
    /// "copying", "flipping" or "dropping".
    public var phase: String
    /// Entries copied so far.
    public var entriesCopied: UInt64
    /// Bytes copied so far.
    public var bytesCopied: UInt64

    /// A move report.
    public init(bucket: Int, source: String, target: String, phase: String, entriesCopied: UInt64 = 0, bytesCopied: UInt64 = 0) {
        self.bucket = bucket
        self.source = source
        self.target = target
        self.phase = phase
        self.entriesCopied = entriesCopied
        self.bytesCopied = bytesCopied
    }
}

/// The cluster map and the moves running on it (`ClusterStatusResult`).
public struct ClusterReport: Sendable, Equatable, Codable {
    /// The map's epoch.
    public var epoch: UInt64
    /// Virtual buckets.
    public var buckets: Int
    /// The replication factor.
    public var replication: Int
    /// Every node.
    public var nodes: [NodeReport]
    /// Moves in progress.
    public var moves: [MoveReport]
    /// Moves planned and not started.
    public var movesPending: Int
    /// Buckets with fewer serving copies than the replication factor.
    public var bucketsUnderReplicated: Int
    /// Moves finished since the coordinator started.
    public var movesDone: UInt64
    /// The last move failure, if any.
    public var lastProblem: String
    /// Entries copied by finished moves since the coordinator started.
    public var entriesMoved: UInt64 = 0
    /// Their bytes (keys, codes, metadata).
    public var bytesMoved: UInt64 = 0

    /// A report.
    public init(epoch: UInt64, buckets: Int, replication: Int, nodes: [NodeReport], moves: [MoveReport] = [], movesPending: Int = 0,
                bucketsUnderReplicated: Int = 0, movesDone: UInt64 = 0, lastProblem: String = "", entriesMoved: UInt64 = 0, bytesMoved: UInt64 = 0) {
        self.entriesMoved = entriesMoved
        self.bytesMoved = bytesMoved
        self.epoch = epoch
        self.buckets = buckets
        self.replication = replication
        self.nodes = nodes
        self.moves = moves
        self.movesPending = movesPending
        self.bucketsUnderReplicated = bucketsUnderReplicated
        self.movesDone = movesDone
        self.lastProblem = lastProblem
    }
}

/// A node joining the cluster (`AddNode`).
public struct NodeAddition: Sendable, Equatable {
    /// Its name (unique in the map).
    public var name: String
    /// Its host.
    public var host: String
    /// Its port.
    public var port: Int
    /// Its zone label (empty: none).
    public var zone: String

    /// An addition.
    public init(name: String, host: String, port: Int, zone: String = "") {
        self.name = name
        self.host = host
        self.port = port
        self.zone = zone
    }
}

/// What a rebalance aims for (`Rebalance`).
public struct RebalanceRequest: Sendable, Equatable {
    /// The replication factor to reach; 0 keeps the current one.
    public var replication: Int
    /// Moves running at once; 0 means 1.
    public var maximumConcurrentMoves: Int
    /// Megabytes per second copied; 0 is unthrottled.
    public var rateMegabytes: Double

    /// A rebalance.
    public init(replication: Int = 0, maximumConcurrentMoves: Int = 0, rateMegabytes: Double = 0) {
        self.replication = replication
        self.maximumConcurrentMoves = maximumConcurrentMoves
        self.rateMegabytes = rateMegabytes
    }
}
