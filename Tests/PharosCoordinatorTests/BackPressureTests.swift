import Foundation
import PharosIndex
import PharosTestSupport
import PharosVectors
import PharosWire
import Testing
@testable import PharosShard

/// A client that never reads, connections holding partial frames, and one connection's flood
/// of large searches: each is bounded, and everyone else is still served.
@Suite(.serialized) struct BackPressureTests {
    static let data = SyntheticDataset(dimension: TestCluster.dimension, clusters: 20, normalized: false, seed: 12)

    /// 120 searches of k=2048 with vectors, pipelined on one connection that never reads: the
    /// shard stops reading that connection once 32 replies wait, holds a bounded number of
    /// reply bytes (counted in its budget), serves other clients meanwhile, and delivers every
    /// reply, each with its own id, once the client reads.
    @Test func aClientThatNeverReadsHoldsABoundedNumberOfReplies() async throws {
        try await TestCluster.with(factory: "IVF8,PQ8x4fs") { cluster in
            let index = try IndexFactory.make("IVF8,PQ8x4fs", dimension: 16, metric: .l2)
            try index.train(Self.data.vectors(0..<2000, stream: 1), threads: 1)
            _ = try await cluster.client.call(.trainedState(indexFile: IndexFactory.encoded(index)))
            for start in stride(from: 0, to: 6000, by: 2000) {
                _ = try await cluster.client.call(.upsert(UpsertRequest(keys: (start..<start + 2000).map { "k\($0)" },
                                                                        vectors: Self.data.vectors(start..<start + 2000, stream: 0).values, dimension: 16)))
            }
            let shard = cluster.shardServers[0]
            let before = shard.requestsAdmitted
            let slow = try RawConnection(port: cluster.map.shards[0].port, receiveBuffer: 65536)
            let flood = 120
            let query = Self.data.vectors(7..<8, stream: 0).values
            for i in 0..<flood {
                slow.send(try FrameEncoder.frame(Envelope(requestID: UInt64(1000 + i), body: .search(SearchRequest(
                    vectors: query, dimension: 16, k: 2048, nprobe: 8, refineFactor: 1, withVectors: true)))))
            }
            // Let the shard do all it will do without the client reading (bounded wait).
            var served = 0
            for _ in 0..<20 {
                try await Task.sleep(nanoseconds: 100_000_000)
                served = shard.requestsAdmitted - before
            }
            #expect(served < flood, "every request of a client that never reads was served: \(served)")
            // Replies of about 2,000 hits with 16-D vectors: ~170 KB; 32 of them at most are held.
            #expect(shard.bytesInFlightNow <= 32 * 200_000, "\(shard.bytesInFlightNow) bytes in flight")
            // Everyone else is still served, and right.
            guard case let .searchResult(r) = try await cluster.client.call(.search(SearchRequest(vectors: query, dimension: 16, k: 1, nprobe: 8)),
                                                                          timeout: .seconds(20)) else {
                Issue.record("no search result"); return
            }
            #expect(r.queries[0].keys == ["k7"] && !r.partial)
            // Once the client reads, every reply arrives, each once, with its id.
            let ids = try await BlockingWork.run {
                var ids = Set<UInt64>()
                for _ in 0..<flood {
                    guard let reply = slow.readFrame() else { break }
                    if case .searchResult = reply.body { ids.insert(reply.requestID) }
                }
                return ids
            }
            #expect(ids == Set((0..<flood).map { UInt64(1000 + $0) }))
            for _ in 0..<50 where shard.bytesInFlightNow > 0 { try await Task.sleep(nanoseconds: 20_000_000) }
            #expect(shard.bytesInFlightNow == 0)
        }
    }

    /// The bytes of partial frames count against the bytes-in-flight budget as they arrive:
    /// bytes that do not fit are refused (OVERLOADED, connection closed), and a reservation
    /// ends with its connection.
    @Test func partialFramesAreCountedAndRefusedBeyondTheBudget() async throws {
        try await TestCluster.with(factory: "IVF8,PQ8x4fs") { cluster in
            let server = WireServer(service: cluster.coordinator, group: cluster.group,
                                    limits: .init(maximumBytesInFlight: 1 << 20, wire: WireLimits(maximumFrameBytes: 400_000)))
            let port = try await server.start(host: "127.0.0.1", port: 0)
            defer { Task { await server.stop(grace: 1) } }
            func prefix(_ n: UInt32) -> [UInt8] { [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] }
            // Announcing a frame reserves nothing; its bytes do, as they arrive.
            let idle = try RawConnection(port: port)
            idle.send(prefix(399_000))
            var holders: [RawConnection] = []
            for _ in 0..<2 {
                let c = try RawConnection(port: port)
                c.send(prefix(399_000) + [UInt8](repeating: 0x0a, count: 390_000))
                holders.append(c)
            }
            for _ in 0..<100 where server.bytesInFlightNow < 780_000 { try await Task.sleep(nanoseconds: 20_000_000) }
            #expect(server.bytesInFlightNow >= 780_000 && server.bytesInFlightNow < 800_000, "\(server.bytesInFlightNow)")
            let refused = try RawConnection(port: port)
            refused.send(prefix(399_000) + [UInt8](repeating: 0x0a, count: 300_000))
            guard case let .error(e)? = await refused.nextFrame()?.body else { Issue.record("no refusal"); return }
            #expect(e.code == .overloaded, "\(e)")
            #expect(await refused.nextFrame() == nil)   // closed
            holders = []   // closed: their reservations go with them
            for _ in 0..<100 where server.bytesInFlightNow > 0 { try await Task.sleep(nanoseconds: 20_000_000) }
            #expect(server.bytesInFlightNow <= 4)
            let ok = try RawConnection(port: port)
            ok.send(try FrameEncoder.frame(Envelope(requestID: 4, body: .health)))
            #expect(await ok.nextFrame()?.requestID == 4)
            _ = idle
        }
    }

    /// A frame left half-sent is not held forever: its connection is closed after the
    /// partial-frame timeout, and its bytes are free again.
    @Test func aHalfSentFrameIsDroppedAfterTheTimeout() async throws {
        try await TestCluster.with(factory: "IVF8,PQ8x4fs") { cluster in
            var limits = WireServer.Limits()
            limits.partialFrameTimeout = .milliseconds(300)
            let server = WireServer(service: cluster.coordinator, group: cluster.group, limits: limits)
            let port = try await server.start(host: "127.0.0.1", port: 0)
            defer { Task { await server.stop(grace: 1) } }
            let c = try RawConnection(port: port)
            c.send([0, 1, 0, 0] + [UInt8](repeating: 0x0a, count: 1000))
            guard case let .error(e)? = await c.nextFrame()?.body else { Issue.record("not closed with an error"); return }
            #expect(e.message.contains("held for"), "\(e)")
            #expect(await c.nextFrame() == nil)
            for _ in 0..<50 where server.bytesInFlightNow > 0 { try await Task.sleep(nanoseconds: 20_000_000) }
            #expect(server.bytesInFlightNow == 0)
        }
    }

    /// Thousands of cheap requests pipelined before the client reads: served one after another
    /// as the socket drains (the dispatch loop does not recurse once per request).
    @Test func tenThousandsOfPipelinedRequestsDoNotGrowTheStack() async throws {
        try await TestCluster.with(factory: "IVF8,PQ8x4fs") { cluster in
            let c = try RawConnection(port: cluster.map.shards[0].port)
            let count = 30_000
            let frames = try (0..<count).flatMap { try FrameEncoder.frame(Envelope(requestID: UInt64($0 + 1), body: .health)) }
            async let sent: Void = BlockingWork.run { c.send(frames) }
            let received = try await BlockingWork.run { () -> Int in
                var n = 0
                while n < count, c.readFrame() != nil { n += 1 }
                return n
            }
            try await sent
            #expect(received == count)
        }
    }

    /// A reply that would not fit a frame is answered with an error naming the limit, not
    /// sent for the client to refuse (which would close the connection and everything on it).
    @Test func aReplyOverTheFrameLimitBecomesAnError() async throws {
        try await TestCluster.with(factory: "IVF8,PQ8x4fs") { cluster in
            let index = try IndexFactory.make("IVF8,PQ8x4fs", dimension: 16, metric: .l2)
            try index.train(Self.data.vectors(0..<2000, stream: 1), threads: 1)
            _ = try await cluster.client.call(.trainedState(indexFile: IndexFactory.encoded(index)))
            _ = try await cluster.client.call(.upsert(UpsertRequest(keys: (0..<3000).map { "k\($0)" },
                                                                    vectors: Self.data.vectors(0..<3000, stream: 0).values, dimension: 16)))
            let server = WireServer(service: cluster.coordinator, group: cluster.group,
                                    limits: .init(wire: WireLimits(maximumFrameBytes: 64 << 10)))
            let port = try await server.start(host: "127.0.0.1", port: 0)
            defer { Task { await server.stop(grace: 1) } }
            let (code, message) = try await BoundaryTests.code(of: .search(SearchRequest(vectors: Self.data.vectors(0..<4, stream: 2).values,
                                                                                       dimension: 16, k: 2000, nprobe: 8, refineFactor: 1, withVectors: true)), port: port)
            #expect(code == .invalidArgument && message.contains("exceeds the frame limit"), "\(message)")
            let (_, small) = try await BoundaryTests.code(of: .search(SearchRequest(vectors: Self.data.vectors(0..<1, stream: 2).values,
                                                                                    dimension: 16, k: 5, nprobe: 8)), port: port)
            #expect(small == "SearchResult")
        }
    }

    /// Large searches go to the workers, never inline on an event loop.
    @Test func onlyCheapSearchesRunOnTheEventLoop() {
        let q = [Float](repeating: 1, count: 16)
        #expect(ShardService.isSmallRead(.search(SearchRequest(vectors: q, dimension: 16, k: 10, nprobe: 16))))
        #expect(!ShardService.isSmallRead(.search(SearchRequest(vectors: q, dimension: 16, k: 4096, nprobe: 16))))
        #expect(!ShardService.isSmallRead(.search(SearchRequest(vectors: q, dimension: 16, k: 10, nprobe: 1024))))
        #expect(!ShardService.isSmallRead(.search(SearchRequest(queryKeys: ["a"], k: 10, nprobe: 16))))
    }
}
