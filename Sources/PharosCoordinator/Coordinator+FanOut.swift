import NIOCore
import PharosWire

/// One node's answer to a fanned-out request: its reply, or why there is none.
typealias ShardOutcome = Result<WireMessage, WireError>

extension Coordinator {
    /// Sends each (node, message) of `routing` concurrently with `timeout`, stamped with its
    /// epoch; every request's outcome, in node order. The one fan-out every coordinator
    /// request goes through: connected nodes are called straight from the event loop, a
    /// disconnected one through its link's reconnecting path.
    func fanOut(_ requests: [(Int, WireMessage)], routing: Routing, within timeout: Duration, on loop: any EventLoop)
        -> EventLoopFuture<[(Int, ShardOutcome)]> {
        guard !requests.isEmpty else { return loop.makeSucceededFuture([]) }
        let epoch = routing.state.epoch
        let futures = requests.map { node, message in routing.links[node].send(message, timeout: timeout, epoch: epoch, on: loop) }
        return EventLoopFuture.whenAllComplete(futures, on: loop).map { results in
            zip(requests, results).map { request, result in
                (request.0, result.mapError { Coordinator.wireError($0) })
            }.sorted { $0.0 < $1.0 }
        }
    }

    /// Like `fanOut`, but any failure fails the whole request, naming the nodes.
    func allOrNothing(_ requests: [(Int, WireMessage)], routing: Routing, within timeout: Duration,
                      on loop: any EventLoop) -> EventLoopFuture<[(Int, WireMessage)]> {
        fanOut(requests, routing: routing, within: timeout, on: loop).flatMapThrowing { try Self.requireAll($0, routing: routing) }
    }

    /// `allOrNothing` to every node of the current routing, awaited.
    func everyNode(_ message: WireMessage, within timeout: Duration) async throws -> [(Int, WireMessage)] {
        let routing = self.routing
        return try await allOrNothing(routing.state.nodes.indices.map { ($0, message) }, routing: routing, within: timeout,
                                      on: group.next()).get()
    }

    /// Every reply, or one error naming every node that failed.
    static func requireAll(_ outcomes: [(Int, ShardOutcome)], routing: Routing) throws -> [(Int, WireMessage)] {
        var replies: [(Int, WireMessage)] = [], failures: [(Int, WireError)] = []
        for (i, outcome) in outcomes {
            switch outcome {
            case let .success(reply): replies.append((i, reply))
            case let .failure(error): failures.append((i, error))
            }
        }
        guard failures.isEmpty else {
            // Nodes refusing alike (a bad request) keep their code; a mix is an outage.
            let code = Set(failures.map(\.1.code)).count == 1 ? failures[0].1.code : .unavailable
            throw WireError(code, failures.map { "\(routing.name($0.0)): \($0.1.message)" }.joined(separator: "; "))
        }
        return replies
    }
}
