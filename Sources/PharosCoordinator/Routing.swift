import PharosRouting
import PharosWire

/// One epoch of the cluster map as requests use it: the state, a link per node (in the
/// state's node order), and what every request asks of it, computed once per epoch.
///
/// A request takes the current routing when it starts and uses it to the end, so every
/// shard it asks sees the same epoch, and each bucket is read from exactly one node.
final class Routing: Sendable {
    /// The map.
    let state: ClusterState
    /// One link per node, in `state.nodes` order.
    let links: [ShardLink]
    /// For each bucket, the nodes (indexes) that serve reads of it, preferred first.
    let readers: [[Int]]
    /// For each bucket, the nodes every write of it goes to (serving copies not down, and
    /// the target of a copy in progress).
    let writers: [[Int]]
    /// The read plan: for each node, the buckets it answers for (one reader per bucket).
    let plan: [Int: BucketSet]
    /// Down nodes holding the only copy of some buckets, with how many: searches are partial
    /// without them.
    let unreadable: [String: Int]
    /// Buckets no serving copy can answer for.
    let unreadableBuckets: Int

    /// The routing of `state` over `links` (one per node, same order); reads prefer copies on
    /// nodes whose zone label is `zone` (when given and such a copy is up).
    init(state: ClusterState, links: [ShardLink], zone: String = "") {
        precondition(links.count == state.nodes.count, "one link per node")
        self.state = state
        self.links = links
        let index = Dictionary(uniqueKeysWithValues: state.nodes.enumerated().map { ($1.name, $0) })
        let usable = state.nodes.map { $0.state != .down }
        var readers = [[Int]](repeating: [], count: state.buckets)
        var writers = [[Int]](repeating: [], count: state.buckets)
        for (b, names) in state.replicas.enumerated() {
            let nodes = names.compactMap { index[$0] }.filter { usable[$0] }
            // Spread reads: bucket b prefers the copy a hash of b picks (a hash, not b mod copies,
            // which would line up with regular layouts and send every read to half the nodes).
            // Stable per epoch, so each node's bucket set (and the shards' caches per set) stays the same.
            let first = nodes.isEmpty ? 0 : Int((UInt64(b) &* 0x9E37_79B9_7F4A_7C15) >> 33) % nodes.count
            let rotated = nodes.isEmpty ? [] : Array(nodes[first...] + nodes[..<first])
            // The local zone's copies first (still spread among themselves), the others after.
            readers[b] = zone.isEmpty ? rotated
                : rotated.filter { state.nodes[$0].zone == zone } + rotated.filter { state.nodes[$0].zone != zone }
            writers[b] = nodes
        }
        for move in state.moves where move.phase == .copying {
            if let t = index[move.target], usable[t], !writers[move.bucket].contains(t) { writers[move.bucket].append(t) }
        }
        self.readers = readers
        self.writers = writers
        var unreadable: [String: Int] = [:]
        var unreadableBuckets = 0
        for (b, names) in state.replicas.enumerated() where readers[b].isEmpty {
            unreadableBuckets += 1
            for name in names { unreadable[name, default: 0] += 1 }
            if names.isEmpty { unreadable["(no node)", default: 0] += 1 }
        }
        self.unreadable = unreadable
        self.unreadableBuckets = unreadableBuckets
        plan = Routing.plan(readers: readers, buckets: state.buckets, excluding: [])
    }

    /// Each node's buckets when every bucket is read from its first reader not in `excluding`;
    /// buckets with no such reader are left out.
    static func plan(readers: [[Int]], buckets: Int, excluding: Set<Int>) -> [Int: BucketSet] {
        var plan: [Int: BucketSet] = [:]
        for (b, nodes) in readers.enumerated() {
            guard let node = nodes.first(where: { !excluding.contains($0) }) else { continue }
            plan[node, default: BucketSet(count: buckets)].insert(b)
        }
        return plan
    }

    /// The plan for buckets `orphans` (whose reader failed), avoiding the nodes in `failed`.
    func fallbackPlan(for orphans: BucketSet, avoiding failed: Set<Int>) -> [Int: BucketSet] {
        var plan: [Int: BucketSet] = [:]
        for b in orphans.members {
            guard let node = readers[b].first(where: { !failed.contains($0) }) else { continue }
            plan[node, default: BucketSet(count: state.buckets)].insert(b)
        }
        return plan
    }

    /// The bucket of `key`.
    func bucket(of key: String) -> Int { KeyHash.bucket(of: key, buckets: state.buckets) }

    /// The name of node `index`.
    func name(_ index: Int) -> String { state.nodes[index].name }

    /// Row indexes grouped by the nodes that hold them (every writer of each row's bucket, as
    /// `buckets` gives it per row); rows of a bucket no node can take are returned apart.
    func writeGroups(buckets: [Int]) -> (groups: [Int: [Int]], unplaced: [Int]) {
        var groups: [Int: [Int]] = [:], unplaced: [Int] = []
        for (i, b) in buckets.enumerated() {
            // A copy in progress alone is not a place to write: its stream would find no source.
            if readers[b].isEmpty { unplaced.append(i) }
            for n in writers[b] { groups[n, default: []].append(i) }
        }
        return (groups, unplaced)
    }

}
