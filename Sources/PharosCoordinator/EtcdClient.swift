import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A small client of etcd's v3 API through its HTTP/JSON gateway (`POST /v3/kv/range`, ...),
/// on swift-nio's HTTP/1.1 codec: one connection per call, a deadline on each, the endpoints
/// tried in turn (any member answers; etcd forwards writes to its leader).
public final class EtcdClient: Sendable {
    /// The members' client addresses.
    public let endpoints: [(host: String, port: Int)]
    private let group: any EventLoopGroup
    private let timeout: TimeAmount
    /// The endpoint that answered last (tried first).
    private let preferred = Mutex(0)

    /// A client of the members at `endpoints`, each call bounded by `timeout`.
    public init(endpoints: [(host: String, port: Int)], group: any EventLoopGroup, timeout: TimeAmount = .seconds(2)) {
        self.endpoints = endpoints
        self.group = group
        self.timeout = timeout
    }

    /// Parses `host:port,host:port`.
    public static func endpoints(_ text: String) throws -> [(host: String, port: Int)] {
        try text.split(separator: ",").map { part in
            guard let colon = part.lastIndex(of: ":"), let port = Int(part[part.index(after: colon)...]), (1...65535).contains(port) else {
                throw ClusterMapError(path: "--etcd", problem: "\(part.debugDescription): expected HOST:PORT")
            }
            return (String(part[..<colon]), port)
        }
    }

    /// POSTs `body` (a JSON object) to `path` and returns the JSON object answered. Tries each
    /// endpoint once; the last failure is thrown.
    ///
    /// Only an endpoint that could not be connected to is passed over for the next: once a
    /// request was sent, a missing answer is an error (a transaction may have been applied, and
    /// sending it again elsewhere would see its own change as a conflict). The endpoint that
    /// answered last is tried first.
    public func call(_ path: String, _ body: [String: Any]) async throws -> [String: Any] {
        let payload = try JSONSerialization.data(withJSONObject: body)
        var last: any Error = ClusterMapError(path: "etcd", problem: "no endpoint")
        let first = preferred.withLock { $0 }
        for k in endpoints.indices {
            let index = (first + k) % endpoints.count
            let endpoint = endpoints[index]
            do {
                let data: Data
                do { data = try await post(path, payload, to: endpoint) } catch let error as NotConnected {
                    last = error.underlying
                    continue
                }
                preferred.withLock { $0 = index }
                guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                    throw ClusterMapError(path: "etcd \(endpoint.host):\(endpoint.port)\(path)", problem: "the answer is not a JSON object")
                }
                if let error = object["error"] as? String ?? (object["message"] as? String).flatMap({ object["code"] != nil ? $0 : nil }) {
                    throw ClusterMapError(path: "etcd \(endpoint.host):\(endpoint.port)\(path)", problem: error)
                }
                return object
            }
        }
        throw last
    }

    /// A connection that could not be made (nothing was sent).
    private struct NotConnected: Error {
        var underlying: any Error
    }

    private func post(_ path: String, _ payload: Data, to endpoint: (host: String, port: Int)) async throws -> Data {
        let collector = ResponseCollector()
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(collector)
                    }
                }
                .connect(host: endpoint.host, port: endpoint.port).get()
        } catch {
            // Its promise must be completed (NIO traps on a promise dropped unfulfilled).
            collector.fail(error)
            throw NotConnected(underlying: error)
        }
        let loop = channel.eventLoop
        let timer = loop.scheduleTask(in: timeout) {
            collector.fail(ClusterMapError(path: "etcd \(endpoint.host):\(endpoint.port)", problem: "no answer in time"))
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path)
        head.headers.add(name: "Host", value: "\(endpoint.host):\(endpoint.port)")
        head.headers.add(name: "Content-Type", value: "application/json")
        head.headers.add(name: "Content-Length", value: "\(payload.count)")
        head.headers.add(name: "Connection", value: "close")
        var buffer = channel.allocator.buffer(capacity: payload.count)
        buffer.writeBytes(payload)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(buffer)), promise: nil)
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil)).get()
        let (status, body) = try await collector.result.get()
        channel.close(promise: nil)
        guard status == .ok else {
            throw ClusterMapError(path: "etcd \(endpoint.host):\(endpoint.port)\(path)", problem: "HTTP \(status.code): \(String(decoding: body, as: UTF8.self).prefix(300))")
        }
        return body
    }
}

/// Collects one HTTP response. Touched on its channel's event loop only.
private final class ResponseCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    private let promise: EventLoopPromise<(HTTPResponseStatus, Data)>
    private var status: HTTPResponseStatus = .ok
    private var body = Data()
    /// Answers bigger than this are refused (a map of a million buckets fits well within it).
    private let maximumBytes = 256 << 20

    init() {
        promise = MultiThreadedEventLoopGroup.singleton.next().makePromise()
    }

    private var completed = false

    var result: EventLoopFuture<(HTTPResponseStatus, Data)> { promise.futureResult }

    /// Fails the response unless it already ended (the timer and the close both call it).
    func fail(_ error: any Error) {
        guard !completed else { return }
        completed = true
        promise.fail(error)
    }

    private func succeed() {
        guard !completed else { return }
        completed = true
        promise.succeed((status, body))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(head): status = head.status
        case var .body(bytes):
            guard body.count + bytes.readableBytes <= maximumBytes else {
                fail(ClusterMapError(path: "etcd", problem: "an answer over \(maximumBytes) bytes"))
                context.close(promise: nil)
                return
            }
            body.append(contentsOf: bytes.readBytes(length: bytes.readableBytes) ?? [])
        case .end: succeed()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(ClusterMapError(path: "etcd", problem: "the connection closed before the answer ended"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error)
        context.close(promise: nil)
    }
}
