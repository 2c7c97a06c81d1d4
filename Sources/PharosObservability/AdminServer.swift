import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// The admin HTTP port of a server process: `/metrics` (Prometheus text format), `/livez`
/// (the process answers) and `/readyz` (it can do its job; 503 with the reason when not).
///
/// Read-only and small by design: GET and HEAD only, bodies refused beyond a few KiB, at most
/// `maximumConnections` connections, idle ones closed. It binds loopback unless told
/// otherwise, since it carries no authentication.
public final class AdminServer: Sendable {
    /// Whether the process can do its job, and why not.
    public struct Readiness: Sendable, Equatable {
        /// Ready to serve.
        public var ready: Bool
        /// What it is waiting for (empty when ready).
        public var reason: String

        /// Ready.
        public static let ready = Readiness(ready: true, reason: "")
        /// Not ready because of `reason`.
        public static func notReady(_ reason: String) -> Readiness { Readiness(ready: false, reason: reason) }

        /// A readiness with both fields.
        public init(ready: Bool, reason: String) {
            self.ready = ready
            self.reason = reason
        }
    }

    /// Open connections allowed; more are closed at once.
    public static let maximumConnections = 64
    /// Request body bytes accepted (admin requests have none).
    public static let maximumBodyBytes = 4096
    /// A connection that sends nothing for this long is closed.
    public static let idleTimeout = TimeAmount.seconds(30)

    private let metrics: MetricsRegistry
    private let readiness: @Sendable () -> Readiness
    private let group: any EventLoopGroup
    private let logger: Logger
    private let channel = NIOLockedValueBox<(any Channel)?>(nil)
    private let secure: (@Sendable (any Channel) throws -> Void)?
    let connections = NIOLockedValueBox(0)

    /// An admin server exposing `metrics` and `readiness` on `group`'s event loops; `secure`
    /// (when given) adds TLS to each connection's pipeline first.
    public init(metrics: MetricsRegistry, group: any EventLoopGroup, logger: Logger,
                secure: (@Sendable (any Channel) throws -> Void)? = nil,
                readiness: @escaping @Sendable () -> Readiness) {
        self.secure = secure
        self.metrics = metrics
        self.readiness = readiness
        self.group = group
        self.logger = logger
    }

    /// Binds and starts serving; returns the port (useful with port 0).
    public func start(host: String, port: Int) async throws -> Int {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let admitted = connections.withLockedValue { count -> Bool in
                        guard count < AdminServer.maximumConnections else { return false }
                        count += 1
                        return true
                    }
                    guard admitted else {
                        channel.close(promise: nil)
                        return
                    }
                    channel.closeFuture.whenComplete { [self] _ in connections.withLockedValue { $0 -= 1 } }
                    try secure?(channel)
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: AdminServer.idleTimeout))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(AdminRequestHandler(server: self))
                }
            }
        let bound = try await bootstrap.bind(host: host, port: port).get()
        channel.withLockedValue { $0 = bound }
        let actual = bound.localAddress?.port ?? port
        logger.info("admin endpoint serving", metadata: ["address": "\(host):\(actual)", "paths": "/metrics /livez /readyz"])
        return actual
    }

    /// Stops accepting admin connections.
    public func stop() async {
        let listener = channel.withLockedValue { $0 }
        try? await listener?.close()
    }

    /// The response to `method` on `path`: status, content type, body.
    func respond(method: HTTPMethod, path: String) -> (HTTPResponseStatus, String, [UInt8]) {
        guard method == .GET || method == .HEAD else {
            return (.methodNotAllowed, "text/plain; charset=utf-8", Array("only GET and HEAD are served here\n".utf8))
        }
        switch path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path {
        case "/metrics":
            return (.ok, "text/plain; version=0.0.4; charset=utf-8", metrics.exposition())
        case "/livez":
            return (.ok, "text/plain; charset=utf-8", Array("ok\n".utf8))
        case "/readyz":
            let now = readiness()
            return now.ready
                ? (.ok, "text/plain; charset=utf-8", Array("ready\n".utf8))
                : (.serviceUnavailable, "text/plain; charset=utf-8", Array("not ready: \(now.reason)\n".utf8))
        default:
            return (.notFound, "text/plain; charset=utf-8", Array("not found: \(path) (served: /metrics, /livez, /readyz)\n".utf8))
        }
    }
}

/// One admin connection: a request head, its (ignored, bounded) body, one response.
final class AdminRequestHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    // @unchecked: NIO calls it on its channel's event loop only.
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let server: AdminServer
    private var head: HTTPRequestHead?
    private var bodyBytes = 0

    init(server: AdminServer) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(request):
            head = request
            bodyBytes = 0
        case let .body(part):
            bodyBytes += part.readableBytes
            if bodyBytes > AdminServer.maximumBodyBytes, head != nil {
                head = nil
                write(context: context, status: .payloadTooLarge, type: "text/plain; charset=utf-8",
                      body: Array("request bodies are not served here (more than \(AdminServer.maximumBodyBytes) bytes)\n".utf8),
                      keepAlive: false, headOnly: false)
            }
        case .end:
            guard let request = head else { return }
            head = nil
            let (status, type, body) = server.respond(method: request.method, path: request.uri)
            write(context: context, status: status, type: type, body: body, keepAlive: request.isKeepAlive,
                  headOnly: request.method == .HEAD)
        }
    }

    private func write(context: ChannelHandlerContext, status: HTTPResponseStatus, type: String, body: [UInt8],
                       keepAlive: Bool, headOnly: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: "\(body.count)")
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if !headOnly {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
