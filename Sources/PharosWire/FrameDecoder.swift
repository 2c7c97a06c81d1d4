import NIOCore

/// What one frame decoded to.
public enum DecodedFrame: Sendable, Equatable {
    /// A valid envelope.
    case envelope(Envelope)
    /// A whole frame whose payload is not a valid envelope: the connection's framing is
    /// intact, so the server answers with this error and goes on.
    case malformed(WireError)
}

/// Where a server counts the bytes of frames still arriving, so that connections holding
/// partial frames share the same memory budget as requests being served.
public protocol FrameBudget: AnyObject, Sendable {
    /// Reserves `bytes` for a frame being received; false when the budget cannot take them.
    func reserveFrame(bytes: Int) -> Bool
    /// Returns a reservation.
    func releaseFrame(bytes: Int)
}

/// Splits a byte stream into frames (`u32` big-endian length, then that many bytes of
/// envelope) and decodes them. A length above the limit throws `malformed` as soon as the
/// four length bytes arrive, before anything is allocated for the payload. With a `budget`,
/// the bytes of a frame that has not fully arrived are reserved there as they arrive (what is
/// really held, not what the prefix announces: idle connections that only announce large
/// frames hold nothing); bytes the budget cannot take throw `overloaded` (the connection is
/// then closed).
public struct FrameDecoder: ByteToMessageDecoder, Sendable {
    public typealias InboundOut = DecodedFrame

    private let limits: WireLimits
    private let budget: (any FrameBudget)?
    private let checkingStrings: Bool
    /// Bytes reserved in `budget` for the frame now arriving.
    private var reserved = 0

    /// A decoder enforcing `limits`, counting partial frames in `budget`. Servers check every
    /// string field for NUL bytes and UTF-8 (`WireCodec.decode`); a client reading replies of a
    /// server it chose may skip that (`checkingStrings: false`): nothing it reads is stored.
    public init(limits: WireLimits = WireLimits(), budget: (any FrameBudget)? = nil, checkingStrings: Bool = true) {
        self.limits = limits
        self.budget = budget
        self.checkingStrings = checkingStrings
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try next(&buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while let frame = try next(&buffer) {
            context.fireChannelRead(wrapInboundOut(frame))
        }
        // A partial frame at the end of the stream (a dropped connection) is discarded.
        buffer.clear()
        release()
        return .needMoreData
    }

    public mutating func decoderRemoved(context: ChannelHandlerContext) { release() }

    private mutating func release() {
        if reserved > 0 { budget?.releaseFrame(bytes: reserved) }
        reserved = 0
    }

    private mutating func next(_ buffer: inout ByteBuffer) throws -> DecodedFrame? {
        let frame = try FrameDecoder.nextFrame(&buffer, limits: limits, checkingStrings: checkingStrings)
        if frame != nil {
            release()
        } else if let budget, buffer.readableBytes > reserved {
            let more = buffer.readableBytes - reserved
            guard budget.reserveFrame(bytes: more) else {
                throw WireError(.overloaded, "\(buffer.readableBytes) bytes of a frame still arriving do not fit the server's bytes-in-flight budget now: retry later")
            }
            reserved += more
        }
        return frame
    }

    /// Bytes of a partial frame held now (0 between frames).
    public var heldBytes: Int { reserved }

    /// Takes one whole frame off the front of `buffer`, or nil if it is not all there yet.
    public static func nextFrame(_ buffer: inout ByteBuffer, limits: WireLimits, checkingStrings: Bool = true) throws -> DecodedFrame? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self) else { return nil }
        guard Int(length) <= limits.maximumFrameBytes else {
            throw WireError(.malformed, "frame of \(length) bytes exceeds the limit of \(limits.maximumFrameBytes)")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        let payload = buffer.readSlice(length: Int(length))!
        do {
            return .envelope(try payload.withUnsafeReadableBytes { try WireCodec.decode($0, checkingStrings: checkingStrings) })
        } catch let error as WireError {
            return .malformed(error)
        }
    }
}

/// Writes envelopes as frames, never one over the frame limit (the peer would refuse it and
/// close the connection, failing everything else in flight on it).
public struct FrameEncoder: MessageToByteEncoder, Sendable {
    public typealias OutboundIn = Envelope

    /// What to do with an envelope whose frame would exceed the limit.
    public enum Oversized: Sendable {
        /// Send an `invalidArgument` Error with its request id instead (servers: the request
        /// asked for more than a frame holds).
        case answerWithError
        /// Fail the write (clients: the request is too large to send).
        case fail
    }

    private let maximumFrameBytes: Int
    private let oversized: Oversized

    /// An encoder for frames of at most `limits.maximumFrameBytes`.
    public init(limits: WireLimits = WireLimits(), oversized: Oversized = .fail) {
        maximumFrameBytes = limits.maximumFrameBytes
        self.oversized = oversized
    }

    public func encode(data: Envelope, out: inout ByteBuffer) throws {
        var payload = try WireCodec.encode(data)
        if payload.count > maximumFrameBytes {
            let problem = "\(data.body.name) of \(payload.count) bytes exceeds the frame limit of \(maximumFrameBytes)"
            guard oversized == .answerWithError else { throw WireError(.invalidArgument, problem, requestID: data.requestID) }
            payload = try WireCodec.encode(Envelope(requestID: data.requestID, body: .error(WireError(
                .invalidArgument, "the reply (\(problem)): ask for fewer queries, a smaller k, or no vectors", requestID: data.requestID))))
        }
        out.writeInteger(UInt32(payload.count), endianness: .big)
        out.writeBytes(payload)
    }

    /// The frame bytes of `envelope` (for clients that do not use NIO).
    public static func frame(_ envelope: Envelope) throws -> [UInt8] {
        let payload = try WireCodec.encode(envelope)
        guard let n = UInt32(exactly: payload.count) else {
            throw WireError(.invalidArgument, "\(envelope.body.name) of \(payload.count) bytes cannot be framed (at most \(UInt32.max))")
        }
        return [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + payload
    }
}
