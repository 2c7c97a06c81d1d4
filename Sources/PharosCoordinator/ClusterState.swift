import Foundation
import PharosDurability
import PharosKernels

/// The versioned cluster map: which nodes exist, in what state, which of them serve each
/// bucket, and which buckets are being copied where. Every change makes a new epoch; shards
/// refuse requests routed by an older one (`STALE_MAP`).
///
/// Kept in the coordinator's state folder as `cluster-state.json` (a CRC32C over the
/// canonical encoding, replaced atomically), so a restarted coordinator resumes where it was,
/// moves included. The cluster file only seeds it.
public struct ClusterState: Codable, Sendable, Equatable {
    /// What a node is doing.
    public enum NodeState: String, Codable, Sendable, CaseIterable {
        /// Added; receives the trained state, holds no bucket yet.
        case joining
        /// Serves its buckets.
        case active
        /// Being emptied: its buckets move away, then it leaves the map.
        case draining
        /// Not answering: reads and writes skip it; buckets with another copy no longer list it.
        case down
    }

    /// One shard node.
    public struct Node: Codable, Sendable, Equatable {
        /// Unique name.
        public var name: String
        /// Address.
        public var host: String
        /// Port.
        public var port: Int
        /// Zone label (empty: none).
        public var zone: String
        /// What it is doing.
        public var state: NodeState
        /// Asked to leave (`RemoveNode`): it drains again if it comes back after going down.
        public var leaving: Bool

        /// A node.
        public init(name: String, host: String, port: Int, zone: String = "", state: NodeState = .active, leaving: Bool = false) {
            self.name = name
            self.host = host
            self.port = port
            self.zone = zone
            self.state = state
            self.leaving = leaving
        }

        private enum CodingKeys: String, CodingKey { case name, host, port, zone, state, leaving }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            host = try c.decode(String.self, forKey: .host)
            port = try c.decode(Int.self, forKey: .port)
            zone = try c.decodeIfPresent(String.self, forKey: .zone) ?? ""
            state = try c.decode(NodeState.self, forKey: .state)
            leaving = try c.decodeIfPresent(Bool.self, forKey: .leaving) ?? false
        }

        var address: ClusterMap.ShardAddress { ClusterMap.ShardAddress(name: name, host: host, port: port) }
    }

    /// A bucket copy in progress: while copying, writes of the bucket go to `target` as
    /// well; once flipped (the target serves it), the source's copy is dropped.
    public struct Move: Codable, Sendable, Equatable {
        /// Where a move is.
        public enum Phase: String, Codable, Sendable {
            /// Entries stream to the target; writes go to both.
            case copying
            /// The target serves the bucket; the source's copy is being dropped.
            case dropping
        }
        /// The bucket.
        public var bucket: Int
        /// The node it leaves; nil when a new copy is made (raising the replication).
        public var source: String?
        /// The node it goes to.
        public var target: String
        /// Where it is.
        public var phase: Phase
        /// The run that copies it (a coordinator's name and a run id): only that run may flip
        /// it, so a coordinator that lost the mover role cannot flip a copy another one restarted.
        public var owner: String

        /// A move.
        public init(bucket: Int, source: String?, target: String, phase: Phase = .copying, owner: String = "") {
            self.bucket = bucket
            self.source = source
            self.target = target
            self.phase = phase
            self.owner = owner
        }

        private enum CodingKeys: String, CodingKey { case bucket, source, target, phase, owner }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            bucket = try c.decode(Int.self, forKey: .bucket)
            source = try c.decodeIfPresent(String.self, forKey: .source)
            target = try c.decode(String.self, forKey: .target)
            phase = try c.decode(Phase.self, forKey: .phase)
            owner = try c.decodeIfPresent(String.self, forKey: .owner) ?? ""
        }
    }

    /// The map's version; every change raises it.
    public var epoch: UInt64
    /// Virtual buckets.
    public var buckets: Int
    /// Copies each bucket should have.
    public var replication: Int
    /// Every node, in the order they joined.
    public var nodes: [Node]
    /// For each bucket, the nodes serving it (names), first the one reads prefer.
    public var replicas: [[String]]
    /// Copies in progress.
    public var moves: [Move]
    /// Even out the nodes (set by `Rebalance`, cleared once nothing is left to move), and how:
    /// moves at once, bytes per second each copies (0: unthrottled). In the map so that
    /// whichever coordinator runs the moves follows it.
    public var balance = false
    /// Move groups at once.
    public var concurrentMoves = 1
    /// Bytes per second a move copies; 0 is unthrottled.
    public var rateBytesPerSecond: Double = 0

    private enum CodingKeys: String, CodingKey { case epoch, buckets, replication, nodes, replicas, moves, balance, concurrentMoves, rateBytesPerSecond }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        epoch = try c.decode(UInt64.self, forKey: .epoch)
        buckets = try c.decode(Int.self, forKey: .buckets)
        replication = try c.decode(Int.self, forKey: .replication)
        nodes = try c.decode([Node].self, forKey: .nodes)
        replicas = try c.decode([[String]].self, forKey: .replicas)
        moves = try c.decode([Move].self, forKey: .moves)
        balance = try c.decodeIfPresent(Bool.self, forKey: .balance) ?? false
        concurrentMoves = try c.decodeIfPresent(Int.self, forKey: .concurrentMoves) ?? 1
        rateBytesPerSecond = try c.decodeIfPresent(Double.self, forKey: .rateBytesPerSecond) ?? 0
    }

    /// The state a cluster file describes: epoch 1, its shards active, each bucket on its
    /// assigned shard and the next `replication - 1` shards after it.
    public init(map: ClusterMap) {
        epoch = 1
        buckets = map.buckets
        replication = map.replication
        nodes = map.shards.map { Node(name: $0.name, host: $0.host, port: $0.port, zone: $0.zone ?? "") }
        let names = map.shards.map(\.name), n = names.count
        replicas = (0..<map.buckets).map { b in
            let first = map.assignment?[b] ?? b % n
            return (0..<Swift.min(map.replication, n)).map { names[(first + $0) % n] }
        }
        moves = []
    }

    /// The node named `name`.
    public func node(_ name: String) -> Node? { nodes.first { $0.name == name } }

    /// Buckets served by fewer nodes than the replication factor.
    public var underReplicated: Int { replicas.filter { $0.count < replication }.count }

    /// Bucket copies each node serves.
    public var bucketsPerNode: [String: Int] {
        var counts = Dictionary(uniqueKeysWithValues: nodes.map { ($0.name, 0) })
        for list in replicas { for name in list { counts[name, default: 0] += 1 } }
        return counts
    }

    /// Checks that the state is consistent: names unique, every replica and move names a node,
    /// no bucket listed twice on one node.
    public func validate(path: String) throws {
        func bad(_ problem: String) -> ClusterMapError { ClusterMapError(path: path, problem: problem) }
        guard buckets >= 1, replicas.count == buckets else { throw bad("\(replicas.count) replica lists for \(buckets) buckets") }
        guard (1...8).contains(replication) else { throw bad("replication = \(replication), expected 1...8") }
        let names = Set(nodes.map(\.name))
        guard names.count == nodes.count else { throw bad("node names repeat") }
        for (b, list) in replicas.enumerated() {
            guard Set(list).count == list.count else { throw bad("bucket \(b) lists a node twice: \(list)") }
            if let unknown = list.first(where: { !names.contains($0) }) { throw bad("bucket \(b) names unknown node \(unknown.debugDescription)") }
        }
        for move in moves {
            guard (0..<buckets).contains(move.bucket), names.contains(move.target), move.source.map(names.contains) ?? true else {
                throw bad("move of bucket \(move.bucket) names an unknown bucket or node")
            }
        }
    }

    // MARK: Persistence

    /// The file name inside the coordinator's state folder.
    public static let fileName = "cluster-state.json"

    private struct Stored: Codable {
        var crc32c: UInt32
        var state: ClusterState
    }

    private static func canonical(_ state: ClusterState) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(state))
    }

    /// The state as its file holds it: JSON with a CRC32C over the canonical encoding; pretty
    /// for a file a person may read, compact for etcd (whose requests are size-limited).
    public func encodedFile(pretty: Bool = true) throws -> [UInt8] {
        let body = try Self.canonical(self)
        let crc = body.withUnsafeBytes { pharos_crc32c(0, $0.baseAddress, $0.count) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys]
        return Array(try encoder.encode(Stored(crc32c: crc, state: self)))
    }

    /// Writes the state to `path` atomically, with its checksum.
    public func save(_ path: String) throws {
        try FileIO.writeAtomically(try encodedFile(), to: path)
    }

    /// Reads a state written by `save`; a damaged or inconsistent file is an error naming it.
    public static func load(_ path: String) throws -> ClusterState {
        try decode(try FileIO.readWholeFile(path, maximumBytes: 256 << 20), path: path)
    }

    /// A state from the bytes `encodedFile` made; damage is an error naming `path`.
    public static func decode(_ bytes: [UInt8], path: String) throws -> ClusterState {
        let stored: Stored
        do { stored = try JSONDecoder().decode(Stored.self, from: Data(bytes)) } catch {
            throw ClusterMapError(path: path, problem: "not a cluster state file: \(error)")
        }
        let body = try canonical(stored.state)
        let crc = body.withUnsafeBytes { pharos_crc32c(0, $0.baseAddress, $0.count) }
        guard crc == stored.crc32c else {
            throw ClusterMapError(path: path, problem: "CRC32C mismatch (stored \(stored.crc32c), computed \(crc)): the file is damaged")
        }
        try stored.state.validate(path: path)
        return stored.state
    }
}
