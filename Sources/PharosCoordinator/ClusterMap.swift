import Foundation
import PharosVectors

/// The static cluster description the coordinator reads: the collection, the shards, and
/// which shard owns each of the virtual buckets keys hash into.
///
/// ```json
/// { "collection": { "dimension": 784, "metric": "l2", "factory": "IVF256,PQ56x4fs,RefineSQ8" },
///   "buckets": 4096,
///   "shards": [ { "name": "s0", "host": "127.0.0.1", "port": 7701 }, ... ],
///   "assignment": [0, 1, 2, ...] }          // optional: bucket -> shard index; default b % shards
/// ```
public struct ClusterMap: Codable, Sendable, Equatable {
    /// What is indexed and how.
    public struct Collection: Codable, Sendable, Equatable {
        /// Vector dimension.
        public var dimension: Int
        /// "l2" or "ip".
        public var metric: String
        /// Index configuration (factory string).
        public var factory: String
        /// L2-normalise vectors (queries and ingested) before use: for inner-product collections of descriptors.
        public var normalize: Bool?

        /// A collection description.
        public init(dimension: Int, metric: String, factory: String, normalize: Bool? = nil) {
            self.dimension = dimension
            self.metric = metric
            self.factory = factory
            self.normalize = normalize
        }
    }

    /// One shard node.
    public struct ShardAddress: Codable, Sendable, Equatable {
        /// The shard's name (in logs and partial answers).
        public var name: String
        /// Its address.
        public var host: String
        /// Its port.
        public var port: Int

        /// A shard address.
        public init(name: String, host: String, port: Int) {
            self.name = name
            self.host = host
            self.port = port
        }
    }

    /// What is indexed.
    public var collection: Collection
    /// Virtual buckets keys hash into.
    public var buckets: Int
    /// The shard nodes.
    public var shards: [ShardAddress]
    /// Bucket -> shard index; nil for `bucket % shards.count`.
    public var assignment: [Int]?

    /// A cluster description.
    public init(collection: Collection, buckets: Int = 4096, shards: [ShardAddress], assignment: [Int]? = nil) {
        self.collection = collection
        self.buckets = buckets
        self.shards = shards
        self.assignment = assignment
    }

    /// Reads and checks a cluster file; errors name the file and the field.
    public static func load(_ path: String) throws -> ClusterMap {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ClusterMapError(path: path, problem: "cannot read the file")
        }
        let map: ClusterMap
        do { map = try JSONDecoder().decode(ClusterMap.self, from: data) } catch {
            throw ClusterMapError(path: path, problem: "not a cluster file: \(error)")
        }
        try map.validate(path: path)
        return map
    }

    /// Checks every field's range and consistency.
    public func validate(path: String = "cluster map") throws {
        func bad(_ problem: String) -> ClusterMapError { ClusterMapError(path: path, problem: problem) }
        guard collection.dimension > 0 else { throw bad("collection.dimension = \(collection.dimension), expected >= 1") }
        guard ["l2", "ip"].contains(collection.metric) else { throw bad("collection.metric = \(collection.metric.debugDescription), expected \"l2\" or \"ip\"") }
        guard !shards.isEmpty else { throw bad("shards is empty") }
        guard buckets >= shards.count, buckets <= 1 << 20 else { throw bad("buckets = \(buckets), expected \(shards.count)...\(1 << 20)") }
        guard Set(shards.map(\.name)).count == shards.count else { throw bad("shard names repeat") }
        for s in shards where !(1...65535).contains(s.port) { throw bad("shard \(s.name): port \(s.port) outside 1...65535") }
        if let assignment {
            guard assignment.count == buckets else { throw bad("assignment has \(assignment.count) entries for \(buckets) buckets") }
            if let wrong = assignment.firstIndex(where: { !(0..<shards.count).contains($0) }) {
                throw bad("assignment[\(wrong)] = \(assignment[wrong]) names no shard (0..<\(shards.count))")
            }
        }
    }

    /// The bucket of `key`.
    public func bucket(of key: String) -> Int { Int(KeyHash.of(key) % UInt64(buckets)) }

    /// The index (in `shards`) of the shard that owns `key`.
    public func shard(of key: String) -> Int {
        let b = bucket(of: key)
        return assignment?[b] ?? b % shards.count
    }

    /// Whether higher scores are better (inner product).
    public var higherIsBetter: Bool { collection.metric == "ip" }

    /// Whether vectors are unit-norm (normalised, or an inner-product collection of descriptors).
    public var unitNorm: Bool { collection.normalize == true || collection.metric == "ip" }
}

/// A cluster file that cannot be used.
public struct ClusterMapError: Error, CustomStringConvertible, Equatable {
    /// The cluster file.
    public var path: String
    /// What is wrong, naming the field.
    public var problem: String
    public var description: String { "\(path): \(problem)" }
}
