import Foundation
import PharosIndex
import PharosTestSupport
import PharosVectors
import PharosObservability
import PharosWire
import Testing

/// What a single hostile or careless request can do at the boundary: a clear error naming the
/// problem, nothing stored, every server still up. Each test is named after what it proves.
@Suite(.serialized) struct BoundaryTests {
    static let data = SyntheticDataset(dimension: TestCluster.dimension, clusters: 20, normalized: false, seed: 8)

    /// A trained cluster holding `k0..k99`.
    static func loaded(_ body: (TestCluster) async throws -> Void) async throws {
        try await TestCluster.with(factory: "IVF8,PQ8x4fs,RefineFlat") { cluster in
            let index = try IndexFactory.make("IVF8,PQ8x4fs,RefineFlat", dimension: 16, metric: .l2)
            try index.train(data.vectors(0..<2000, stream: 1), threads: 1)
            _ = try await cluster.client.call(.trainedState(indexFile: IndexFactory.encoded(index)))
            _ = try await cluster.client.call(.upsert(UpsertRequest(keys: (0..<100).map { "k\($0)" }, vectors: data.vectors(0..<100, stream: 0).values, dimension: 16)))
            try await body(cluster)
        }
    }

    static func code(of request: WireMessage, port: Int) async throws -> (WireError.Code?, String) {
        let c = try RawConnection(port: port)
        c.send(try FrameEncoder.frame(Envelope(requestID: 41, body: request)))
        guard let reply = await c.nextFrame() else { return (nil, "no reply") }
        guard case let .error(e) = reply.body else { return (nil, reply.body.name) }
        #expect(reply.requestID == 41)
        return (e.code, e.message)
    }

    static func live(_ cluster: TestCluster) async throws -> UInt64 {
        guard case let .statsResult(s) = try await cluster.client.call(.stats) else { return 0 }
        return s.liveEntries
    }

    /// A search of k 10 re-ranked by `rerank`.
    static func reranked(_ rerank: SearchRerank, refineFactor: Int = 4) -> SearchRequest {
        var request = SearchRequest(vectors: [Float](repeating: 1, count: 16), dimension: 16, k: 10, nprobe: 1, refineFactor: refineFactor)
        request.rerank = rerank
        return request
    }

    /// The 10-byte frame that used to abort a shard (and, fanned out, every shard):
    /// `Envelope{request_id: 1, search{k: 5}}`, and its cousins.
    @Test func searchesWithoutQueriesAreRefusedAndKillNoShard() async throws {
        try await Self.loaded { cluster in
            let ports = [cluster.map.shards[0].port, try #require(cluster.coordinatorServer.boundPort)]
            let raw: [UInt8] = [0x00, 0x00, 0x00, 0x06, 0x08, 0x01, 0x1a, 0x02, 0x20, 0x05]
            for port in ports {
                let c = try RawConnection(port: port)
                c.send(raw)
                guard case let .error(e)? = await c.nextFrame()?.body else { Issue.record("port \(port): no error"); continue }
                #expect(e.code == .invalidArgument && e.message.contains("no query"), "\(e)")
                for request in [SearchRequest(dimension: 16, k: 5, nprobe: 1),
                                SearchRequest(k: 5, nprobe: 1, expansion: .alphaQE(n: 5, alpha: 3)),
                                SearchRequest(vectors: [1, 2, 3], dimension: 0, k: 5, nprobe: 1),
                                SearchRequest(vectors: [Float](repeating: .nan, count: 16), dimension: 16, k: 5, nprobe: 1),
                                SearchRequest(vectors: [Float](repeating: 1, count: 16), dimension: 16, k: 0, nprobe: 1),
                                SearchRequest(vectors: [Float](repeating: 1, count: 16), dimension: 16, k: 4096, nprobe: 1, refineFactor: 256),
                                SearchRequest(vectors: [Float](repeating: 1, count: 16), dimension: 16, k: 5, nprobe: 1, expansion: .averageQE(n: 0)),
                                // The expansion's first round asks for top_n with this refine factor.
                                SearchRequest(vectors: [Float](repeating: 1, count: 16), dimension: 16, k: 10, nprobe: 1, refineFactor: 256,
                                              expansion: .averageQE(n: 300)),   // 300 x 256 > 65,536
                                SearchRequest(vectors: [Float](repeating: 1, count: 16 * 10_000), dimension: 16, k: 4096, nprobe: 1, refineFactor: 1),
                                Self.reranked(.diffusion(shortlist: 1_001, neighbours: 50, alpha: 0.99, gamma: 3)),
                                Self.reranked(.diffusion(shortlist: 200, neighbours: 201, alpha: 0.99, gamma: 3)),
                                Self.reranked(.diffusion(shortlist: 200, neighbours: 50, alpha: 1, gamma: 3)),
                                Self.reranked(.diffusion(shortlist: 200, neighbours: 50, alpha: .nan, gamma: 3)),
                                Self.reranked(.diffusion(shortlist: 200, neighbours: 50, alpha: 0.99, gamma: -1)),
                                Self.reranked(.diffusion(shortlist: 200, neighbours: 50, alpha: 0.99, gamma: 101)),
                                {   // 17 queries x 1,000^2: past the coordinator's re-ranking work per request
                                    var r = Self.reranked(.diffusion(shortlist: 1_000, neighbours: 50, alpha: 0.99, gamma: 3), refineFactor: 1)
                                    r.vectors = [Float](repeating: 1, count: 16 * 17)
                                    return r
                                }(),
                                Self.reranked(.diffusion(shortlist: 5, neighbours: 5, alpha: 0.99, gamma: 3)),   // k 10 > shortlist 5
                                Self.reranked(.diffusion(shortlist: 1_000, neighbours: 50, alpha: 0.99, gamma: 3), refineFactor: 256)] {
                    let (code, message) = try await Self.code(of: .search(request), port: port)
                    #expect(code == .invalidArgument, "port \(port): \(request): \(message)")
                }
            }
            guard case let .searchResult(r) = try await cluster.client.call(.search(SearchRequest(vectors: Self.data.vectors(3..<4, stream: 0).values, dimension: 16, k: 1, nprobe: 8))) else {
                Issue.record("no search result"); return
            }
            #expect(r.queries[0].keys == ["k3"] && !r.partial)
        }
    }

    /// Lists found by the coordinator and sent with a search: a shard scans them (the same
    /// hits as finding its own), ignores them when they were found with another trained state,
    /// and refuses lists its index cannot have (a list number past its lists, one named twice).
    @Test func aShardScansTheListsItIsGivenWhenTheyFitItsTrainedState() async throws {
        try await Self.loaded { cluster in
            let port = cluster.map.shards[0].port
            guard case let .statsResult(stats) = try await Self.reply(to: .stats, port: port) else { Issue.record("no stats"); return }
            let index = try IndexFactory.make("IVF8,PQ8x4fs,RefineFlat", dimension: 16, metric: .l2) as! IVFPQIndex
            try index.train(Self.data.vectors(0..<2000, stream: 1), threads: 1)
            let queries = Self.data.vectors(0..<3, stream: 0)
            let plain = SearchRequest(vectors: queries.values, dimension: 16, k: 5, nprobe: 3)
            let probes = try index.assign(queries, nprobe: 3)
            var given = plain
            given.probeLists = probes.lists.map { UInt32($0) }
            given.probeBiases = probes.biases
            given.probeTrainedVersion = stats.trainedVersion
            let expected = try await Self.reply(to: .search(plain), port: port)
            guard case .searchResult = expected else { Issue.record("no result: \(expected)"); return }
            #expect(try await Self.reply(to: .search(given), port: port) == expected)
            // Lists of another trained state are not this index's: the shard finds its own.
            var stale = given
            stale.probeTrainedVersion = stats.trainedVersion &+ 1
            stale.probeLists = [UInt32](repeating: 7, count: 9)
            #expect(try await Self.reply(to: .search(stale), port: port) == expected)
            for lists in [[99] + given.probeLists.dropFirst(), [given.probeLists[1]] + given.probeLists.dropFirst()] {
                var bad = given
                bad.probeLists = Array(lists)
                let (code, message) = try await Self.code(of: .search(bad), port: port)
                #expect(code == .invalidArgument && message.contains("probe"), "\(message)")
            }
            // A client's lists never reach the shards: the coordinator finds them itself (a few
            // queries) or leaves them to the shards (more), whatever the client sent.
            let coordinatorPort = try #require(cluster.coordinatorServer.boundPort)
            for rows in [3, 6] {
                let many = Self.data.vectors(0..<rows, stream: 0)
                var hostile = SearchRequest(vectors: many.values, dimension: 16, k: 5, nprobe: 3)
                hostile.probeLists = [UInt32](repeating: 99, count: rows * 3)
                hostile.probeBiases = [Float](repeating: 0, count: rows * 3)
                hostile.probeTrainedVersion = stats.trainedVersion
                let honest = try await Self.reply(to: .search(SearchRequest(vectors: many.values, dimension: 16, k: 5, nprobe: 3)), port: coordinatorPort)
                guard case .searchResult = honest else { Issue.record("no result: \(String(describing: honest))"); return }
                #expect(try await Self.reply(to: .search(hostile), port: coordinatorPort) == honest, "\(rows) queries")
            }
        }
    }

    static func reply(to request: WireMessage, port: Int) async throws -> WireMessage? {
        let c = try RawConnection(port: port)
        c.send(try FrameEncoder.frame(Envelope(requestID: 5, body: request)))
        return await c.nextFrame()?.body
    }

    /// Zero nprobe and refine factor mean the documented defaults (16 and 4), not 1.
    @Test func zeroNprobeAndRefineMeanTheDocumentedDefaults() async throws {
        try await Self.loaded { cluster in
            let queries = Self.data.vectors(0..<20, stream: 4).values
            func search(_ nprobe: Int, _ refine: Int) async throws -> SearchResponse? {
                guard case let .searchResult(r) = try await cluster.client.call(.search(SearchRequest(
                    vectors: queries, dimension: 16, k: 10, nprobe: nprobe, refineFactor: refine))) else { return nil }
                return r
            }
            let defaults = try await search(0, 0)
            #expect(defaults == (try await search(SearchRequest.defaultNprobe, SearchRequest.defaultRefineFactor)))
            #expect(defaults != (try await search(1, 1)))
        }
    }

    /// Stats says which way scores sort.
    @Test func statsCarryTheMetric() async throws {
        try await Self.loaded { cluster in
            guard case let .statsResult(s) = try await cluster.client.call(.stats) else { Issue.record("no stats"); return }
            #expect(s.metric == "l2")
            let c = try RawConnection(port: cluster.map.shards[1].port)
            c.send(try FrameEncoder.frame(Envelope(requestID: 3, body: .stats)))
            guard case let .statsResult(shard)? = await c.nextFrame()?.body else { Issue.record("no shard stats"); return }
            #expect(shard.metric == "l2")
        }
    }

    /// A bad batch through the coordinator lands nowhere, not on the shards that did not own
    /// the bad row, and the error names the row of the request.
    @Test(arguments: [(17, Float.nan, "row 17 component 2"), (17, .infinity, "row 17 component 2")])
    func aBadRowFailsTheWholeBatchOnEveryShard(row: Int, value: Float, named: String) async throws {
        try await Self.loaded { cluster in
            var vectors = Self.data.vectors(1000..<1300, stream: 0).values
            vectors[row * 16 + 2] = value
            let keys = (1000..<1300).map { "new-\($0)" }
            let (code, message) = try await Self.code(of: .upsert(UpsertRequest(keys: keys, vectors: vectors, dimension: 16)),
                                                port: try #require(cluster.coordinatorServer.boundPort))
            #expect(code == .invalidArgument)
            #expect(message.contains(named), "\(message)")
            #expect(try await Self.live(cluster) == 100)
        }
    }

    @Test func badKeysFailTheWholeBatchNamingTheRow() async throws {
        try await Self.loaded { cluster in
            let port = try #require(cluster.coordinatorServer.boundPort)
            for (badKey, named) in [("", "Upsert.keys[6] is empty"), (String(repeating: "x", count: 2000), "Upsert.keys[6] is 2000 bytes")] {
                var keys = (0..<50).map { "fresh-\($0)" }
                keys[6] = badKey
                let (code, message) = try await Self.code(of: .upsert(UpsertRequest(keys: keys, vectors: Self.data.vectors(0..<50, stream: 0).values, dimension: 16)), port: port)
                #expect(code == .invalidArgument && message.contains(named), "\(message)")
            }
            #expect(try await Self.live(cluster) == 100)
        }
    }

    /// A key twice in one batch is an error naming both rows; across batches it replaces,
    /// and the reply says how many rows replaced a stored key.
    @Test func duplicateKeysInABatchAreRefusedAndReplacementsCounted() async throws {
        try await Self.loaded { cluster in
            let keys = (0..<50).map { "k\($0 % 40)" }
            let (code, message) = try await Self.code(of: .upsert(UpsertRequest(keys: keys, vectors: Self.data.vectors(0..<50, stream: 0).values, dimension: 16)),
                                                port: try #require(cluster.coordinatorServer.boundPort))
            #expect(code == .invalidArgument && message.contains("keys[40]") && message.contains("row 0"), "\(message)")
            let reply = try await cluster.client.call(.upsert(UpsertRequest(keys: (90..<120).map { "k\($0)" },
                                                                            vectors: Self.data.vectors(500..<530, stream: 0).values, dimension: 16)))
            #expect(reply == .upsertResult(written: 30, replaced: 10))
            #expect(try await Self.live(cluster) == 120)
        }
    }

    /// A Hello speaking no version this node speaks is answered UNSUPPORTED and the
    /// connection closed, as Protocols/README.md says; one speaking an overlapping range gets
    /// the highest version both speak, and a version-1 peer (which sends only
    /// `protocol_version` 1) gets version 1.
    @Test func aHelloOfAnotherVersionIsRefusedAndClosed() async throws {
        try await Self.loaded { cluster in
            for port in [cluster.map.shards[0].port, try #require(cluster.coordinatorServer.boundPort)] {
                let c = try RawConnection(port: port)
                c.send(try FrameEncoder.frame(Envelope(requestID: 5, body: .hello(Hello(protocolVersion: Hello.currentVersion + 1, maxProtocolVersion: Hello.currentVersion + 3, role: .client, nodeName: "future")))))
                guard case let .error(e)? = await c.nextFrame()?.body else { Issue.record("no refusal"); continue }
                #expect(e.code == .unsupported && e.requestID == 5)
                #expect(await c.nextFrame() == nil)   // closed
                let ok = try RawConnection(port: port)
                ok.send(try FrameEncoder.frame(Envelope(requestID: 6, body: .hello(Hello(role: .client, nodeName: "now")))))
                guard case let .hello(h)? = await ok.nextFrame()?.body else { Issue.record("no hello"); continue }
                #expect(h.protocolVersion == Hello.currentVersion && h.software.contains(BuildInfo.version))
                ok.send(try FrameEncoder.frame(Envelope(requestID: 7, body: .hello(Hello(protocolVersion: 1, maxProtocolVersion: 0, role: .client, nodeName: "old")))))
                guard case let .hello(old)? = await ok.nextFrame()?.body else { Issue.record("no hello for a version-1 peer"); continue }
                #expect(old.protocolVersion == 1)
                ok.send(try FrameEncoder.frame(Envelope(requestID: 8, body: .hello(Hello(protocolVersion: 2, maxProtocolVersion: 9, role: .client, nodeName: "newer")))))
                guard case let .hello(newer)? = await ok.nextFrame()?.body else { Issue.record("no hello for a newer peer"); continue }
                #expect(newer.protocolVersion == Hello.currentVersion)
            }
        }
    }

    /// A damaged trained state is the client's mistake (INVALID_ARGUMENT), not storage trouble.
    @Test func aBadTrainedStateIsAnInvalidArgument() async throws {
        try await Self.loaded { cluster in
            for port in [cluster.map.shards[0].port, try #require(cluster.coordinatorServer.boundPort)] {
                let (code, message) = try await Self.code(of: .trainedState(indexFile: Array("PHAROSIX".utf8) + [1, 2, 3]), port: port)
                #expect(code == .invalidArgument, "\(message)")
            }
            #expect(try await Self.live(cluster) == 100)
        }
    }
}

/// Who may set a collection's trained state, and when.
@Suite(.serialized) struct TrainedStateTests {
    static let data = BoundaryTests.data

    static func trained(_ factory: String, seed: UInt64 = 1) throws -> [UInt8] {
        let index = try IndexFactory.make(factory, dimension: 16, metric: .l2)
        try index.train(data.vectors(0..<2000, stream: seed), threads: 1)
        return IndexFactory.encoded(index)
    }

    static func whitening() throws -> Whitening {
        try Whitening.learnPCA(data.vectors(0..<500, stream: 9), outputDimension: 16, power: 0.5, shrinkage: 0)
    }

    /// Before training, a state that is not the cluster file's collection is refused, and the
    /// real training still works afterwards.
    @Test func aForeignTrainedStateIsRefusedBeforeTraining() async throws {
        try await TestCluster.with(factory: "IVF8,PQ8x4fs,RefineFlat") { cluster in
            await #expect { _ = try await cluster.client.call(.trainedState(indexFile: try Self.trained("IVF4,PQ8"))) } throws: {
                ($0 as? WireError)?.code == .invalidArgument && "\($0)".contains("IVF8,PQ8x4fs,RefineFlat")
            }
            guard case .trainedStateAck = try await cluster.client.call(.trainedState(indexFile: try Self.trained("IVF8,PQ8x4fs,RefineFlat"))) else {
                Issue.record("the real training was refused"); return
            }
        }
    }

    /// Two pushes at once on an untrained cluster: one wins everywhere, the other is refused;
    /// the shards never end up with different trained states.
    @Test func concurrentPushesLeaveOneTrainedState() async throws {
        try await TestCluster.with(factory: "IVF8,PQ8x4fs,RefineFlat") { cluster in
            let a = try Self.trained("IVF8,PQ8x4fs,RefineFlat", seed: 1), b = try Self.trained("IVF8,PQ8x4fs,RefineFlat", seed: 2)
            let client = cluster.client!
            @Sendable func push(_ state: [UInt8]) async -> Bool {
                (try? await client.call(.trainedState(indexFile: state))) != nil
            }
            async let first = push(a)
            async let second = push(b)
            let outcomes = await [first, second]
            #expect(outcomes.filter { $0 }.count == 1)
            var versions = Set<UInt64>()
            for port in cluster.map.shards.map(\.port) {
                let c = try RawConnection(port: port)
                c.send(try FrameEncoder.frame(Envelope(requestID: 1, body: .stats)))
                if case let .statsResult(s)? = await c.nextFrame()?.body { versions.insert(s.trainedVersion) }
            }
            #expect(versions.count == 1)
        }
    }

    /// After training, the same state is acknowledged again, but a different one, or a
    /// whitening added to a collection of unwhitened vectors, is refused until a drop.
    @Test func aTrainedCollectionRefusesAnotherStateOrWhiteningUntilDropped() async throws {
        try await TestCluster.with(factory: "IVF8,PQ8x4fs,RefineFlat") { cluster in
            let state = try Self.trained("IVF8,PQ8x4fs,RefineFlat")
            _ = try await cluster.client.call(.trainedState(indexFile: state))
            _ = try await cluster.client.call(.upsert(UpsertRequest(keys: (0..<50).map { "k\($0)" }, vectors: Self.data.vectors(0..<50, stream: 0).values, dimension: 16)))
            guard case .trainedStateAck = try await cluster.client.call(.trainedState(indexFile: state)) else { Issue.record("no ack"); return }
            let whitening = try Self.whitening().serialized()
            await #expect { _ = try await cluster.client.call(.trainedState(indexFile: state, whitening: whitening)) } throws: {
                ($0 as? WireError)?.code == .invalidArgument && "\($0)".contains("--replace")
            }
            #expect(cluster.coordinator.whitening == nil)
            let other = try Self.trained("IVF8,PQ8x4fs,RefineFlat", seed: 5)
            await #expect { _ = try await cluster.client.call(.trainedState(indexFile: other)) } throws: {
                ($0 as? WireError)?.code == .invalidArgument && "\($0)".contains("already trained")
            }
            // The explicit path: drop (guarded by the factory), then train anew with a whitening.
            await #expect { _ = try await cluster.client.call(.drop(confirm: "yes")) } throws: { ($0 as? WireError)?.code == .invalidArgument }
            #expect(try await cluster.client.call(.drop(confirm: "IVF8,PQ8x4fs,RefineFlat")) == .dropResult(droppedEntries: 50))
            guard case .trainedStateAck = try await cluster.client.call(.trainedState(indexFile: other, whitening: whitening)) else {
                Issue.record("training after the drop was refused"); return
            }
            #expect(cluster.coordinator.whitening != nil)
            guard case let .statsResult(s) = try await cluster.client.call(.stats) else { Issue.record("no stats"); return }
            #expect(s.liveEntries == 0 && s.trainedVersion != 0)
        }
    }
}

/// Found by Scripts/wire-fuzz.py: values the protocol does not define are refused, not
/// served as something else.
@Suite(.serialized) struct UndefinedValueTests {
    @Test func undefinedEnumsHugeComponentsAndLongFetchesAreRefused() async throws {
        try await BoundaryTests.loaded { cluster in
            for port in [cluster.map.shards[0].port, try #require(cluster.coordinatorServer.boundPort)] {
                // Hello { protocol_version: 1, role: 99 }
                let c = try RawConnection(port: port)
                c.send([0, 0, 0, 8, 0x08, 0x0c, 0x12, 0x04, 0x08, 0x01, 0x10, 0x63])
                guard case let .error(e)? = await c.nextFrame()?.body else { Issue.record("role 99 accepted"); continue }
                #expect(e.code == .invalidArgument && e.message.contains("Hello.role 99"), "\(e)")
                // A search whose expansion kind is 99.
                var bytes = try WireCodec.encode(Envelope(requestID: 13, body: .search(SearchRequest(
                    vectors: [Float](repeating: 1, count: 16), dimension: 16, k: 3, nprobe: 4, expansion: .averageQE(n: 5)))))
                let at = try #require((0..<bytes.count - 5).first { bytes[$0 ..< $0 + 6] == [0x3a, 0x04, 0x08, 0x01, 0x10, 0x05] })
                bytes[at + 3] = 0x63
                c.send(FuzzTests.frame(bytes))
                guard case let .error(x)? = await c.nextFrame()?.body else { Issue.record("kind 99 accepted"); continue }
                #expect(x.code == .invalidArgument && x.message.contains("expansion.kind 99"), "\(x)")
                for huge: Float in [1e20, -3e38] {
                    let (code, message) = try await BoundaryTests.code(of: .search(SearchRequest(vectors: [Float](repeating: huge, count: 16), dimension: 16, k: 3, nprobe: 4)), port: port)
                    #expect(code == .invalidArgument && message.contains("within"), "\(message)")
                }
                let (code, message) = try await BoundaryTests.code(of: .fetch(keys: (0..<10_001).map { "k\($0)" }), port: port)
                #expect(code == .invalidArgument && message.contains("at most 10000"), "\(message)")
            }
        }
    }
}
