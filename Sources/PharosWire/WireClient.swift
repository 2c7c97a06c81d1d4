import NIOCore
import NIOPosix

/// A connection to a Pharos server: requests go out with fresh ids, replies are matched by
/// id (they may come in any order), each request has a deadline.
public final class WireClient: Sendable {
    private let channel: any Channel
    private let handler: ReplyMatcher
    /// The bearer token every request carries (empty: none).
    private let token: String

    private init(channel: any Channel, handler: ReplyMatcher, token: String) {
        self.channel = channel
        self.handler = handler
        self.token = token
    }

    /// Connects to `host:port` (over TLS with `tls`); every request will carry `token` (when
    /// the server wants one).
    public static func connect(host: String, port: Int, group: any EventLoopGroup,
                               limits: WireLimits = WireLimits(), timeout: TimeAmount = .seconds(5),
                               token: String = "", tls: WireTLS? = nil) async throws -> WireClient {
        // Kept here, not looked up in the pipeline later: a server that closes at once (a
        // refused TLS handshake) empties the pipeline before the lookup could run.
        let matcher = ReplyMatcher()
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try tls?.addClientHandler(to: channel, host: host)
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(limits: limits, checkingStrings: false)))
                    try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder(limits: limits)))
                    try channel.pipeline.syncOperations.addHandler(matcher)
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: host, port: port).get()
        } catch {
            throw WireError(.unavailable, "cannot connect to \(host):\(port): \(error)")
        }
        return WireClient(channel: channel, handler: matcher, token: token)
    }

    /// Sends `body` and returns the reply. A reply that is an `Error` is thrown; so is a
    /// deadline passing (`deadlineExceeded`) or the connection closing (`unavailable`).
    public func call(_ body: WireMessage, timeout: TimeAmount = .seconds(30), mapEpoch: UInt64 = 0) async throws -> WireMessage {
        let reply = try await send(body, timeout: timeout, mapEpoch: mapEpoch).get()
        if case let .error(error) = reply.body { throw error }
        return reply.body
    }

    /// Sends `body`; the future completes with the reply envelope (errors included).
    public func send(_ body: WireMessage, timeout: TimeAmount = .seconds(30), mapEpoch: UInt64 = 0) -> EventLoopFuture<Envelope> {
        let loop = channel.eventLoop
        let channel = self.channel
        let handler = self.handler
        let token = self.token
        return loop.flatSubmit {
            let promise = loop.makePromise(of: Envelope.self)
            let id = handler.register(promise, timeout: timeout, on: loop)
            channel.writeAndFlush(Envelope(requestID: id, body: body, mapEpoch: mapEpoch, authToken: token)).whenFailure { error in
                handler.fail(id, with: WireError(.unavailable, "write failed: \(error)"))
            }
            return promise.futureResult
        }
    }

    /// Closes the connection; requests in flight fail with `unavailable`.
    public func close() async {
        try? await channel.close()
    }
}

/// Matches replies to requests by id. Touched only on its channel's event loop.
final class ReplyMatcher: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: every method runs on the channel's event loop (NIO's handler contract), and
    // `register`/`fail` are only called from `eventLoop.submit` blocks.
    typealias InboundIn = DecodedFrame

    private var nextID: UInt64 = 1
    private var waiting: [UInt64: (promise: EventLoopPromise<Envelope>, timer: Scheduled<Void>)] = [:]

    func register(_ promise: EventLoopPromise<Envelope>, timeout: TimeAmount, on loop: any EventLoop) -> UInt64 {
        let id = nextID
        nextID += 1
        let timer = loop.scheduleTask(in: timeout) { [self] in
            fail(id, with: WireError(.deadlineExceeded, "no reply within \(timeout.nanoseconds / 1_000_000) ms", requestID: id))
        }
        waiting[id] = (promise, timer)
        return id
    }

    func fail(_ id: UInt64, with error: WireError) {
        guard let entry = waiting.removeValue(forKey: id) else { return }
        entry.timer.cancel()
        entry.promise.fail(error)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .envelope(envelope):
            guard let entry = waiting.removeValue(forKey: envelope.requestID) else { return }   // late reply: dropped
            entry.timer.cancel()
            entry.promise.succeed(envelope)
        case .malformed:
            break   // the server sent something unreadable; the request it answered times out
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        for id in Array(waiting.keys) { fail(id, with: WireError(.unavailable, "connection closed", requestID: id)) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
