import NIOCore
import PharosWire

/// One shard's answer to a fanned-out request: its reply, or why there is none.
typealias ShardOutcome = Result<WireMessage, WireError>

extension Coordinator {
    /// Sends each (shard, message) concurrently with `timeout`; every request's outcome, in
    /// shard order. The one fan-out every coordinator request goes through: connected shards
    /// are called straight from the event loop, a disconnected one through its link's
    /// reconnecting path.
    func fanOut(_ requests: [(Int, WireMessage)], within timeout: Duration, on loop: any EventLoop)
        -> EventLoopFuture<[(Int, ShardOutcome)]> {
        guard !requests.isEmpty else { return loop.makeSucceededFuture([]) }
        let futures = requests.map { shard, message in links[shard].send(message, timeout: timeout, on: loop) }
        return EventLoopFuture.whenAllComplete(futures, on: loop).map { results in
            zip(requests, results).map { request, result in
                (request.0, result.mapError { Coordinator.wireError($0) })
            }.sorted { $0.0 < $1.0 }
        }
    }

    /// Like `fanOut`, but any failure fails the whole request, naming the shards.
    func allOrNothing(_ requests: [(Int, WireMessage)], within timeout: Duration,
                      on loop: any EventLoop) -> EventLoopFuture<[(Int, WireMessage)]> {
        fanOut(requests, within: timeout, on: loop).flatMapThrowing { try self.requireAll($0) }
    }

    /// `allOrNothing`, awaited.
    func allOrNothing(_ requests: [(Int, WireMessage)], within timeout: Duration) async throws -> [(Int, WireMessage)] {
        try await allOrNothing(requests, within: timeout, on: group.next()).get()
    }

    /// Every reply, or one error naming every shard that failed.
    private func requireAll(_ outcomes: [(Int, ShardOutcome)]) throws -> [(Int, WireMessage)] {
        var replies: [(Int, WireMessage)] = [], failures: [(Int, WireError)] = []
        for (i, outcome) in outcomes {
            switch outcome {
            case let .success(reply): replies.append((i, reply))
            case let .failure(error): failures.append((i, error))
            }
        }
        guard failures.isEmpty else {
            // Shards refusing alike (a bad request) keep their code; a mix is an outage.
            let code = Set(failures.map(\.1.code)).count == 1 ? failures[0].1.code : .unavailable
            throw WireError(code, failures.map { "\(map.shards[$0.0].name): \($0.1.message)" }.joined(separator: "; "))
        }
        return replies
    }

    /// Row indexes of `keys` grouped by owning shard.
    func split(_ keys: [String]) -> [Int: [Int]] {
        var parts: [Int: [Int]] = [:]
        for (i, key) in keys.enumerated() { parts[map.shard(of: key), default: []].append(i) }
        return parts
    }
}
