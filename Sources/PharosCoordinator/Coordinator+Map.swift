import Foundation
import NIOCore
import PharosWire

/// The cluster map as the coordinator holds it: the current routing, changes made as new
/// epochs (kept in the state folder before they take effect), and which requests still run
/// on an older epoch.
extension Coordinator {
    /// The routing requests use now.
    var routing: Routing { currentRouting.withLock { $0 } }

    /// Where the map is kept, if the coordinator has a state folder.
    var statePath: String? { options.stateDirectory.map { $0 + "/" + ClusterState.fileName } }

    /// The link to `node`, made once and reused by every later epoch.
    func link(for node: ClusterState.Node) -> ShardLink {
        linkPool.withLock { pool in
            if let existing = pool[node.name], existing.address == node.address { return existing }
            let made = ShardLink(address: node.address, group: group, token: options.shardToken, tls: options.shardTLS)
            pool[node.name] = made
            return made
        }
    }

    /// Applies `change` to the map as one new epoch: kept durably first (in the store, by a
    /// compare-and-swap on its version), then published to new requests. When another
    /// coordinator changed the map first, the newer map is taken and `change` applied to it
    /// again (a change whose preconditions no longer hold throws). Returns the new state;
    /// nothing changes when `change` throws or leaves the state as it was (no new epoch).
    @discardableResult
    func changeMap(_ reason: String, _ change: (inout ClusterState) throws -> Void) async throws -> ClusterState {
        try await mapGate.run {
            for _ in 0..<5 {
                let current = routing.state
                var next = current
                try change(&next)
                next.epoch = current.epoch
                guard next != current else { return current }
                next.epoch = current.epoch + 1
                try next.validate(path: store.description)
                let expected = mapVersion.withLock { $0 }
                guard let version = try await store.replace(next, expecting: expected) else {
                    try await refreshMap()   // another coordinator got there first
                    continue
                }
                publish(next, version: version)
                logger.info("cluster map changed", metadata: ["epoch": "\(next.epoch)", "why": "\(reason)"])
                return next
            }
            throw WireError(.unavailable, "the cluster map kept changing under this change (\(reason)); try again")
        }
    }

    /// Makes `state` (kept at `version`) the routing of new requests, and tells the nodes.
    func publish(_ state: ClusterState, version: Int64) {
        let made = Routing(state: state, links: state.nodes.map { link(for: $0) }, zone: options.zone)
        currentRouting.withLock { routing in
            guard state.epoch > routing.state.epoch else { return }
            routing = made
            mapVersion.withLock { $0 = version }
        }
        // Nodes keep a newer epoch durably (an fsync) before serving a request of it: told
        // now, so that the next search does not wait for that.
        let loop = group.next()
        for (i, node) in state.nodes.enumerated() where node.state != .down {
            _ = made.links[i].send(.health, timeout: .seconds(1), epoch: state.epoch, on: loop)
        }
    }

    /// Takes the kept map when it is newer than this coordinator's (another one changed it).
    /// Re-reads the map from where it is kept (SIGHUP): with etcd, or a state file another
    /// process replaced. Returns what happened, for the log.
    public func reloadMap() async -> String {
        let before = routing.state.epoch
        do {
            try await refreshMap()
            let after = routing.state.epoch
            return after == before ? "the cluster map is current (epoch \(after))" : "the cluster map went from epoch \(before) to \(after)"
        } catch {
            return "the cluster map could not be read (\(error)); still routing by epoch \(before)"
        }
    }

    func refreshMap() async throws {
        guard let (state, version) = try await store.load() else { return }
        if state.epoch > routing.state.epoch { publish(state, version: version) }
    }

    /// With etcd: follows the map other coordinators change (every 200 ms).
    func followMap() async {
        while !Task.isCancelled {
            do { try await refreshMap() } catch {
                logger.warning("cannot read the cluster map", metadata: ["store": "\(store.description)", "error": "\(error)"])
            }
            do { try await Task.sleep(for: .milliseconds(200)) } catch { return }
        }
    }

    /// Runs `body` as a request of the current epoch, counted until its future completes, so
    /// that `drain(before:)` can wait for it.
    func tracked<T>(on loop: any EventLoop, _ body: (Routing) -> EventLoopFuture<T>) -> EventLoopFuture<T> {
        let routing = enter()
        return body(routing).always { _ in self.leave(routing.state.epoch) }
    }

    /// The current routing, with a request of its epoch counted as running. Taken under the
    /// routing's lock, so a map change published after it waits for it in `drain`.
    func enter() -> Routing {
        currentRouting.withLock { routing in
            inFlight.withLock { $0[routing.state.epoch, default: 0] += 1 }
            return routing
        }
    }

    /// A request of `epoch` finished.
    func leave(_ epoch: UInt64) {
        inFlight.withLock { counts in
            counts[epoch, default: 1] -= 1
            if counts[epoch] == 0 { counts[epoch] = nil }
        }
    }

    /// Waits until no request routed by an epoch before `epoch` is running; false when `limit`
    /// passed first (or the coordinator is closing).
    func drain(before epoch: UInt64, limit: Duration) async -> Bool {
        let end = ContinuousClock.now + limit
        while ContinuousClock.now < end {
            if !inFlight.withLock({ $0.keys.contains { $0 < epoch } }) { return true }
            do { try await Task.sleep(for: .milliseconds(5)) } catch { return false }
        }
        logger.warning("requests of an older map epoch still running after \(limit)", metadata: ["epoch": "\(epoch)"])
        return false
    }

    /// Marks `nodes` down in one epoch: they leave the copies of every bucket that has another
    /// serving copy (a returning node is filled again by moves, never trusted with what it
    /// missed); where a node holds the only copy, it stays listed and the bucket is unavailable.
    ///
    /// `acknowledged` (bucket -> nodes that took a write being acknowledged) is checked against
    /// the map as it is when the change is made, not as the write saw it: each bucket must keep
    /// at least `minimumWriteCopies` listed, up copies that took the write, or nothing changes
    /// and this throws (the write then fails rather than rest on a copy the map forgot).
    func markDown(_ nodes: Set<Int>, routing: Routing, because reason: String, acknowledged: [Int: Set<String>] = [:]) async throws {
        let names = Set(nodes.map { routing.name($0) })
        try await changeMap("\(names.sorted().joined(separator: ", ")) down: \(reason)") { state in
            for i in state.nodes.indices where names.contains(state.nodes[i].name) { state.nodes[i].state = .down }
            let down = Set(state.nodes.filter { $0.state == .down }.map(\.name))
            for b in state.replicas.indices {
                let alive = state.replicas[b].filter { !down.contains($0) }
                if !alive.isEmpty { state.replicas[b] = alive }
            }
            for (b, took) in acknowledged {
                let holding = state.replicas[b].filter { !down.contains($0) && took.contains($0) }
                guard holding.count >= options.minimumWriteCopies else {
                    throw WireError(.unavailable, "bucket \(b) would keep \(holding.count) copies of the write (at least \(options.minimumWriteCopies))")
                }
            }
            // A copy into a node that went down is abandoned (planned again later).
            state.moves.removeAll { $0.phase == .copying && names.contains($0.target) }
        }
        wakeMover()
    }

    /// The cluster map and moves, with each node's live entries (asked now).
    func clusterReport() async -> ClusterReport {
        let routing = self.routing, state = routing.state
        let outcomes = (try? await fanOut(state.nodes.indices.map { ($0, .stats) }, routing: routing, within: options.healthDeadline,
                                          on: group.next()).get()) ?? []
        var entries: [Int: UInt64] = [:], problems: [Int: String] = [:]
        for (i, outcome) in outcomes {
            switch outcome {
            case let .success(.statsResult(s)): entries[i] = s.liveEntries
            case let .failure(error) where error.code == .notReady: entries[i] = 0
            case let .failure(error): problems[i] = error.message
            case let .success(other): problems[i] = "answered Stats with \(other.name)"
            }
        }
        let perNode = state.bucketsPerNode
        let progress = moveProgress.withLock { $0 }
        return ClusterReport(
            epoch: state.epoch, buckets: state.buckets, replication: state.replication,
            nodes: state.nodes.enumerated().map { i, n in
                NodeReport(name: n.name, address: "\(n.host):\(n.port)", zone: n.zone, state: n.state.rawValue,
                           buckets: perNode[n.name] ?? 0, entries: entries[i] ?? 0, problem: problems[i] ?? "",
                           software: routing.links[i].peerHello.software, protocolVersion: routing.links[i].peerHello.version)
            },
            moves: state.moves.map { m in
                let p = progress.copied[MoveKey(m)] ?? (0, 0)
                return MoveReport(bucket: m.bucket, source: m.source ?? "", target: m.target, phase: m.phase.rawValue,
                                  entriesCopied: p.entries, bytesCopied: p.bytes)
            },
            movesPending: progress.pending, bucketsUnderReplicated: state.underReplicated,
            movesDone: progress.done, lastProblem: progress.lastProblem, entriesMoved: progress.entriesMoved, bytesMoved: progress.bytesMoved)
    }
}

/// A move's identity (bucket and target), for progress and write guards.
struct MoveKey: Hashable, Sendable {
    var bucket: Int
    var target: String

    init(_ move: ClusterState.Move) {
        bucket = move.bucket
        target = move.target
    }
}

/// What the mover reports: copies in flight, moves waiting and done, the last failure.
struct MoveProgress: Sendable {
    var copied: [MoveKey: (entries: UInt64, bytes: UInt64)] = [:]
    var pending = 0
    var done: UInt64 = 0
    var lastProblem = ""
    var entriesMoved: UInt64 = 0
    var bytesMoved: UInt64 = 0
}
