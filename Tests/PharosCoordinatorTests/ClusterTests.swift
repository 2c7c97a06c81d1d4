import Foundation
import Logging
import NIOPosix
import PharosCluster
import PharosIndex
import PharosStorage
import PharosTestSupport
import PharosVectors
import PharosWire
import Testing
@testable import PharosCoordinator
@testable import PharosShard

/// Three shard nodes and a coordinator on loopback, in one process.
final class TestCluster: @unchecked Sendable {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    var shardServers: [WireServer] = []
    var directories: [String] = []
    var coordinatorServer: WireServer!
    var map: ClusterMap!
    var client: WireClient!
    var coordinator: Coordinator!
    var coordinatorPort = 0
    let stateDirectory = NSTemporaryDirectory() + "pharos-coordinator-\(UUID().uuidString.prefix(8))"
    /// Tokens the shards ask for, the one the coordinator presents to them, the ones the
    /// coordinator asks for, and the one the test client presents (nil or empty: none).
    var shardAccess: AccessTokens?
    var shardToken = ""
    var coordinatorAccess: AccessTokens?
    var clientToken = ""
    /// TLS: the shards' server side, the coordinator's client side to them, its server side,
    /// and the test client's (nil: plain TCP).
    var shardTLS: WireTLS?
    var coordinatorToShardTLS: WireTLS?
    var coordinatorTLS: WireTLS?
    var clientTLS: WireTLS?
    /// The coordinator's logger (nil: the default).
    var coordinatorLogger: Logger?

    static let dimension = 16

    /// Starts a shard node serving `directory` on `port` (0: a port of its own below the
    /// ephemeral range, so that the node can be restarted at it); returns its port.
    func startShard(_ i: Int, directory: String, port: Int = 0, wrap: ((ShardService) -> any WireService)? = nil) async throws -> Int {
        var storage = Shard.Options()
        storage.automaticMaintenance = false
        storage.log = { _ in }
        let service = try ShardService(configuration: .init(dataDirectory: directory, storage: storage, nodeName: "s\(i)"))
        let server = WireServer(service: wrap?(service) ?? service, group: group, access: shardAccess, tls: shardTLS)
        let bound = try await server.start(host: "127.0.0.1", port: port == 0 ? LoopbackPort.reserve() : port)
        if i < shardServers.count { shardServers[i] = server } else { shardServers.append(server) }
        return bound
    }

    func start(shards: Int = 3, factory: String, metric: Metric = .l2, replication: Int = 1, runsMover: Bool = true,
               wrap: ((Int, ShardService) -> any WireService)? = nil) async throws {
        var addresses: [ClusterMap.ShardAddress] = []
        for i in 0..<shards {
            let dir = NSTemporaryDirectory() + "pharos-cluster-\(UUID().uuidString.prefix(8))"
            directories.append(dir)
            let port = try await startShard(i, directory: dir, wrap: wrap.map { w in { w(i, $0) } })
            addresses.append(.init(name: "s\(i)", host: "127.0.0.1", port: port))
        }
        map = ClusterMap(collection: .init(dimension: Self.dimension, metric: metric, factory: factory), buckets: 64, shards: addresses,
                         replication: replication)
        var options = Coordinator.Options(stateDirectory: stateDirectory)
        options.runsMover = runsMover
        options.shardToken = shardToken
        options.shardTLS = coordinatorToShardTLS
        coordinator = try coordinatorLogger.map { try Coordinator(map: map, group: group, options: options, logger: $0) }
            ?? Coordinator(map: map, group: group, options: options)
        coordinatorServer = WireServer(service: coordinator, group: group, access: coordinatorAccess, tls: coordinatorTLS)
        let port = try await coordinatorServer.start(host: "127.0.0.1", port: 0)
        coordinatorPort = port
        client = try await WireClient.connect(host: "127.0.0.1", port: port, group: group, token: clientToken, tls: clientTLS)
    }

    func stop() async {
        await client?.close()
        await coordinatorServer?.stop(grace: 2)
        for s in shardServers { await s.stop(grace: 2) }
        try? await group.shutdownGracefully()
        for d in directories + [stateDirectory] { try? FileManager.default.removeItem(atPath: d) }
    }

    static func with(factory: String, _ body: (TestCluster) async throws -> Void) async throws {
        let cluster = TestCluster()
        do {
            try await cluster.start(factory: factory)
            try await body(cluster)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }
}

@Suite(.serialized) struct ClusterTests {
    static let data = SyntheticDataset(dimension: TestCluster.dimension, clusters: 20, normalized: false, seed: 5)

    static func trained(_ factory: String) throws -> IVFPQIndex {
        let index = try IndexFactory.make(factory, dimension: TestCluster.dimension, metric: .l2) as! IVFPQIndex
        try index.train(data.vectors(0..<3000, stream: 1), threads: 1)
        return index
    }

    /// Search through the coordinator over 3 shards returns what one in-process index over the
    /// same data returns (8-bit codes, no refinement: each entry's distance is the same on any
    /// shard, so the merged top-k is the global top-k).
    @Test func threeShardsAnswerLikeOneIndex() async throws {
        let factory = "IVF8,PQ8"
        try await TestCluster.with(factory: factory) { cluster in
            let trained = try Self.trained(factory)
            _ = try await cluster.client.call(.trainedState(indexFile: IndexFactory.encoded(trained)))
            let base = Self.data.vectors(0..<3000, stream: 0)
            for start in stride(from: 0, to: 3000, by: 1000) {
                let rows = start ..< start + 1000
                #expect(try await cluster.client.call(.upsert(UpsertRequest(keys: rows.map { "id-\($0)" }, vectors: base.rows(rows).values,
                                                                            dimension: 16))) == .upsertResult(written: 1000))
            }
            guard case let .statsResult(stats) = try await cluster.client.call(.stats) else { Issue.record("no stats"); return }
            #expect(stats.liveEntries == 3000)

            let single = try IndexFactory.load(bytes: IndexFactory.encoded(trained), name: "copy") as! IVFPQIndex
            try single.add(base, ids: nil, threads: 1)
            let queries = Self.data.vectors(0..<40, stream: 2)
            let expected = try single.search(queries, k: 10, parameters: SearchParameters(nprobe: 3))
            guard case let .searchResult(result) = try await cluster.client.call(.search(SearchRequest(
                vectors: queries.values, dimension: 16, k: 10, nprobe: 3))) else { Issue.record("no result"); return }
            #expect(!result.partial)
            var sameKeys = 0
            for q in 0..<40 {
                #expect(result.queries[q].scores == Array(expected.scores(ofQuery: q)))
                if result.queries[q].keys == expected.ids(ofQuery: q).map({ "id-\($0)" }) { sameKeys += 1 }
            }
            #expect(sameKeys >= 38)   // the rest differ only in the order of tied scores
        }
    }

    /// A whitening pushed with the trained state is kept by the coordinator and applied to
    /// every query and upsert: the cluster answers like one index over the whitened data.
    @Test func coordinatorAppliesAndKeepsTheWhitening() async throws {
        let factory = "IVF8,PQ8"
        let raw = SyntheticDataset(dimension: 24, clusters: 20, normalized: false, seed: 9)
        let whitening = try Whitening.learnPCA(raw.vectors(0..<2000, stream: 1), outputDimension: TestCluster.dimension)
        let index = try IndexFactory.make(factory, dimension: TestCluster.dimension, metric: .l2) as! IVFPQIndex
        try index.train(try whitening.descriptorSpace.prepare(raw.vectors(0..<2000, stream: 1)), threads: 1)
        try await TestCluster.with(factory: factory) { cluster in
            _ = try await cluster.client.call(.trainedState(indexFile: IndexFactory.encoded(index), whitening: whitening.serialized()))
            #expect(cluster.coordinator.whitening == whitening)
            let base = raw.vectors(0..<900, stream: 0)
            #expect(try await cluster.client.call(.upsert(UpsertRequest(keys: (0..<900).map { "w\($0)" }, vectors: base.values, dimension: 24)))
                    == .upsertResult(written: 900))
            let single = try IndexFactory.load(bytes: IndexFactory.encoded(index), name: "copy") as! IVFPQIndex
            try single.add(try whitening.descriptorSpace.prepare(base), ids: nil, threads: 1)
            let queries = raw.vectors(0..<20, stream: 2)
            let expected = try single.search(try whitening.descriptorSpace.prepare(queries), k: 5, parameters: SearchParameters(nprobe: 8))
            guard case let .searchResult(result) = try await cluster.client.call(.search(SearchRequest(
                vectors: queries.values, dimension: 24, k: 5, nprobe: 8))) else { Issue.record("no result"); return }
            for q in 0..<20 { #expect(result.queries[q].scores == Array(expected.scores(ofQuery: q))) }

            // Vectors of the collection's (whitened) dimension are refused, naming the one expected.
            await #expect { try await cluster.client.call(.search(SearchRequest(vectors: [Float](repeating: 0.1, count: 16), dimension: 16, k: 5, nprobe: 8))) } throws: {
                ($0 as? WireError)?.message.contains("24-D") == true
            }
            // Another whitening would put new vectors in another space: refused.
            let other = try Whitening.learnPCA(raw.vectors(0..<2000, stream: 3), outputDimension: TestCluster.dimension)
            await #expect { try await cluster.client.call(.trainedState(indexFile: IndexFactory.encoded(index), whitening: other.serialized())) } throws: {
                ($0 as? WireError)?.message.contains("different whitening") == true
            }
            // A new coordinator over the same state folder starts with it.
            let restarted = try Coordinator(map: cluster.map, group: cluster.group, stateDirectory: cluster.stateDirectory)
            #expect(restarted.whitening == whitening)
            await restarted.close()
        }
    }

    /// The coordinator is the authority on the collection's space: `Schema` says what it is
    /// (shards refuse to), and `pharos train` (`CollectionTrainer`) trains from that alone,
    /// learning a whitening that the schema then reports.
    @Test func theCoordinatorIsTheAuthorityOnTheSchema() async throws {
        let factory = "IVF8,PQ8"
        try await TestCluster.with(factory: factory) { cluster in
            let untrained = CollectionSchema(dimension: 16, metric: "l2", factory: factory, normalize: false, inputDimension: 16,
                                             whitened: false, buckets: 64, shardCount: 3)
            #expect(try await cluster.client.call(.schema) == .schemaResult(untrained))
            let shard = try await WireClient.connect(host: "127.0.0.1", port: cluster.map.shards[0].port, group: cluster.group)
            await #expect { try await shard.call(.schema) } throws: { ($0 as? WireError)?.code == .unsupported }
            await shard.close()

            let raw = SyntheticDataset(dimension: 24, clusters: 20, normalized: false, seed: 9)
            let trainer = CollectionTrainer(schema: try await CollectionTrainer.fetchSchema(cluster.client), threads: 1, report: { _ in })
            // A sample of the wrong dimension without a whitening is refused before anything is pushed.
            #expect(throws: CollectionTrainer.TrainingError.self) { try trainer.train(raw.vectors(0..<2000, stream: 1), whitening: .none) }
            let trained = try trainer.train(raw.vectors(0..<2000, stream: 1), whitening: .learnPCA(power: 0.5, shrinkage: 0))
            _ = try await trainer.push(trained, through: cluster.client, replace: false)
            var whitened = untrained
            // `normalize` stays the cluster file's: the whitening implies unit length on its own.
            (whitened.inputDimension, whitened.whitened) = (24, true)
            #expect(try await cluster.client.call(.schema) == .schemaResult(whitened))
            #expect(cluster.coordinator.whitening == trained.whitening)

            // Raw 24-D vectors in, whitened on the way: a stored row is its own nearest neighbour.
            let base = raw.vectors(0..<300, stream: 0)
            _ = try await cluster.client.call(.upsert(UpsertRequest(keys: (0..<300).map { "r\($0)" }, vectors: base.values, dimension: 24)))
            guard case let .searchResult(result) = try await cluster.client.call(.search(SearchRequest(
                vectors: base.row(7), dimension: 24, k: 1, nprobe: 8))) else { Issue.record("no result"); return }
            #expect(result.queries[0].keys == ["r7"])
        }
    }

    /// A query by key is indexed itself: expansion leaves it out of its own neighbours
    /// (otherwise it is its own first neighbour and n = 1 expands nothing). The answer equals
    /// the expansion computed by hand from the stored vector and its n nearest *other* entries.
    @Test func expansionByKeyLeavesTheQueryOut() async throws {
        let factory = "IVF8,PQ8x4fs,RefineSQ8"
        try await TestCluster.with(factory: factory) { cluster in
            _ = try await cluster.client.call(.trainedState(indexFile: IndexFactory.encoded(try Self.trained(factory))))
            let base = Self.data.vectors(0..<600, stream: 0)
            _ = try await cluster.client.call(.upsert(UpsertRequest(keys: (0..<600).map { "p\($0)" }, vectors: base.values, dimension: 16)))
            let expansion = QueryExpansion.alphaQE(n: 3, alpha: 3)
            guard case let .fetchResult(entries) = try await cluster.client.call(.fetch(keys: ["p5"])),
                  case let .searchResult(first) = try await cluster.client.call(.search(SearchRequest(
                    vectors: entries[0].vector, dimension: 16, k: 4, nprobe: 8, withVectors: true))) else { Issue.record("no result"); return }
            #expect(first.queries[0].keys.first == "p5")   // its own nearest neighbour, as expected
            let others = Coordinator.neighbours(first.queries[0], excluding: "p5", count: 3, dimension: 16)
            #expect(others.keys.count == 3 && !others.keys.contains("p5"))
            let expanded = QueryExpansionMath.expand(query: entries[0].vector, hits: others, expansion: expansion, space: cluster.coordinator.space)
            guard case let .searchResult(direct) = try await cluster.client.call(.search(SearchRequest(
                    vectors: expanded, dimension: 16, k: 10, nprobe: 8))),
                  case let .searchResult(byKey) = try await cluster.client.call(.search(SearchRequest(
                    queryKeys: ["p5"], k: 10, nprobe: 8, expansion: expansion))) else { Issue.record("no result"); return }
            #expect(byKey.queries == direct.queries)
            #expect(Coordinator.firstRoundK(neighbours: 16384, byKey: true, request: SearchRequest(queryKeys: ["p5"], k: 10, nprobe: 8), queries: 1,
                                            dimension: 16) == 16384)   // never past what a shard accepts (16,384 x refine 4)
        }
    }

    /// Evaluation ranks the whole collection (revisited Oxford: 4,993 images, deeper than the
    /// old limit of 4,096): a ranking as deep as the collection comes back through the cluster,
    /// every entry once, the query's own entry first, with the refine factor lowered to fit.
    @Test func aWholeCollectionRankingComesBackThroughTheCluster() async throws {
        let factory = "IVF8,PQ8x4fs,RefineSQ8"
        try await TestCluster.with(factory: factory) { cluster in
            _ = try await cluster.client.call(.trainedState(indexFile: IndexFactory.encoded(try Self.trained(factory))))
            let count = 5000
            let base = Self.data.vectors(0..<count, stream: 0)
            for first in stride(from: 0, to: count, by: 1000) {
                _ = try await cluster.client.call(.upsert(UpsertRequest(keys: (first..<first + 1000).map { "p\($0)" },
                                                                        vectors: base.rows(first..<first + 1000).values, dimension: 16)))
            }
            for k in [count, 20_000] {   // 20,000 x the default refine factor 4 is past the shortlist limit
                let search = ClusterSearch(k: k, nprobe: 8)
                let rankings = try await search.rankings(of: ["p7", "p4321"], vectors: [:], through: cluster.client)
                for (query, ranking) in zip(["p7", "p4321"], rankings) {
                    #expect(ranking.count == count && Set(ranking).count == count, "k \(k): \(ranking.count) keys")
                    #expect(ranking.first == query)
                }
            }
        }
    }

    /// Diffusion through the cluster: the coordinator's answer is the diffusion of the shortlist
    /// the same cluster returns, cut to k, with diffusion scores; over an exact collection (flat
    /// refinement, every list probed, the shortlist wholly refined) it is the ranking `pharos
    /// eval --database` computes (`ExactRanker`), by vector, and by key after an expansion.
    @Test func diffusionThroughTheClusterEqualsTheExactRanking() async throws {
        let factory = "IVF8,PQ8x4fs,RefineFlat"
        let data = SyntheticDataset(dimension: TestCluster.dimension, clusters: 20, normalized: true, seed: 11)
        let cluster = TestCluster()
        do {
            try await cluster.start(factory: factory, metric: .innerProduct)
            let index = try IndexFactory.make(factory, dimension: 16, metric: .innerProduct) as! IVFPQIndex
            try index.train(data.vectors(0..<3000, stream: 1), threads: 1)
            _ = try await cluster.client.call(.trainedState(indexFile: IndexFactory.encoded(index)))
            let count = 600
            let base = data.vectors(0..<count, stream: 0)
            let keys = (0..<count).map { "p\($0)" }
            _ = try await cluster.client.call(.upsert(UpsertRequest(keys: keys, vectors: base.values, dimension: 16)))
            let rerank = SearchRerank.diffusion(shortlist: 50, neighbours: 10, alpha: 0.99, gamma: 3)
            let query = data.vectors(0..<1, stream: 2).row(0)

            guard case let .searchResult(shortlist) = try await cluster.client.call(.search(SearchRequest(
                    vectors: query, dimension: 16, k: 50, nprobe: 8, refineFactor: 12, withVectors: true))) else { Issue.record("no result"); return }
            var request = SearchRequest(vectors: query, dimension: 16, k: 10, nprobe: 8, refineFactor: 12)
            request.rerank = rerank
            guard case let .searchResult(diffused) = try await cluster.client.call(.search(request)) else { Issue.record("no result"); return }
            let byHand = try Coordinator.reranked(shortlist, queries: [query], rerank: rerank, k: 10, withVectors: false, dimension: 16)
            #expect(diffused.queries == byHand.queries && diffused.reranked.kind == "diffusion")
            #expect(diffused.queries[0].keys.count == 10 && Set(diffused.queries[0].keys).isSubset(of: Set(shortlist.queries[0].keys)))

            let ranker = try ExactRanker(database: base, keys: keys, whitening: nil)
            #expect(ranker.ranking(query, k: 10, expansion: .none, rerank: rerank) == diffused.queries[0].keys)
            let expansion = QueryExpansion.alphaQE(n: 3, alpha: 3)
            let search = ClusterSearch(k: 10, nprobe: 8, refineFactor: 12, expansion: expansion, rerank: rerank)
            let rankings = try await search.rankings(of: ["p5", "p77"], vectors: [:], through: cluster.client)
            for (key, ranking) in zip(["p5", "p77"], rankings) {
                #expect(ranking == ranker.ranking(try #require(ranker.vector(ofKey: key)), k: 10, expansion: expansion, own: key, rerank: rerank), "\(key)")
            }
            // Queries by key are held to the re-ranking's limits with the collection's dimension
            // before anything is fetched (16 x 1,000 x 16 floats pass, 17 x 1,000^2 work does not).
            var byKeys = SearchRequest(queryKeys: (0..<17).map { "p\($0)" }, k: 10, nprobe: 8, refineFactor: 1)
            byKeys.rerank = .diffusion(shortlist: 1_000, neighbours: 50, alpha: 0.99, gamma: 3)
            await #expect { try await cluster.client.call(.search(byKeys)) } throws: {
                ($0 as? WireError)?.message.contains("Search.rerank: 17 queries x shortlist 1000 squared") == true
            }
            // A shortlist without its vectors is refused, not passed off as re-ranked.
            #expect(throws: WireError.self) {
                try Coordinator.reranked(SearchResponse(queries: [QueryHits(keys: ["a"], scores: [1])]), queries: [query], rerank: rerank,
                                         k: 1, withVectors: false, dimension: 16)
            }
            // A shard is not asked to re-rank, and refuses to.
            let shard = try await WireClient.connect(host: "127.0.0.1", port: cluster.map.shards[0].port, group: cluster.group)
            await #expect { try await shard.call(.search(request)) } throws: {
                ($0 as? WireError)?.message.contains("a shard does not re-rank") == true
            }
            await shard.close()
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    /// A coordinator that predates re-ranking ignores the field and answers in the first
    /// search's order: the client refuses that answer rather than pass it off as diffused.
    @Test func anAnswerWithoutTheReRankingAskedForIsRefused() async throws {
        final class OlderCoordinator: WireService {
            let serviceName = "older coordinator"
            func respond(to message: WireMessage, reply: @escaping @Sendable (WireMessage) -> Void) {
                reply(.searchResult(SearchResponse(queries: [QueryHits(keys: ["a"], scores: [1])])))
            }
            func close() async {}
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = WireServer(service: OlderCoordinator(), group: group)
        let port = try await server.start(host: "127.0.0.1", port: 0)
        let client = try await WireClient.connect(host: "127.0.0.1", port: port, group: group)
        let search = ClusterSearch(k: 1, nprobe: 1, rerank: .standardDiffusion)
        await #expect { _ = try await search.rankings(of: ["a"], vectors: [:], through: client) } throws: {
            ($0 as? WireError)?.message.contains("predates protocol version 4") == true
        }
        // Without re-ranking the same answer is taken.
        #expect(try await ClusterSearch(k: 1, nprobe: 1).rankings(of: ["a"], vectors: [:], through: client) == [["a"]])
        await client.close()
        await server.stop(grace: 1)
        try await group.shutdownGracefully()
    }

    @Test func expansionAndQueryByKeyAndPartialAnswers() async throws {
        let factory = "IVF8,PQ8x4fs,RefineSQ8"
        try await TestCluster.with(factory: factory) { cluster in
            _ = try await cluster.client.call(.trainedState(indexFile: IndexFactory.encoded(try Self.trained(factory))))
            let base = Self.data.vectors(0..<600, stream: 0)
            _ = try await cluster.client.call(.upsert(UpsertRequest(keys: (0..<600).map { "p\($0)" }, vectors: base.values, dimension: 16)))

            // alpha-QE equals: first round with vectors, expand, second round.
            let query = base.row(5)
            let expansion = QueryExpansion.alphaQE(n: 5, alpha: 3)
            // (The coordinator's first round asks for the top n only.)
            guard case let .searchResult(first) = try await cluster.client.call(.search(SearchRequest(
                vectors: query, dimension: 16, k: 5, nprobe: 8, withVectors: true))) else { Issue.record("no result"); return }
            let expanded = QueryExpansionMath.expand(query: query, hits: first.queries[0], expansion: expansion, space: cluster.coordinator.space)
            guard case let .searchResult(direct) = try await cluster.client.call(.search(SearchRequest(
                vectors: expanded, dimension: 16, k: 10, nprobe: 8))),
                  case let .searchResult(viaCoordinator) = try await cluster.client.call(.search(SearchRequest(
                    vectors: query, dimension: 16, k: 10, nprobe: 8, expansion: expansion))) else { Issue.record("no result"); return }
            #expect(viaCoordinator.queries == direct.queries)

            // Query by key: the stored entry comes back first.
            guard case let .searchResult(byKey) = try await cluster.client.call(.search(SearchRequest(queryKeys: ["p42"], k: 3, nprobe: 8))) else {
                Issue.record("no result"); return
            }
            #expect(byKey.queries[0].keys.first == "p42")

            // One shard down: answers come back flagged partial, naming it.
            await cluster.shardServers[1].stop(grace: 1)
            guard case let .searchResult(partial) = try await cluster.client.call(.search(SearchRequest(
                vectors: query, dimension: 16, k: 10, nprobe: 8, deadlineMilliseconds: 2000))) else { Issue.record("no result"); return }
            #expect(partial.partial)
            #expect(partial.missing.map(\.shard) == ["s1"])
            #expect(partial.queries[0].keys.count == 10)
            // Writes that need the missing shard fail, naming it; nothing is acknowledged.
            await #expect { try await cluster.client.call(.upsert(UpsertRequest(
                keys: (0..<30).map { "new\($0)" }, vectors: Self.data.vectors(0..<30, stream: 3).values, dimension: 16))) } throws: {
                ($0 as? WireError)?.message.contains("s1") == true
            }
        }
    }
}
