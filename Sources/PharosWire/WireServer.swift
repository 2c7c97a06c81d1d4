import Foundation
import Logging
import NIOCore
import NIOPosix

/// What a server serves: a reply for each request, produced off the event loops.
public protocol WireService: AnyObject, Sendable {
    /// The name reported in logs.
    var serviceName: String { get }
    /// Produces the reply to `message` and passes it to `reply` exactly once, from any thread.
    /// Must not block the caller (an event loop): run blocking work elsewhere.
    func respond(to message: WireMessage, reply: @escaping @Sendable (WireMessage) -> Void)
    /// Releases resources after the server stopped.
    func close()
}

/// Serves a `WireService` over TCP with the wire protocol (shard nodes and the coordinator).
///
/// Admission is bounded by requests and bytes in flight (beyond them a request is answered
/// `overloaded` at once); replies go out in completion order, matched by request id; `stop`
/// refuses new work, lets running requests finish, then closes connections.
public final class WireServer: @unchecked Sendable {
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

        /// Default limits: 64 requests, 512 MiB, 64 MiB frames, the protocol's request limits.
        public init(maximumRequestsInFlight: Int = 64, maximumBytesInFlight: Int = 512 << 20, wire: WireLimits = WireLimits(),
                    requests: RequestLimits = RequestLimits()) {
            self.maximumRequestsInFlight = maximumRequestsInFlight
            self.maximumBytesInFlight = maximumBytesInFlight
            self.wire = wire
            self.requests = requests
        }
    }

    /// What it serves.
    public let service: any WireService
    let limits: Limits
    let logger: Logger
    private let group: any EventLoopGroup
    private let state = NSLock()
    private var channel: (any Channel)?
    private var children: [ObjectIdentifier: any Channel] = [:]
    private var requestsInFlight = 0
    private var bytesInFlight = 0
    private var draining = false

    /// The port the server listens on, once started.
    public private(set) var boundPort: Int? {
        get { state.withLock { _boundPort } }
        set { state.withLock { _boundPort = newValue } }
    }
    private var _boundPort: Int?

    /// A server for `service` on `group`'s event loops.
    public init(service: any WireService, group: any EventLoopGroup, limits: Limits = Limits(), logger: Logger = Logger(label: "pharos.server")) {
        self.service = service
        self.group = group
        self.limits = limits
        self.logger = logger
    }

    /// Binds and starts accepting; returns the port (useful with port 0).
    public func start(host: String, port: Int) async throws -> Int {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(limits: limits.wire)))
                    try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder()))
                    try channel.pipeline.syncOperations.addHandler(RequestHandler(server: self))
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
        service.close()
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
}

/// One connection: decoded frames in, replies out (possibly out of order).
final class RequestHandler: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: NIO calls the handler on its event loop only; worker threads reach the
    // channel through `eventLoop.execute`.
    typealias InboundIn = DecodedFrame
    typealias OutboundOut = Envelope

    private let server: WireServer

    init(server: WireServer) { self.server = server }

    func channelActive(context: ChannelHandlerContext) {
        server.opened(context.channel)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        server.closed(context.channel)
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .malformed(error):
            server.logger.debug("malformed frame", metadata: ["error": "\(error)"])
            context.writeAndFlush(wrapOutboundOut(Envelope(requestID: error.requestID, body: .error(error))), promise: nil)
        case let .envelope(envelope):
            do {
                try server.limits.requests.validate(envelope.body)
            } catch {
                var refusal = error as? WireError ?? WireError(.invalidArgument, "\(error)")
                refusal.requestID = envelope.requestID
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
                context.writeAndFlush(wrapOutboundOut(Envelope(requestID: envelope.requestID, body: .error(error))), promise: nil)
                return
            }
            let channel = context.channel
            let server = self.server
            server.service.respond(to: envelope.body) { reply in
                var reply = reply
                if case var .error(error) = reply {
                    error.requestID = envelope.requestID
                    reply = .error(error)
                }
                server.finished(bytes: bytes)
                channel.writeAndFlush(Envelope(requestID: envelope.requestID, body: reply), promise: nil)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Framing errors (an oversized length) leave the stream unreadable: say why, close.
        let wire = error as? WireError ?? WireError(.malformed, "\(error)")
        server.logger.info("closing a connection", metadata: ["reason": "\(wire)"])
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(Envelope(requestID: 0, body: .error(wire)))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    /// Bytes a request holds while served (its vectors, keys and metadata).
    static func payloadBytes(_ message: WireMessage) -> Int {
        switch message {
        case let .search(s): return s.vectors.count * 4 + s.queryKeys.reduce(0) { $0 + $1.utf8.count }
        case let .upsert(u): return u.vectors.count * 4 + u.keys.reduce(0) { $0 + $1.utf8.count } + u.metadata.reduce(0) { $0 + $1.count }
        case let .delete(keys), let .fetch(keys): return keys.reduce(0) { $0 + $1.utf8.count }
        case let .trainedState(file, whitening): return file.count + whitening.count
        default: return 0
        }
    }
}
