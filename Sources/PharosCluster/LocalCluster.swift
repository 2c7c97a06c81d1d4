import Foundation
import PharosCoordinator
import PharosDurability
import PharosIndex

/// The embedded default cluster (`pharos cluster up`): N shard processes and a coordinator on
/// loopback, data under one folder whose `cluster.json` is the cluster's description.
public struct LocalCluster: Sendable {
    /// What the flags asked for; nil means "the file's value, or the default for a new folder".
    public struct Settings: Sendable {
        /// Shard nodes (default 3).
        public var shards: Int?
        /// Coordinator port; shard i listens on port + 1 + i (default 7700).
        public var port: Int?
        /// Vector dimension (required for a new folder).
        public var dimension: Int?
        /// Similarity (default l2).
        public var metric: Metric?
        /// Index configuration (default `IVF256,PQ32x4fs,RefineSQ8`).
        public var factory: String?
        /// Virtual buckets (default 4096).
        public var buckets: Int?
        /// L2-normalise vectors.
        public var normalize = false
        /// Copies of each bucket (default 1).
        public var replication: Int?

        /// Settings from flags.
        public init(shards: Int? = nil, port: Int? = nil, dimension: Int? = nil, metric: Metric? = nil, factory: String? = nil,
                    buckets: Int? = nil, normalize: Bool = false, replication: Int? = nil) {
            self.replication = replication
            self.shards = shards
            self.port = port
            self.dimension = dimension
            self.metric = metric
            self.factory = factory
            self.buckets = buckets
            self.normalize = normalize
        }
    }

    /// Settings that cannot make a cluster, or disagree with the folder's file.
    public struct SettingsError: Error, CustomStringConvertible {
        /// What is wrong, naming the flag.
        public var description: String
    }

    /// The data folder.
    public let data: String
    /// The cluster it runs.
    public let map: ClusterMap

    /// The folder's cluster: its `cluster.json` when there is one (settings given must agree
    /// with it), else a new one made from the settings and written atomically.
    public init(data: String, settings: Settings) throws {
        self.data = data
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let clusterFile = data + "/cluster.json"
        if FileManager.default.fileExists(atPath: clusterFile) {
            map = try ClusterMap.load(clusterFile)
            try Self.check(settings, against: map, file: clusterFile)
        } else {
            map = try Self.newMap(settings, data: data)
            do { try map.validate(path: "the flags") } catch let error as ClusterMapError { throw SettingsError(description: error.description) }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try FileIO.writeAtomically(Array(try encoder.encode(map)), to: clusterFile)
        }
    }

    /// The cluster file.
    public var clusterFile: String { data + "/cluster.json" }

    /// The coordinator's port.
    public var port: Int { (map.shards.first?.port ?? 7701) - 1 }

    private static func newMap(_ s: Settings, data: String) throws -> ClusterMap {
        guard let dimension = s.dimension else {
            throw SettingsError(description: "--dimension is required for a new cluster (no \(data)/cluster.json yet)")
        }
        let shards = s.shards ?? 3, port = s.port ?? 7700
        guard (1...64).contains(shards) else { throw SettingsError(description: "--shards \(shards): expected 1...64") }
        guard (1...(65535 - 64)).contains(port) else { throw SettingsError(description: "--port \(port): expected 1...\(65535 - 64)") }
        return ClusterMap(collection: .init(dimension: dimension, metric: s.metric ?? .l2, factory: s.factory ?? "IVF256,PQ32x4fs,RefineSQ8",
                                            normalize: s.normalize),
                          buckets: s.buckets ?? 4096,
                          shards: (0..<shards).map { .init(name: "shard-\($0)", host: "127.0.0.1", port: port + 1 + $0) },
                          replication: s.replication ?? 1)
    }

    /// Settings given for an existing cluster must agree with its file.
    private static func check(_ s: Settings, against map: ClusterMap, file: String) throws {
        var conflicts: [String] = []
        func compare<T: Equatable>(_ flag: String, _ given: T?, _ stored: T) {
            if let given, given != stored { conflicts.append("--\(flag) \(given), but the file says \(stored)") }
        }
        compare("dimension", s.dimension, map.collection.dimension)
        compare("metric", s.metric?.rawValue, map.collection.metric.rawValue)
        compare("factory", s.factory, map.collection.factory)
        compare("buckets", s.buckets, map.buckets)
        compare("shards", s.shards, map.shards.count)
        compare("port", s.port, (map.shards.first?.port ?? 1) - 1)
        compare("replication", s.replication, map.replication)
        if s.normalize && !map.collection.normalize { conflicts.append("--normalize, but the file does not normalise") }
        guard conflicts.isEmpty else {
            throw SettingsError(description: "\(file) already describes this cluster: \(conflicts.joined(separator: "; ")). Leave those flags out to use it, or use another --data folder.")
        }
    }

    /// Starts every shard and then the coordinator under `supervisor`, the executables taken
    /// from `binaries` (the folder of `pharos`); stops those started if one fails.
    public func start(under supervisor: Supervisor, binaries: URL) throws {
        do {
            for shard in map.shards {
                try supervisor.start(.init(name: shard.name, binary: binaries.appendingPathComponent("pharos-shard"),
                                           arguments: ["serve", "--data", "\(data)/\(shard.name)", "--port", "\(shard.port)", "--name", shard.name]))
            }
            try supervisor.start(.init(name: "coordinator", binary: binaries.appendingPathComponent("pharos-coordinator"),
                                       arguments: ["--cluster", clusterFile, "--port", "\(port)", "--state", "\(data)/coordinator"]))
        } catch {
            supervisor.stopAll()
            throw error
        }
    }
}
