import Foundation
import NIOCore
import PharosObservability
import PharosWire
import Synchronization

/// The coordinator's connection to one shard: connected on first use, reconnected after a
/// failure with exponential backoff (100 ms doubling to 5 s) so a down shard costs a quick
/// `unavailable` rather than a connect attempt per request.
actor ShardLink {
    let address: ClusterMap.ShardAddress
    private let group: any EventLoopGroup
    private var client: WireClient? {
        didSet { published.withLock { $0 = client } }
    }
    /// The connected client, readable without entering the actor (the coordinator's
    /// event-loop fast path uses it).
    private nonisolated let published = Mutex<WireClient?>(nil)
    private var backoff: Duration = .milliseconds(100)
    private var retryAfter: ContinuousClock.Instant?
    /// Set by `close`: no connection is made after it (the event loops are about to stop).
    private var closed = false

    /// The token this coordinator presents to shards (empty: none).
    private let token: String
    /// TLS to shards (nil: plain TCP).
    private let tls: WireTLS?
    /// What the shard said in its Hello on the current connection: its software and the
    /// protocol version agreed (readable without entering the actor, for status).
    private nonisolated let peer = Mutex<(software: String, version: UInt32)>(("", 0))

    init(address: ClusterMap.ShardAddress, group: any EventLoopGroup, token: String = "", tls: WireTLS? = nil) {
        self.address = address
        self.group = group
        self.token = token
        self.tls = tls
    }

    /// The shard's software and the agreed protocol version, from the last connection's Hello
    /// (empty and 0 before the first connection).
    nonisolated var peerHello: (software: String, version: UInt32) { peer.withLock { $0 } }

    /// The protocol version agreed on the connection now open, 0 while there is none: what a
    /// message may rely on (a node restarted with an older build agrees on its own version
    /// when the link reconnects; until then nothing newer than version 1 is assumed).
    nonisolated var connectedVersion: UInt32 { connected.withLock { $0 } }
    private nonisolated let connected = Mutex<UInt32>(0)

    /// The connected client, if any (nil while disconnected or backing off).
    nonisolated var currentClient: WireClient? { published.withLock { $0 } }

    /// Called when a request through `currentClient` found the connection gone.
    nonisolated func connectionFailed() {
        guard let failed = currentClient else { return }
        Task { await self.drop(failed) }
    }

    /// Sends `message` within `timeout` from the event loop `loop`: straight through the
    /// connected client when there is one, else through `call` (which reconnects). A reply
    /// that is an `Error` fails the future with it.
    nonisolated func send(_ message: WireMessage, timeout: Duration, epoch: UInt64 = 0, on loop: any EventLoop) -> EventLoopFuture<WireMessage> {
        guard let client = currentClient else {
            return loop.makeFutureWithTask { try await self.call(message, timeout: timeout, epoch: epoch) }
        }
        // One promise completed by one callback: this runs for every shard of every search.
        let promise = loop.makePromise(of: WireMessage.self)
        client.send(message, timeout: timeout.timeAmount, mapEpoch: epoch).whenComplete { result in
            switch result {
            case let .success(envelope):
                if case let .error(error) = envelope.body { promise.fail(error) } else { promise.succeed(envelope.body) }
            case let .failure(error):
                // The transport failed (not the shard refusing): reconnect next time.
                let wire = error as? WireError ?? WireError(.unavailable, "\(error)")
                if wire.code == .unavailable { self.connectionFailed() }
                promise.fail(wire)
            }
        }
        return promise.futureResult
    }

    /// Sends `message` within `timeout`; reconnects first if needed.
    func call(_ message: WireMessage, timeout: Duration, epoch: UInt64 = 0) async throws -> WireMessage {
        let client = try await connected(timeout: timeout)
        do {
            return try await client.call(message, timeout: timeout.timeAmount, mapEpoch: epoch)
        } catch let error as WireError where error.code == .unavailable {
            drop(client)
            throw error
        }
    }

    private func connected(timeout: Duration) async throws -> WireClient {
        if let client { return client }
        if closed { throw WireError(.unavailable, "the coordinator is shutting down") }
        let now = ContinuousClock.now
        if let retryAfter, now < retryAfter {
            throw WireError(.unavailable, "\(address.name) (\(address.host):\(address.port)) is down; next connection attempt in \(retryAfter - now)")
        }
        do {
            let connectTimeout = min(timeout, .seconds(2))
            let c = try await WireClient.connect(host: address.host, port: address.port, group: group, timeout: connectTimeout.timeAmount,
                                                 token: token, tls: tls)
            // Agree on a protocol version first: a shard of another release says which it
            // speaks (a rolling upgrade mixes two), and one that speaks none of ours is refused here.
            let hello: WireMessage
            do {
                hello = try await c.call(.hello(Hello(role: .coordinator, nodeName: "coordinator",
                                                      software: BuildInfo.versionLine(program: "pharos-coordinator"))),
                                         timeout: connectTimeout.timeAmount)
            } catch let error as WireError where error.code == .unsupported {
                await c.close()
                throw WireError(.unavailable, "\(address.name) speaks no protocol version this coordinator speaks (\(Hello.oldestVersion)...\(Hello.currentVersion)): \(error.message)")
            } catch {
                await c.close()
                throw error
            }
            if case let .hello(answer) = hello {
                peer.withLock { $0 = (answer.software.isEmpty ? "(protocol version 1)" : answer.software, answer.protocolVersion) }
                connected.withLock { $0 = answer.protocolVersion }
            }
            client = c
            backoff = .milliseconds(100)
            retryAfter = nil
            return c
        } catch {
            retryAfter = ContinuousClock.now + backoff
            backoff = min(backoff * 2, .seconds(5))
            throw WireError(.unavailable, "cannot reach \(address.name) (\(address.host):\(address.port)): \(error)")
        }
    }

    private func drop(_ failed: WireClient) {
        guard client === failed else { return }
        client = nil
        connected.withLock { $0 = 0 }
        Task { await failed.close() }
    }

    /// Closes the connection for good.
    func close() async {
        closed = true
        await client?.close()
        client = nil
    }
}

extension Duration {
    /// The same span as NIO's `TimeAmount`.
    var timeAmount: TimeAmount { .nanoseconds(components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000) }

    /// The span in whole milliseconds (the wire's `deadline_ms`), rounded down.
    var wholeMilliseconds: Int { Int(components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000) }
}
