import Foundation
import Logging
import NIOCore
import NIOPosix
import PharosObservability

/// What a server serves: a reply for each request, produced off the event loops.
public protocol WireService: AnyObject, Sendable {
    /// The name reported in logs.
    var serviceName: String { get }
    /// Produces the reply to `message` and passes it to `reply` exactly once, from any thread.
    /// Must not block the caller (an event loop): run blocking work elsewhere.
    func respond(to message: WireMessage, reply: @escaping @Sendable (WireMessage) -> Void)
    /// `respond(to:reply:)` with the whole envelope (its map epoch); by default the body alone.
    func respond(to envelope: Envelope, reply: @escaping @Sendable (WireMessage) -> Void)
    /// Releases resources after the server stopped; the event loops are still running, so
    /// connections it holds can close cleanly before they shut down.
    func close() async
}

extension WireService {
    public func respond(to envelope: Envelope, reply: @escaping @Sendable (WireMessage) -> Void) {
        respond(to: envelope.body, reply: reply)
    }
}

/// Serves a `WireService` over TCP with the wire protocol (shard nodes and the coordinator).
///
/// Admission is bounded by requests and bytes in flight (beyond them a request is answered
/// `overloaded` at once); replies go out in completion order, matched by request id; `stop`
/// refuses new work, lets running requests finish, then closes connections.
public final class WireServer: FrameBudget, @unchecked Sendable {
    // @unchecked: mutable state (`channel`, `children`, counters) is guarded by `state`.

    /// Admission limits.
    public struct Limits: Sendable {
        /// Requests being served at once, over all connections.
        public var maximumRequestsInFlight: Int
        /// Request payload bytes held at once (vectors, keys, metadata).
        public var maximumBytesInFlight: Int
        /// Frame size limit.
        public var wire: WireLimits
        /// What one request may ask for (checked before the service sees it).
        public var requests: RequestLimits
        /// Requests of one connection being served or with replies not yet handed to the
        /// socket; beyond it the connection is not read (back-pressure, and fairness: one
        /// connection cannot take every slot).
        public var maximumRequestsPerConnection: Int
        /// A connection that holds part of a frame and sends nothing for this long is closed
        /// (its bytes count against everyone's budget).
        public var partialFrameTimeout: TimeAmount = .seconds(60)

        /// Default limits: 64 requests, 512 MiB, 64 MiB frames, the protocol's request limits,
        /// 32 requests per connection.
        public init(maximumRequestsInFlight: Int = 64, maximumBytesInFlight: Int = 512 << 20, wire: WireLimits = WireLimits(),
                    requests: RequestLimits = RequestLimits(), maximumRequestsPerConnection: Int = 32) {
            self.maximumRequestsInFlight = maximumRequestsInFlight
            // Room for at least two largest frames at once, whatever the frame limit.
            self.maximumBytesInFlight = Swift.max(maximumBytesInFlight, 2 * wire.maximumFrameBytes)
            self.wire = wire
            self.requests = requests
            self.maximumRequestsPerConnection = maximumRequestsPerConnection
        }
    }

    /// What it serves.
    public let service: any WireService
    let limits: Limits
    let logger: Logger
    /// Where requests are counted and timed (nil: not measured).
    let metrics: WireMetrics?
    /// The tokens requests must carry (nil: none needed).
    let access: AccessTokens?
    /// TLS on every connection (nil: plain TCP).
    let tls: WireTLS?
    private let group: any EventLoopGroup
    private let state = NSLock()
    private var channel: (any Channel)?
    private var children: [ObjectIdentifier: any Channel] = [:]
    private var requestsInFlight = 0
    private var bytesInFlight = 0
    private var draining = false
    private var admitted = 0

    /// Requests admitted since the server started.
    public var requestsAdmitted: Int { state.withLock { admitted } }

    /// The port the server listens on, once started.
    public private(set) var boundPort: Int? {
        get { state.withLock { _boundPort } }
        set { state.withLock { _boundPort = newValue } }
    }
    private var _boundPort: Int?

    /// A server for `service` on `group`'s event loops.
    public init(service: any WireService, group: any EventLoopGroup, limits: Limits = Limits(), logger: Logger = Logger(label: "pharos.server"),
                metrics: WireMetrics? = nil, access: AccessTokens? = nil, tls: WireTLS? = nil) {
        self.tls = tls
        self.service = service
        self.group = group
        self.limits = limits
        self.logger = logger
        self.metrics = metrics
        self.access = access
        if let metrics {
            metrics.registry.onScrape { [weak self] in
                guard let self else { return }
                let (requests, bytes, open) = state.withLock { (requestsInFlight, bytesInFlight, children.count) }
                metrics.inFlight.set(Double(requests))
                metrics.bytesInFlight.set(Double(bytes))
                metrics.connections.set(Double(open))
            }
        }
    }

    /// Binds and starts accepting; returns the port (useful with port 0).
    public func start(host: String, port: Int) async throws -> Int {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let account = PartialFrameAccount(server: self)
                    try tls?.addServerHandler(to: channel)
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: limits.partialFrameTimeout))
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(limits: limits.wire, budget: account)))
                    try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder(limits: limits.wire, oversized: .answerWithError)))
                    try channel.pipeline.syncOperations.addHandler(RequestHandler(server: self, partialFrames: account))
                }
            }
        let bound = try await bootstrap.bind(host: host, port: port).get()
        state.withLock { channel = bound }
        let actual = bound.localAddress?.port ?? port
        boundPort = actual
        logger.info("serving", metadata: ["address": "\(host):\(actual)", "service": "\(service.serviceName)"])
        return actual
    }

    /// Stops accepting, answers new requests `unavailable`, waits up to `grace` for running
    /// ones, closes every connection and the shard.
    public func stop(grace: TimeInterval = 30) async {
        let (listener, open) = state.withLock { () -> ((any Channel)?, [any Channel]) in
            draining = true
            return (channel, Array(children.values))
        }
        try? await listener?.close()
        let deadline = Date().addingTimeInterval(grace)
        var abandoned = state.withLock { requestsInFlight }
        while abandoned > 0 && Date() < deadline {
            try? await Task.sleep(nanoseconds: 20_000_000)
            abandoned = state.withLock { requestsInFlight }
        }
        for child in open { try? await child.close() }
        await service.close()
        logger.info("stopped", metadata: ["abandonedRequests": "\(abandoned)"])
    }

    // MARK: Connections and admission

    func opened(_ channel: any Channel) { state.withLock { children[ObjectIdentifier(channel)] = channel } }
    func closed(_ channel: any Channel) { state.withLock { _ = children.removeValue(forKey: ObjectIdentifier(channel)) } }

    /// Admits a request of `bytes`, or returns why not (`overloaded`, `unavailable`).
    public func admit(bytes: Int) -> WireError? {
        state.withLock {
            if draining { return WireError(.unavailable, "\(service.serviceName) is shutting down") }
            guard requestsInFlight < limits.maximumRequestsInFlight else {
                return WireError(.overloaded, "\(requestsInFlight) requests in flight, at most \(limits.maximumRequestsInFlight): retry later")
            }
            guard bytesInFlight + bytes <= limits.maximumBytesInFlight || requestsInFlight == 0 else {
                return WireError(.overloaded, "\(bytesInFlight + bytes) request bytes in flight, at most \(limits.maximumBytesInFlight): retry later")
            }
            requestsInFlight += 1
            bytesInFlight += bytes
            admitted += 1
            return nil
        }
    }

    /// Releases an admitted request of `bytes`.
    public func finished(bytes: Int) {
        state.withLock {
            requestsInFlight -= 1
            bytesInFlight -= bytes
        }
    }

    /// Bytes in flight now: requests being served, partial frames, unwritten replies.
    public var bytesInFlightNow: Int { state.withLock { bytesInFlight } }

    public func reserveFrame(bytes: Int) -> Bool {
        state.withLock {
            guard bytesInFlight + bytes <= limits.maximumBytesInFlight else { return false }
            bytesInFlight += bytes
            return true
        }
    }

    public func releaseFrame(bytes: Int) { state.withLock { bytesInFlight -= bytes } }

    /// Counts a reply's bytes while it waits to be written (never refused: the request was
    /// already admitted; the per-connection bound keeps it finite).
    func holdReply(bytes: Int) { state.withLock { bytesInFlight += bytes } }

    /// Ends `holdReply`'s count once the socket took the reply (or the connection closed).
    func releaseReply(bytes: Int) { state.withLock { bytesInFlight -= bytes } }
}

/// One connection: decoded frames in, replies out (possibly out of order).
///
/// Back-pressure: at most `maximumRequestsPerConnection` requests of a connection are served or
/// hold unwritten replies at once, and while that many are, or while the socket does not take
/// what is written (a client that does not read its replies), the connection is not read. A
/// client that never reads therefore holds a bounded number of replies, counted in the
/// server's bytes in flight, and its further requests wait in its own socket buffers.
final class RequestHandler: ChannelDuplexHandler, @unchecked Sendable {
    // @unchecked: NIO calls the handler on its event loop only; replies from worker threads
    // come back through `eventLoop.execute`.
    typealias InboundIn = DecodedFrame
    typealias OutboundIn = Envelope
    typealias OutboundOut = Envelope

    private let server: WireServer
    private let partialFrames: PartialFrameAccount
    private var context: ChannelHandlerContext?
    /// Envelopes read but not yet dispatched (at most what one read decoded).
    private var waiting = CircularBuffer<Envelope>()
    /// Requests dispatched whose reply has not yet been handed to the socket.
    private var active = 0
    /// A read was asked for while the connection was held back.
    private var readPending = false
    /// `resume` is running (see there).
    private var resuming = false

    init(server: WireServer, partialFrames: PartialFrameAccount) {
        self.server = server
        self.partialFrames = partialFrames
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Nothing read for `partialFrameTimeout`: harmless between frames, but a frame left
        // half-sent holds budget every other client needs.
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read, partialFrames.held > 0 {
            let error = WireError(.malformed, "\(partialFrames.held) bytes of a frame were held for \(server.limits.partialFrameTimeout.nanoseconds / 1_000_000_000) s with nothing more sent: closing")
            server.logger.info("closing a connection", metadata: ["reason": "\(error)"])
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(Envelope(requestID: 0, body: .error(error)))).whenComplete { _ in channel.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelActive(context: ChannelHandlerContext) {
        server.opened(context.channel)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        server.closed(context.channel)
        waiting.removeAll()
        context.fireChannelInactive()
    }

    private var heldBack: Bool {
        !waiting.isEmpty || active >= server.limits.maximumRequestsPerConnection || !(context?.channel.isWritable ?? true)
    }

    func read(context: ChannelHandlerContext) {
        if heldBack { readPending = true } else { context.read() }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        resume()
        context.fireChannelWritabilityChanged()
    }

    /// Dispatches what waits while there is room, then reads again if a read was held.
    ///
    /// Not re-entered: a reply served inline whose write completes at once frees its slot and
    /// calls back here from inside `dispatch`; the loop below picks that up, where recursion
    /// would grow the stack with every pipelined request.
    private func resume() {
        guard !resuming, let context else { return }
        resuming = true
        while active < server.limits.maximumRequestsPerConnection, context.channel.isWritable, let next = waiting.popFirst() {
            dispatch(next, context: context)
        }
        resuming = false
        if readPending && !heldBack {
            readPending = false
            context.read()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .malformed(error):
            server.logger.debug("malformed frame", metadata: ["error": "\(error)", "request": "\(error.requestID)"])
            server.metrics?.refused(type: "unreadable", outcome: error.code.metricLabel)
            context.writeAndFlush(wrapOutboundOut(Envelope(requestID: error.requestID, body: .error(error))), promise: nil)
        case let .envelope(envelope):
            waiting.append(envelope)
            resume()
        }
    }

    private func dispatch(_ envelope: Envelope, context: ChannelHandlerContext) {
        if let refusal = server.access?.refusal(for: envelope) {
            server.metrics?.refused(type: envelope.body.name, outcome: refusal.code.metricLabel)
            context.writeAndFlush(wrapOutboundOut(Envelope(requestID: envelope.requestID, body: .error(refusal))), promise: nil)
            return
        }
        do {
            try server.limits.requests.validate(envelope.body)
        } catch {
            var refusal = error as? WireError ?? WireError(.invalidArgument, "\(error)")
            refusal.requestID = envelope.requestID
            server.metrics?.refused(type: envelope.body.name, outcome: refusal.code.metricLabel)
            let written = context.writeAndFlush(wrapOutboundOut(Envelope(requestID: envelope.requestID, body: .error(refusal))))
            if case .hello = envelope.body {
                // A peer that speaks another version cannot be understood: say so, then close.
                let channel = context.channel
                written.whenComplete { _ in channel.close(promise: nil) }
            }
            return
        }
        let bytes = RequestHandler.payloadBytes(envelope.body)
        if let refusal = server.admit(bytes: bytes) {
            var error = refusal
            error.requestID = envelope.requestID
            server.metrics?.refused(type: envelope.body.name, outcome: error.code.metricLabel)
            context.writeAndFlush(wrapOutboundOut(Envelope(requestID: envelope.requestID, body: .error(error))), promise: nil)
            return
        }
        active += 1
        let server = self.server
        let loop = context.eventLoop
        let handler = NIOLoopBound(self, eventLoop: loop)
        let started = DispatchTime.now().uptimeNanoseconds
        let type = envelope.body.name
        RequestContext.$requestID.withValue(envelope.requestID) { server.service.respond(to: envelope) { reply in
            server.metrics?.record(type: type, outcome: reply.outcomeLabel, nanoseconds: DispatchTime.now().uptimeNanoseconds &- started)
            var reply = reply
            if case var .error(error) = reply {
                error.requestID = envelope.requestID
                reply = .error(error)
            }
            server.finished(bytes: bytes)
            let replyBytes = RequestHandler.payloadBytes(reply)
            server.holdReply(bytes: replyBytes)
            let answer = Envelope(requestID: envelope.requestID, body: reply)
            // A reply made on the loop (a cheap read served inline) goes out now, not a tick later.
            if loop.inEventLoop {
                handler.value.send(answer, heldBytes: replyBytes)
            } else {
                loop.execute { handler.value.send(answer, heldBytes: replyBytes) }
            }
        } }
    }

    /// Writes a reply; its slot and bytes are freed once the socket took it (or failed).
    private func send(_ envelope: Envelope, heldBytes: Int) {
        guard let context else {
            server.releaseReply(bytes: heldBytes)
            return
        }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let server = self.server
        context.writeAndFlush(wrapOutboundOut(envelope)).whenComplete { _ in
            server.releaseReply(bytes: heldBytes)
            handler.value.active -= 1
            handler.value.resume()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Framing errors (an oversized length, a frame the budget cannot hold) leave the
        // stream unreadable: say why, close.
        let wire = error as? WireError ?? WireError(.malformed, "\(error)")
        server.logger.info("closing a connection", metadata: ["reason": "\(wire)"])
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(Envelope(requestID: 0, body: .error(wire)))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }
}
