import Foundation
import PharosDurability
import PharosWire
import Synchronization

/// Where the cluster map is kept, with a version so that several coordinators can change it
/// safely (compare-and-swap), and who of them runs the bucket moves.
protocol MapStore: Sendable {
    /// The kept map and its version; nil when none is kept yet.
    func load() async throws -> (state: ClusterState, version: Int64)?
    /// Replaces the map if its version is still `expected` (nil: none is kept); the new
    /// version, or nil when another coordinator changed it first.
    func replace(_ state: ClusterState, expecting expected: Int64?) async throws -> Int64?
    /// Whether this coordinator runs the moves now (and keeps that right alive).
    func holdsMoverRole() async -> Bool
    /// A name for messages.
    var description: String { get }
}

/// The map in the coordinator's state folder (`cluster-state.json`): one coordinator, which
/// always runs the moves.
struct FileMapStore: MapStore {
    let path: String

    func load() async throws -> (state: ClusterState, version: Int64)? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let state = try ClusterState.load(path)
        return (state, Int64(state.epoch))
    }

    func replace(_ state: ClusterState, expecting expected: Int64?) async throws -> Int64? {
        do { try state.save(path) } catch {
            throw WireError(.storage, "keeping cluster map epoch \(state.epoch) in \(path): \(error)")
        }
        return Int64(state.epoch)
    }

    func holdsMoverRole() async -> Bool { true }

    var description: String { path }
}

/// No place to keep the map: it stays the cluster file's. Shards remember the newest epoch,
/// and one this coordinator forgot at a restart would lock it out of every node.
struct FixedMapStore: MapStore {
    func load() async throws -> (state: ClusterState, version: Int64)? { nil }

    func replace(_ state: ClusterState, expecting expected: Int64?) async throws -> Int64? {
        throw WireError(.unavailable, "the cluster map cannot change: this coordinator keeps no state folder (--state) and no etcd (--etcd)")
    }

    func holdsMoverRole() async -> Bool { true }

    var description: String { "the cluster file" }
}

/// The map in etcd, for several coordinators: every one reads and changes it (a transaction
/// comparing the key's revision), and the one holding the mover lease runs the moves.
///
/// Keys: `<prefix>/map` (the map, as `cluster-state.json` holds it) and `<prefix>/mover` (the
/// name of the coordinator running moves, attached to its lease: it lapses 3 s after that
/// coordinator stops renewing it).
final class EtcdMapStore: MapStore {
    let client: EtcdClient
    let prefix: String
    /// This coordinator's name (the mover key's value).
    let name: String
    /// The lease the mover key is attached to while this process holds the role.
    private let lease = Mutex<String?>(nil)
    static let leaseSeconds = 3

    /// The mover key's value while this process holds the role: its name and a per-process id
    /// (a restarted coordinator of the same name waits for the old lease to lapse).
    let identity: String

    init(client: EtcdClient, prefix: String, name: String) {
        self.client = client
        self.prefix = prefix
        self.name = name
        identity = "\(name) \(UUID().uuidString.prefix(8))"
    }

    var description: String { "etcd \(client.endpoints.map { "\($0.host):\($0.port)" }.joined(separator: ",")) \(prefix)" }

    private var mapKey: String { Data("\(prefix)/map".utf8).base64EncodedString() }
    private var moverKey: String { Data("\(prefix)/mover".utf8).base64EncodedString() }

    private static func int(_ any: Any?) -> Int64? {
        if let s = any as? String { return Int64(s) }
        if let n = any as? NSNumber { return n.int64Value }
        return nil
    }

    func load() async throws -> (state: ClusterState, version: Int64)? {
        let answer = try await client.call("/v3/kv/range", ["key": mapKey])
        guard let kv = (answer["kvs"] as? [[String: Any]])?.first else { return nil }
        guard let value = (kv["value"] as? String).flatMap({ Data(base64Encoded: $0) }), let version = Self.int(kv["mod_revision"]) else {
            throw ClusterMapError(path: description, problem: "the map key holds no value or revision")
        }
        return (try ClusterState.decode(Array(value), path: description + "/map"), version)
    }

    func replace(_ state: ClusterState, expecting expected: Int64?) async throws -> Int64? {
        let compare: [String: Any] = expected.map { ["key": mapKey, "target": "MOD", "result": "EQUAL", "mod_revision": "\($0)"] }
            ?? ["key": mapKey, "target": "CREATE", "result": "EQUAL", "create_revision": "0"]
        let value = Data(try state.encodedFile(pretty: false)).base64EncodedString()
        let answer = try await client.call("/v3/kv/txn", [
            "compare": [compare],
            "success": [["request_put": ["key": mapKey, "value": value]]],
        ])
        guard answer["succeeded"] as? Bool == true else { return nil }
        guard let revision = Self.int((answer["header"] as? [String: Any])?["revision"]) else {
            throw ClusterMapError(path: description, problem: "a transaction answer without a revision")
        }
        return revision
    }

    /// Renews the lease (or takes a new one), then takes the mover key if it is free or still
    /// this process's. A call that fails leaves the role (the lease lapses within 3 s anyway).
    func holdsMoverRole() async -> Bool {
        do {
            var id = lease.withLock { $0 }
            if let current = id {
                let answer = try await client.call("/v3/lease/keepalive", ["ID": current])
                let ttl = Self.int((answer["result"] as? [String: Any])?["TTL"]) ?? 0
                if ttl <= 0 { id = nil }
            }
            if id == nil {
                let granted = try await client.call("/v3/lease/grant", ["TTL": Self.leaseSeconds])
                guard let fresh = granted["ID"] as? String ?? Self.int(granted["ID"]).map({ "\($0)" }) else { return false }
                id = fresh
                lease.withLock { $0 = fresh }
            }
            let mine = Data(identity.utf8).base64EncodedString()
            let put: [String: Any] = ["request_put": ["key": moverKey, "value": mine, "lease": id!]]
            // Free: take it. Already this process's (under an older lease, say): renew it.
            let free = try await client.call("/v3/kv/txn", [
                "compare": [["key": moverKey, "target": "CREATE", "result": "EQUAL", "create_revision": "0"]], "success": [put]])
            var holds = free["succeeded"] as? Bool == true
            if !holds {
                let ours = try await client.call("/v3/kv/txn", [
                    "compare": [["key": moverKey, "target": "VALUE", "result": "EQUAL", "value": mine]], "success": [put]])
                holds = ours["succeeded"] as? Bool == true
            }
            return holds
        } catch {
            return false
        }
    }
}
