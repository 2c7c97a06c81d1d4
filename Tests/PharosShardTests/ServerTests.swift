import Foundation
import NIOPosix
import PharosIndex
import PharosStorage
import PharosVectors
import PharosObservability
import PharosWire
import Testing
@testable import PharosShard

/// A shard node on loopback (ephemeral port) in a temporary directory, for one test.
final class TestNode: @unchecked Sendable {
    let directory: String
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let server: WireServer
    var port = 0

    init(limits: WireServer.Limits = .init()) throws {
        directory = NSTemporaryDirectory() + "pharos-node-\(UUID().uuidString.prefix(8))"
        var storage = Shard.Options()
        storage.automaticMaintenance = false
        storage.log = { _ in }
        let service = try ShardService(configuration: .init(dataDirectory: directory, storage: storage, searchThreads: 1, nodeName: "test-shard"))
        server = WireServer(service: service, group: group, limits: limits)
    }

    func start() async throws -> WireClient {
        port = try await server.start(host: "127.0.0.1", port: 0)
        return try await WireClient.connect(host: "127.0.0.1", port: port, group: group)
    }

    func stop() async {
        await server.stop(grace: 5)
        try? await group.shutdownGracefully()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Runs `body` against a started node, and stops it however `body` ends.
    static func with(limits: WireServer.Limits = .init(), _ body: (TestNode, WireClient) async throws -> Void) async throws {
        let node = try TestNode(limits: limits)
        let client = try await node.start()
        do {
            try await body(node, client)
        } catch {
            await client.close()
            await node.stop()
            throw error
        }
        await client.close()
        await node.stop()
    }

    static let dimension = 16
    static let data = SyntheticDataset(dimension: dimension, clusters: 16, normalized: false, seed: 3)

    static func trainedState(_ factory: String = "IVF4,PQ8x4fs,RefineSQ8", seed: UInt64 = 3) throws -> [UInt8] {
        let index = try IndexFactory.make(factory, dimension: dimension, metric: .l2)
        try index.train(SyntheticDataset(dimension: dimension, clusters: 16, normalized: false, seed: seed).vectors(0..<2000, stream: 9), threads: 1)
        return IndexFactory.encoded(index)
    }
}

@Suite(.serialized) struct ServerTests {
    @Test func aNodeServesEveryRequestAfterItsTrainedStateArrives() async throws {
        try await TestNode.with { node, client in
            #expect(try await client.call(.hello(Hello(role: .client, nodeName: "t"))) == .hello(Hello(
                protocolVersion: Hello.currentVersion, role: .shard, nodeName: "test-shard", software: BuildInfo.versionLine(program: "pharos-shard"))))
            #expect(try await client.call(.health) == .healthResult(ready: false, status: "waiting for a trained state"))
            await #expect(throws: WireError(.notReady, "this shard has no trained state yet: push one (TrainedState) first", requestID: 3)) {
                try await client.call(.stats)
            }
            let state = try TestNode.trainedState()
            guard case let .trainedStateAck(version) = try await client.call(.trainedState(indexFile: state)) else { Issue.record("no ack"); return }
            #expect(try await client.call(.trainedState(indexFile: state)) == .trainedStateAck(version: version))   // idempotent
            await #expect { try await client.call(.trainedState(indexFile: try TestNode.trainedState(seed: 4))) } throws: {
                ($0 as? WireError)?.code == .invalidArgument
            }

            let base = TestNode.data.vectors(0..<300, stream: 0)
            let keys = (0..<300).map { "photo-\($0).jpg" }
            #expect(try await client.call(.upsert(UpsertRequest(keys: keys, vectors: base.values, dimension: 16,
                                                                metadata: keys.map { Array($0.utf8) }))) == .upsertResult(written: 300))
            guard case let .searchResult(result) = try await client.call(.search(SearchRequest(
                vectors: base.rows(0..<20).values, dimension: 16, queryKeys: ["photo-7.jpg"], k: 5, nprobe: 4, withVectors: true))) else {
                Issue.record("no search result"); return
            }
            #expect(result.queries.count == 21)
            #expect(!result.partial)
            #expect((0..<20).filter { result.queries[$0].keys.first == keys[$0] }.count >= 18)
            #expect(result.queries[20].keys.first == "photo-7.jpg")   // query by key finds itself
            #expect(result.queries[0].vectors.count == 5 * 16)

            guard case let .fetchResult(entries) = try await client.call(.fetch(keys: ["photo-1.jpg", "nope"])) else { Issue.record("no fetch"); return }
            #expect(entries[0].found && entries[0].metadata == Array("photo-1.jpg".utf8) && entries[0].vector.count == 16)
            #expect(!entries[1].found)
            #expect(try await client.call(.delete(keys: ["photo-1.jpg", "nope"])) == .deleteResult(deleted: 1))
            guard case let .statsResult(stats) = try await client.call(.stats) else { Issue.record("no stats"); return }
            #expect(stats.liveEntries == 299 && stats.dimension == 16 && stats.trainedVersion == version)
        }
    }

    @Test func badRequestsGetNamedErrorsAndTheNodeCarriesOn() async throws {
        try await TestNode.with { node, client in
            _ = try await client.call(.trainedState(indexFile: try TestNode.trainedState()))
            func code(_ message: WireMessage) async -> WireError.Code? {
                do { _ = try await client.call(message); return nil } catch let e as WireError { return e.code } catch { return nil }
            }
            #expect(await code(.upsert(UpsertRequest(keys: ["a"], vectors: [1, 2, 3], dimension: 3))) == .invalidArgument)
            #expect(await code(.upsert(UpsertRequest(keys: ["a"], vectors: [Float](repeating: .nan, count: 16), dimension: 16))) == .invalidArgument)
            #expect(await code(.upsert(UpsertRequest(keys: ["a", "b"], vectors: [Float](repeating: 1, count: 16), dimension: 16))) == .invalidArgument)
            #expect(await code(.upsert(UpsertRequest(keys: [String(repeating: "k", count: 2000)], vectors: [Float](repeating: 1, count: 16), dimension: 16))) == .invalidArgument)
            #expect(await code(.search(SearchRequest(vectors: [Float](repeating: 1, count: 16), dimension: 16, k: 100_000, nprobe: 1))) == .invalidArgument)
            #expect(await code(.search(SearchRequest(queryKeys: ["never stored"], k: 5, nprobe: 1))) == .invalidArgument)
            #expect(await code(.upsertResult(written: 3)) == .unsupported)
            // Still serving.
            #expect(try await client.call(.upsert(UpsertRequest(keys: ["ok"], vectors: [Float](repeating: 1, count: 16), dimension: 16))) == .upsertResult(written: 1))
        }
    }

    /// Many requests in flight on one connection are all answered, each under its own id.
    @Test func requestsInFlightAreMatchedById() async throws {
        try await TestNode.with { node, client in
            _ = try await client.call(.trainedState(indexFile: try TestNode.trainedState()))
            let base = TestNode.data.vectors(0..<100, stream: 0)
            _ = try await client.call(.upsert(UpsertRequest(keys: (0..<100).map { "k\($0)" }, vectors: base.values, dimension: 16)))
            let futures = (0..<40).map { i in
                client.send(.search(SearchRequest(vectors: base.row(i), dimension: 16, k: 1, nprobe: 4)))
            }
            var answered = 0
            for (i, future) in futures.enumerated() {
                let reply = try await future.get()
                guard case let .searchResult(result) = reply.body else { Issue.record("\(reply)"); continue }
                if result.queries.first?.keys.first == "k\(i)" { answered += 1 }
            }
            #expect(answered >= 36)
        }
    }

    @Test func admissionIsBoundedByRequestsAndBytes() throws {
        let node = try TestNode(limits: .init(maximumRequestsInFlight: 2, maximumBytesInFlight: 1000, wire: WireLimits(maximumFrameBytes: 400)))
        defer { try? FileManager.default.removeItem(atPath: node.directory) }
        #expect(node.server.admit(bytes: 600) == nil)
        #expect(node.server.admit(bytes: 600)?.code == .overloaded)   // bytes
        #expect(node.server.admit(bytes: 10) == nil)
        #expect(node.server.admit(bytes: 10)?.code == .overloaded)    // requests
        node.server.finished(bytes: 600)
        #expect(node.server.admit(bytes: 10) == nil)
    }
}
