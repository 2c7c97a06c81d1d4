import NIOCore
import PharosRouting
import PharosWire
import Synchronization

/// One node's share of a search round (its buckets in the epoch's read plan), answered
/// exactly once: by that node, or by the buckets' other copies when the node fails, or when
/// it has not answered within the hedge delay (then whichever answers first wins, and the
/// other answer is dropped, so no bucket counts twice). Confined to one event loop.
final class HedgedGroup: @unchecked Sendable {
    // @unchecked: every field is touched only on `loop` (callbacks hop there first).
    private let loop: any EventLoop
    private let node: Int
    private let buckets: BucketSet
    private let routing: Routing
    private let send: @Sendable ([Int: BucketSet]) -> [EventLoopFuture<ShardOutcome>]
    private let promise: EventLoopPromise<[(Int, ShardOutcome)]>
    private var settled = false
    private var hedged = false
    private var primaryFailure: ShardOutcome?
    private var hedgeOutcomes: [(Int, ShardOutcome)]?
    private var timer: Scheduled<Void>?

    private let delay: TimeAmount?
    private let latencies: LatencyWindow
    private let onHedge: (@Sendable () -> Void)?

    /// Answers for `buckets` of `node`: `send(plan)` sends a search for each (node, buckets)
    /// of a plan and gives each one's outcome; `latencies` learns the node's answer time.
    init(node: Int, buckets: BucketSet, routing: Routing, hedgeAfter delay: TimeAmount?, loop: any EventLoop,
         latencies: LatencyWindow, onHedge: (@Sendable () -> Void)? = nil,
         send: @escaping @Sendable ([Int: BucketSet]) -> [EventLoopFuture<ShardOutcome>]) {
        self.onHedge = onHedge
        self.loop = loop
        self.node = node
        self.buckets = buckets
        self.routing = routing
        self.send = send
        self.delay = delay
        self.latencies = latencies
        promise = loop.makePromise()
    }

    /// Sends the node's request (and arms the hedge); call on `loop`.
    func start() {
        loop.preconditionInEventLoop()
        let started = NIODeadline.now()
        let latencies = self.latencies
        let primary = send([node: buckets])[0].hop(to: loop)
        primary.whenComplete { [self] result in
            let outcome = (try? result.get()) ?? .failure(WireError(.internalError, "no outcome"))
            if case .success = outcome { latencies.record(NIODeadline.now() - started) }
            primaryDone(outcome)
        }
        if let delay {
            timer = loop.scheduleTask(in: delay) { [self] in hedge(requireAll: true) }
        }
    }

    /// The group's outcomes: one success per node that answered for its buckets, or the
    /// failures that leave some of them unanswered.
    var futureResult: EventLoopFuture<[(Int, ShardOutcome)]> { promise.futureResult }

    private func settle(_ outcomes: [(Int, ShardOutcome)]) {
        guard !settled else { return }
        settled = true
        timer?.cancel()
        promise.succeed(outcomes)
    }

    private func primaryDone(_ outcome: ShardOutcome) {
        guard !settled else { return }
        switch outcome {
        case .success:
            settle([(node, outcome)])
        case let .failure(error) where error.code == .invalidArgument || error.code == .staleMap:
            // The request itself is refused (every copy would say so), or the map changed
            // under it (the round is asked again with the new map).
            settle([(node, outcome)])
        case .failure:
            primaryFailure = outcome
            if let hedge = hedgeOutcomes {
                finishAfterFailure(hedge)
            } else if !hedged {
                hedge(requireAll: false)
            }
        }
    }

    /// Asks the other copies. When hedging a slow node (`requireAll`), only if they cover every
    /// bucket of the group (a partial hedge could not stand in for the node's answer).
    private func hedge(requireAll: Bool) {
        guard !settled, !hedged else { return }
        let plan = routing.fallbackPlan(for: buckets, avoiding: [node])
        let covered = plan.values.reduce(0) { $0 + $1.cardinality }
        if plan.isEmpty || (requireAll && covered < buckets.cardinality) {
            if primaryFailure != nil { finishAfterFailure([]) }
            return
        }
        hedged = true
        onHedge?()
        let nodes = plan.keys.sorted()
        let futures = send(Dictionary(uniqueKeysWithValues: nodes.map { ($0, plan[$0]!) }))
        EventLoopFuture.whenAllComplete(futures.map { $0.hop(to: loop) }, on: loop).whenComplete { [self] result in
            let outcomes: [(Int, ShardOutcome)] = zip(nodes, (try? result.get()) ?? []).map { node, r in
                (node, (try? r.get()) ?? .failure(WireError(.internalError, "no outcome")))
            }
            hedgeDone(outcomes, complete: covered == buckets.cardinality)
        }
    }

    private func hedgeDone(_ outcomes: [(Int, ShardOutcome)], complete: Bool) {
        guard !settled else { return }
        let allAnswered = outcomes.allSatisfy { if case .success = $0.1 { return true } else { return false } }
        if primaryFailure != nil {
            finishAfterFailure(outcomes)
        } else if allAnswered && complete {
            settle(outcomes)   // the hedge answered every bucket first
        } else {
            hedgeOutcomes = outcomes   // wait for the node itself
        }
    }

    /// The node failed: what the other copies answered stands, with the node's failure naming
    /// what is left unanswered (when the copies covered everything, the node is not missing).
    private func finishAfterFailure(_ hedge: [(Int, ShardOutcome)]) {
        // A copy that saw a newer map (a move flipped meanwhile, or the copy dropped the
        // bucket): the round runs again on the new map rather than counting the buckets missing.
        let answered = hedge.filter { if case .success = $0.1 { return true } else { return false } }
        if let stale = hedge.first(where: { Self.isStaleMap($0.1) }) {
            // (Should the retries run out, the answer keeps what was answered and names both.)
            settle(answered + [stale] + (primaryFailure.map { [(node, $0)] } ?? []))
            return
        }
        let plan = routing.fallbackPlan(for: buckets, avoiding: [node])
        let coveredByAnswers = answered.reduce(0) { $0 + (plan[$1.0]?.cardinality ?? 0) }
        var outcomes = answered
        if coveredByAnswers < buckets.cardinality, let primaryFailure {
            // Why no copy stood in is said too: buckets without another serving copy, and the
            // copies that failed as well.
            let unplanned = buckets.cardinality - plan.values.reduce(0) { $0 + $1.cardinality }
            if unplanned > 0, case let .failure(error) = primaryFailure {
                outcomes.append((node, .failure(WireError(error.code, "\(error.message) (\(unplanned) of its buckets have no other serving copy)"))))
            } else {
                outcomes.append((node, primaryFailure))
            }
            // (As unavailability: a copy's own refusal must not fail the whole search, nor its
            // NOT_READY stand for the cluster's.)
            for (copy, outcome) in hedge {
                if case let .failure(error) = outcome {
                    outcomes.append((copy, .failure(WireError(.unavailable, "standing in for \(routing.name(node)): \(error)"))))
                }
            }
        }
        settle(outcomes)
    }
}

extension HedgedGroup {
    /// Whether `outcome` is a node's STALE_MAP (the round runs again on the new map).
    static func isStaleMap(_ outcome: ShardOutcome) -> Bool {
        if case let .failure(error) = outcome { return error.code == .staleMap }
        return false
    }
}

/// Recent answer times of shard searches, for the hedge delay (their 95th percentile).
final class LatencyWindow: Sendable {
    private let samples = Mutex<(values: [Int64], next: Int)>(([], 0))
    private let capacity = 512

    /// Records one answer time.
    func record(_ span: TimeAmount) {
        samples.withLock { s in
            if s.values.count < capacity { s.values.append(span.nanoseconds) } else { s.values[s.next] = span.nanoseconds }
            s.next = (s.next + 1) % capacity
        }
    }

    /// The 95th percentile of the recorded times; nil before 20 samples.
    var p95: TimeAmount? {
        let values = samples.withLock { $0.values }
        guard values.count >= 20 else { return nil }
        let sorted = values.sorted()
        return .nanoseconds(sorted[Swift.min(sorted.count - 1, sorted.count * 95 / 100)])
    }
}
