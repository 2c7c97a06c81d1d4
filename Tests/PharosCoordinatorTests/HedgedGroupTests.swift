import NIOCore
import NIOEmbedded
import NIOPosix
import PharosRouting
import PharosWire
import Testing
@testable import PharosCoordinator

/// One node's share of a search round when the node fails and its buckets' other copies are
/// asked instead, on an embedded loop: each answer is given by hand, in the order a race
/// between a dying node and a map change can give them.
@Suite struct HedgedGroupTests {
    /// Two nodes holding every bucket (R=2), and a group for node 0's share of the read plan.
    /// `answers` are completed by the test, one promise per request the group sends.
    final class Harness: @unchecked Sendable {
        final class Sent: @unchecked Sendable {
            var requests: [(node: Int, buckets: Int, promise: EventLoopPromise<ShardOutcome>)] = []
        }
        let loop: EmbeddedEventLoop
        let group: HedgedGroup
        private let sent: Sent

        init(replicas: [[String]]? = nil) {
            let map = ClusterMap(collection: .init(dimension: 4, metric: .l2, factory: "IVF4,PQ2"), buckets: 8,
                                 shards: (0..<2).map { .init(name: "s\($0)", host: "127.0.0.1", port: 7000 + $0) },
                                 replication: 2)
            var state = ClusterState(map: map)
            if let replicas { state.replicas = replicas }
            let links = state.nodes.map { ShardLink(address: $0.address, group: MultiThreadedEventLoopGroup.singleton) }
            let routing = Routing(state: state, links: links)
            let loop = EmbeddedEventLoop()
            let sent = Sent()
            group = HedgedGroup(node: 0, buckets: routing.plan[0]!, routing: routing, hedgeAfter: nil, loop: loop,
                                latencies: LatencyWindow()) { plan in
                plan.sorted { $0.key < $1.key }.map { node, buckets in
                    let promise = loop.makePromise(of: ShardOutcome.self)
                    sent.requests.append((node, buckets.cardinality, promise))
                    return promise.futureResult
                }
            }
            self.loop = loop
            self.sent = sent
            group.start()
        }

        /// Every request sent so far, in order (the node's own first).
        var requests: [(node: Int, buckets: Int, promise: EventLoopPromise<ShardOutcome>)] { sent.requests }

        func outcomes() throws -> [(Int, ShardOutcome)] {
            loop.run()
            return try group.futureResult.wait()
        }
    }

    static let answer = ShardOutcome.success(.searchResult(SearchResponse(queries: [], missing: [])))

    static func code(_ outcome: ShardOutcome) -> WireError.Code? {
        if case let .failure(error) = outcome { return error.code }
        return nil
    }

    @Test func aCopyThatSawANewerMapMakesTheRoundRunAgainNotAPartialAnswer() throws {
        let h = Harness()
        h.requests[0].promise.succeed(.failure(WireError(.unavailable, "cannot reach s0: Connection refused")))
        h.loop.run()
        #expect(h.requests.count == 2, "the node's buckets are asked of the other copy")
        h.requests[1].promise.succeed(.failure(WireError(.staleMap, "epoch 7 is older than 8")))
        let outcomes = try h.outcomes()
        #expect(outcomes.contains { Self.code($0.1) == .staleMap }, "the round runs again")
        #expect(outcomes.contains { $0.0 == 0 && Self.code($0.1) == .unavailable }, "and, should it not, names the dead node")
    }

    @Test func whenTheCopyStandsInTheDeadNodeIsNotMissing() throws {
        let h = Harness()
        h.requests[0].promise.succeed(.failure(WireError(.unavailable, "cannot reach s0")))
        h.loop.run()
        h.requests[1].promise.succeed(Self.answer)
        let outcomes = try h.outcomes()
        #expect(outcomes.count == 1 && outcomes[0].0 == h.requests[1].node && Self.code(outcomes[0].1) == nil)
    }

    @Test func aPartialAnswerSaysWhyNoCopyStoodIn() throws {
        let h = Harness()
        h.requests[0].promise.succeed(.failure(WireError(.unavailable, "cannot reach s0")))
        h.loop.run()
        h.requests[1].promise.succeed(.failure(WireError(.invalidArgument, "disk gone")))
        let outcomes = try h.outcomes()
        // The copy's refusal is counted as unavailability, not as a bad request failing the search.
        #expect(!outcomes.contains { Self.code($0.1) == .invalidArgument })
        let messages = outcomes.compactMap { if case let .failure(e) = $0.1 { return e.message } else { return nil } }
        #expect(messages.contains("cannot reach s0"))
        #expect(messages.contains { $0.contains("standing in for s0") && $0.contains("disk gone") }, "\(messages)")
    }

    @Test func bucketsWithoutAnotherCopyAreCounted() throws {
        // Node 0 is the only copy of bucket 0; the other buckets have a copy on node 1.
        let h = Harness(replicas: [["s0"]] + Array(repeating: ["s0", "s1"], count: 7))
        h.requests[0].promise.succeed(.failure(WireError(.unavailable, "cannot reach s0")))
        h.loop.run()
        if h.requests.count > 1 { h.requests[1].promise.succeed(Self.answer) }
        let outcomes = try h.outcomes()
        let messages = outcomes.compactMap { if case let .failure(e) = $0.1 { return e.message } else { return nil } }
        #expect(messages.contains { $0.contains("1 of its buckets have no other serving copy") }, "\(messages)")
    }
}
