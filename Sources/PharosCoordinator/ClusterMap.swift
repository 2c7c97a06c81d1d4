import Foundation
import PharosIndex
import PharosRouting
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
        /// Vector dimension (stored vectors; a whitening may take larger input).
        public var dimension: Int
        /// The similarity measure (`"l2"` or `"ip"` in the file).
        public var metric: Metric
        /// Index configuration (factory string).
        public var factory: String
        /// L2-normalise vectors (queries and ingested) before use: for inner-product collections
        /// of descriptors. Absent in the file means false.
        public var normalize: Bool

        /// A collection description.
        public init(dimension: Int, metric: Metric, factory: String, normalize: Bool = false) {
            self.dimension = dimension
            self.metric = metric
            self.factory = factory
            self.normalize = normalize
        }

        private enum CodingKeys: String, CodingKey { case dimension, metric, factory, normalize }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            dimension = try c.decode(Int.self, forKey: .dimension)
            let name = try c.decode(String.self, forKey: .metric)
            guard let metric = Metric(rawValue: name) else {
                throw DecodingError.dataCorruptedError(forKey: .metric, in: c, debugDescription: Collection.badMetric(name))
            }
            self.metric = metric
            factory = try c.decode(String.self, forKey: .factory)
            normalize = try c.decodeIfPresent(Bool.self, forKey: .normalize) ?? false
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(dimension, forKey: .dimension)
            try c.encode(metric.rawValue, forKey: .metric)
            try c.encode(factory, forKey: .factory)
            if normalize { try c.encode(true, forKey: .normalize) }
        }

        static func badMetric(_ name: String) -> String {
            "collection.metric = \(name.debugDescription), expected \"l2\" or \"ip\""
        }

        /// The collection's vector space with `whitening` (the coordinator's, once trained).
        public func space(whitening: Whitening? = nil) throws -> VectorSpace {
            try VectorSpace(dimension: dimension, metric: metric, normalization: normalize ? .l2 : .none, whitening: whitening)
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
        /// Its zone label (absent: none); coordinators of the same `--zone` prefer it for reads.
        public var zone: String?

        /// A shard address.
        public init(name: String, host: String, port: Int, zone: String? = nil) {
            self.name = name
            self.host = host
            self.port = port
            self.zone = zone
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
    /// Copies of each bucket (1...8, at most the shard count): the first on its assigned shard,
    /// the others on the shards after it. Absent in the file means 1.
    public var replication: Int

    /// A cluster description.
    public init(collection: Collection, buckets: Int = 4096, shards: [ShardAddress], assignment: [Int]? = nil, replication: Int = 1) {
        self.collection = collection
        self.buckets = buckets
        self.shards = shards
        self.assignment = assignment
        self.replication = replication
    }

    private enum CodingKeys: String, CodingKey { case collection, buckets, shards, assignment, replication }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        collection = try c.decode(Collection.self, forKey: .collection)
        buckets = try c.decode(Int.self, forKey: .buckets)
        shards = try c.decode([ShardAddress].self, forKey: .shards)
        assignment = try c.decodeIfPresent([Int].self, forKey: .assignment)
        replication = try c.decodeIfPresent(Int.self, forKey: .replication) ?? 1
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(collection, forKey: .collection)
        try c.encode(buckets, forKey: .buckets)
        try c.encode(shards, forKey: .shards)
        try c.encodeIfPresent(assignment, forKey: .assignment)
        if replication != 1 { try c.encode(replication, forKey: .replication) }
    }

    /// Reads and checks a cluster file; errors name the file and the field.
    public static func load(_ path: String) throws -> ClusterMap {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ClusterMapError(path: path, problem: "cannot read the file")
        }
        try checkKeys(data, path: path)
        let map: ClusterMap
        do { map = try JSONDecoder().decode(ClusterMap.self, from: data) } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            // A value this format refuses (the metric): the message names the field already.
            throw ClusterMapError(path: path, problem: context.debugDescription)
        } catch {
            throw ClusterMapError(path: path, problem: "not a cluster file: \(error)")
        }
        try map.validate(path: path)
        return map
    }

    /// Refuses keys this format does not have: a misspelt `"normalise"` or `"dimensions"`
    /// would otherwise be ignored without a word.
    private static func checkKeys(_ data: Data, path: String) throws {
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ClusterMapError(path: path, problem: "not a JSON object")
        }
        func check(_ object: [String: Any], allowed: Set<String>, at place: String) throws {
            if let unknown = object.keys.filter({ !allowed.contains($0) }).sorted().first {
                throw ClusterMapError(path: path, problem: "unknown key \(unknown.debugDescription) in \(place); allowed: \(allowed.sorted().joined(separator: ", "))")
            }
        }
        try check(root, allowed: ["collection", "buckets", "shards", "assignment", "replication"], at: "the top level")
        if let collection = root["collection"] as? [String: Any] {
            try check(collection, allowed: ["dimension", "metric", "factory", "normalize"], at: "collection")
        }
        for (i, shard) in ((root["shards"] as? [Any]) ?? []).enumerated() {
            if let shard = shard as? [String: Any] { try check(shard, allowed: ["name", "host", "port", "zone"], at: "shards[\(i)]") }
        }
    }

    /// Checks every field's range and consistency.
    public func validate(path: String = "cluster map") throws {
        func bad(_ problem: String) -> ClusterMapError { ClusterMapError(path: path, problem: problem) }
        guard collection.dimension > 0 else { throw bad("collection.dimension = \(collection.dimension), expected >= 1") }
        let metric = collection.metric
        // Shards hold IVF/PQ indexes: a factory they cannot serve fails here, not at training.
        do {
            guard try IndexFactory.make(collection.factory, dimension: collection.dimension, metric: metric) is IVFPQIndex else {
                throw bad("collection.factory = \(collection.factory.debugDescription) is not an IVF/PQ index, which is what shards serve (e.g. IVF256,PQ32x4fs,RefineSQ8)")
            }
        } catch let error as ClusterMapError { throw error } catch {
            throw bad("collection.factory = \(collection.factory.debugDescription): \(error)")
        }
        guard !shards.isEmpty else { throw bad("shards is empty") }
        guard buckets >= shards.count, buckets <= 1 << 20 else { throw bad("buckets = \(buckets), expected \(shards.count)...\(1 << 20)") }
        guard Set(shards.map(\.name)).count == shards.count else { throw bad("shard names repeat") }
        for s in shards where !(1...65535).contains(s.port) { throw bad("shard \(s.name): port \(s.port) outside 1...65535") }
        guard (1...Swift.min(8, shards.count)).contains(replication) else {
            throw bad("replication = \(replication), expected 1...\(Swift.min(8, shards.count)) (at most the shard count)")
        }
        if let assignment {
            guard assignment.count == buckets else { throw bad("assignment has \(assignment.count) entries for \(buckets) buckets") }
            if let wrong = assignment.firstIndex(where: { !(0..<shards.count).contains($0) }) {
                throw bad("assignment[\(wrong)] = \(assignment[wrong]) names no shard (0..<\(shards.count))")
            }
        }
    }

    /// The bucket of `key`.
    public func bucket(of key: String) -> Int { KeyHash.bucket(of: key, buckets: buckets) }

    /// The index (in `shards`) of the shard that owns `key`.
    public func shard(of key: String) -> Int {
        let b = bucket(of: key)
        return assignment?[b] ?? b % shards.count
    }

}

/// A cluster file that cannot be used.
public struct ClusterMapError: Error, CustomStringConvertible, Equatable {
    /// The cluster file.
    public var path: String
    /// What is wrong, naming the field.
    public var problem: String
    public var description: String { "\(path): \(problem)" }
}
