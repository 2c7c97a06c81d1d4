import NIOConcurrencyHelpers
import PharosObservability
import Prometheus

/// The coordinator's series on the admin port: each node's answer time, partial answers and
/// hedges, and the cluster map as this coordinator routes by it (nodes by state, buckets
/// without a serving copy or short of copies, moves).
final class CoordinatorMetrics: Sendable {
    let registry: MetricsRegistry
    private let shardLatency = NIOLockedValueBox<[String: DurationHistogram]>([:])
    private let shardFailures = NIOLockedValueBox<[String: Prometheus.Counter]>([:])
    let partialAnswers: Prometheus.Counter
    let hedges: Prometheus.Counter

    init(registry: MetricsRegistry) {
        self.registry = registry
        partialAnswers = registry.counter("pharos_coordinator_partial_answers_total",
                                          help: "Searches answered with some buckets missing (no copy of them answered).")
        hedges = registry.counter("pharos_coordinator_hedged_requests_total",
                                  help: "Shares of a search asked of another copy because the first node failed or was slow.")
    }

    /// Counts one hedge (given to `HedgedGroup`).
    var countHedge: @Sendable () -> Void {
        let hedges = self.hedges
        return { hedges.increment() }
    }

    /// Records one node's answer to a fan-out request: its time, and whether it failed.
    func shardAnswered(node: String, nanoseconds: UInt64, failed: Bool) {
        let histogram = shardLatency.withLockedValue { known in
            if let h = known[node] { return h }
            let made = registry.histogram("pharos_coordinator_shard_request_seconds", labels: [("node", node)],
                                          help: "Time for a node to answer its share of a search, by node.")
            known[node] = made
            return made
        }
        histogram.recordNanoseconds(Int64(clamping: nanoseconds))
        guard failed else { return }
        shardFailures.withLockedValue { known in
            if let c = known[node] { return c }
            let made = registry.counter("pharos_coordinator_shard_failures_total", labels: [("node", node)],
                                        help: "Shares of a search a node failed to answer (error, timeout, closed connection), by node.")
            known[node] = made
            return made
        }.increment()
    }

    /// Registers the gauges read from `coordinator`'s map at each scrape (no network).
    func watch(_ coordinator: Coordinator) {
        let epoch = registry.gauge("pharos_cluster_map_epoch", help: "The cluster map's epoch this coordinator routes by.")
        let nodeHelp = "Nodes in the cluster map, by state (joining, active, draining, down)."
        let nodes = Dictionary(uniqueKeysWithValues: ClusterState.NodeState.allCases.map {
            ($0, registry.gauge("pharos_cluster_nodes", labels: [("state", $0.rawValue)], help: nodeHelp))
        })
        let unserved = registry.gauge("pharos_cluster_buckets_unserved", help: "Buckets no serving copy can answer for: searches are partial.")
        let underReplicated = registry.gauge("pharos_cluster_buckets_under_replicated",
                                             help: "Buckets with fewer copies than the replication factor (copies behind or lost).")
        let copiesDown = registry.gauge("pharos_cluster_copies_down", help: "Bucket copies on nodes marked down: they miss writes until caught up.")
        let moving = registry.gauge("pharos_cluster_moves_in_progress", help: "Bucket moves in progress (copying or dropping).")
        let pending = registry.gauge("pharos_cluster_moves_pending", help: "Bucket moves planned and not yet started.")
        let done = registry.gauge("pharos_cluster_moves_completed", help: "Bucket moves this coordinator completed since it started.")
        let entries = registry.gauge("pharos_cluster_moved_entries", help: "Entries copied by this coordinator's bucket moves since it started.")
        let bytes = registry.gauge("pharos_cluster_moved_bytes", help: "Bytes copied by this coordinator's bucket moves since it started.")
        let mover = registry.gauge("pharos_cluster_mover", help: "1 when this coordinator holds the mover role (runs bucket moves).")
        registry.onScrape { [weak coordinator] in
            guard let coordinator else { return }
            let routing = coordinator.routing, state = routing.state
            epoch.set(Double(state.epoch))
            for (nodeState, gauge) in nodes { gauge.set(Double(state.nodes.filter { $0.state == nodeState }.count)) }
            unserved.set(Double(routing.unreadableBuckets))
            underReplicated.set(Double(state.underReplicated))
            let down = Set(state.nodes.filter { $0.state == .down }.map(\.name))
            copiesDown.set(Double(state.replicas.reduce(0) { $0 + $1.filter { down.contains($0) }.count }))
            moving.set(Double(state.moves.count))
            let progress = coordinator.moveProgress.withLock { $0 }
            pending.set(Double(progress.pending))
            done.set(Double(progress.done))
            entries.set(Double(progress.entriesMoved))
            bytes.set(Double(progress.bytesMoved))
            mover.set(coordinator.movesHere.withLock { $0 } ? 1.0 : 0.0)
        }
    }
}

extension Coordinator {
    /// Ready when every bucket has a serving copy (so searches are complete); otherwise the
    /// reason names the nodes whose buckets nobody else holds.
    public var readiness: AdminServer.Readiness {
        let routing = self.routing
        guard routing.unreadableBuckets == 0 else {
            let nodes = routing.unreadable.keys.sorted().joined(separator: ", ")
            return .notReady("\(routing.unreadableBuckets) of \(routing.state.buckets) buckets have no serving copy (held only by \(nodes))")
        }
        return .ready
    }
}
