import NIOCore
import NIOEmbedded
import Testing
@testable import PharosWire

@Suite struct FrameDecoderTests {
    func channel(limit: Int = 1 << 20) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(limits: WireLimits(maximumFrameBytes: limit))))
        try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder()))
        return channel
    }

    static let envelopes = [
        Envelope(requestID: 1, body: .search(SearchRequest(vectors: [1, 2, 3, 4], dimension: 4, k: 10, nprobe: 8))),
        Envelope(requestID: 2, body: .delete(keys: ["a", "b"])),
        Envelope(requestID: 3, body: .health),
    ]

    @Test func framesSplitAcrossReadsAndCoalescedInOneRead() throws {
        let channel = try channel()
        let bytes = try Self.envelopes.flatMap { try FrameEncoder.frame($0) }
        // One byte at a time: nothing is decoded until a frame is whole.
        for byte in bytes { try channel.writeInbound(ByteBuffer(bytes: [byte])) }
        var got: [DecodedFrame] = []
        while let frame = try channel.readInbound(as: DecodedFrame.self) { got.append(frame) }
        #expect(got == Self.envelopes.map { .envelope($0) })
        // All three frames in a single read.
        try channel.writeInbound(ByteBuffer(bytes: bytes))
        got = []
        while let frame = try channel.readInbound(as: DecodedFrame.self) { got.append(frame) }
        #expect(got == Self.envelopes.map { .envelope($0) })
        _ = try channel.finish()
    }

    @Test func oversizedLengthIsRefusedBeforeThePayloadArrives() throws {
        let channel = try channel(limit: 1000)
        #expect(throws: WireError(.malformed, "frame of 4294967295 bytes exceeds the limit of 1000")) {
            try channel.writeInbound(ByteBuffer(bytes: [0xff, 0xff, 0xff, 0xff]))
        }
        _ = try? channel.finish()
    }

    @Test func malformedPayloadIsReportedAndTheNextFrameStillDecodes() throws {
        let channel = try channel()
        var bytes: [UInt8] = [0, 0, 0, 3, 0xff, 0xff, 0xff]   // a whole frame of garbage
        bytes += try FrameEncoder.frame(Self.envelopes[1])
        try channel.writeInbound(ByteBuffer(bytes: bytes))
        guard case .malformed(let error) = try channel.readInbound(as: DecodedFrame.self) else {
            Issue.record("garbage was not reported")
            return
        }
        #expect(error.code == .malformed)
        #expect(try channel.readInbound(as: DecodedFrame.self) == .envelope(Self.envelopes[1]))
        _ = try channel.finish()
    }

    @Test func encoderWritesLengthPrefixedFrames() throws {
        let channel = try channel()
        try channel.writeOutbound(Self.envelopes[2])
        var out = try #require(try channel.readOutbound(as: ByteBuffer.self))
        let read = out.readInteger(endianness: .big, as: UInt32.self)
        let length = try #require(read)
        #expect(Int(length) == out.readableBytes)
        #expect(try WireCodec.decode(Array(out.readableBytesView)) == Self.envelopes[2])
        _ = try channel.finish()
    }
}
