import Testing
@testable import PharosWire

@Suite struct WireCodecTests {
    static let samples: [WireMessage] = [
        .hello(Hello(role: .shard, nodeName: "shard-2")),
        .search(SearchRequest(vectors: [1, -2.5, 3, 0.25], dimension: 2, queryKeys: ["img/1.jpg"], k: 100, nprobe: 16,
                              refineFactor: 4, expansion: .alphaQE(n: 10, alpha: 3), deadlineMilliseconds: 250, withVectors: true)),
        .search(SearchRequest(vectors: [1, 2], dimension: 2, k: 10, nprobe: 1, expansion: .averageQE(n: 5))),
        .searchResult(SearchResponse(queries: [QueryHits(keys: ["a", "b"], scores: [0.9, 0.8], vectors: [1, 2, 3, 4]),
                                               QueryHits(keys: [], scores: [])],
                                     missing: [ShardFailure(shard: "10.0.0.3:7701", reason: "deadline of 250 ms passed")])),
        .upsert(UpsertRequest(keys: ["k1", "ключ-2"], vectors: [0, 1, 2, 3], dimension: 2, metadata: [[1, 2, 3], []])),
        .upsert(UpsertRequest(keys: ["k1", "k2"], vectors: [], dimension: 0, metadata: [[9], []],
                              encoded: [EncodedRow(list: 3, code: [1, 15, 0], refine: [200, 7]), EncodedRow(list: 0, code: [2, 2, 2], refine: [])],
                              trainedVersion: 0xDEAD_BEEF_0000_0001)),
        .upsertResult(written: 2, replaced: 1),
        .delete(keys: ["k1"]),
        .deleteResult(deleted: 1),
        .fetch(keys: ["k1", "missing"]),
        .fetchResult([FetchedEntry(key: "k1", found: true, vector: [0.5, 0.25], metadata: [9]), FetchedEntry(key: "missing", found: false)]),
        .stats,
        .statsResult(ShardStatistics(liveEntries: 1_000_000, segments: 4, sealedEntries: 999_000, memoryEntries: 1000,
                                     factory: "IVF1024,PQ32x4fs,RefineSQ8", dimension: 128, trainedVersion: 0xdead_beef, metric: "ip")),
        .health,
        .healthResult(ready: false, status: "waiting for a trained state"),
        .trainedState(indexFile: Array("PHAROSIX".utf8) + [0, 1, 2, 255]),
        .trainedStateAck(version: 42),
        .error(WireError(.overloaded, "64 requests in flight, at most 64", requestID: 7)),
        .error(WireError(.staleMap, "epoch 3 < 5", requestID: 8)),
        {
            var request = SearchRequest(vectors: [1, 2], dimension: 2, k: 10, nprobe: 1)
            request.buckets = BucketMask(count: 12, bits: [0b1010_0001, 0b0000_1000])
            return .search(request)
        }(),
        {
            var request = SearchRequest(vectors: [1, 2], dimension: 2, k: 10, nprobe: 1, expansion: .alphaQE(n: 3, alpha: 3))
            request.rerank = .diffusion(shortlist: 300, neighbours: 20, alpha: 0.9, gamma: 2.5)
            return .search(request)
        }(),
        {
            // SearchResult.reranked carries the kind only.
            var response = SearchResponse(queries: [QueryHits(keys: ["a"], scores: [0.5])])
            response.reranked = .diffusion(shortlist: 0, neighbours: 0, alpha: 0, gamma: 0)
            return .searchResult(response)
        }(),
        {
            var request = SearchRequest(vectors: [1, 2, 3, 4], dimension: 2, k: 10, nprobe: 2)
            request.probeLists = [7, 3, 4_000_000_000, 0]
            request.probeBiases = [-0.5, 1, 2.25, 1e30]
            request.probeTrainedVersion = 0xfeed_beef_1234
            return .search(request)
        }(),
        .bucketRead(BucketReadRequest(buckets: BucketMask(count: 8, bits: [0xff]), after: (0xdead_beef_0000_0001, "key-ä"), limit: 4096)),
        .bucketRead(BucketReadRequest(buckets: BucketMask(count: 8, bits: [1]), limit: 1)),
        .bucketEntries([MovedEntry(key: "a", list: 3, code: [1, 2, 15], refine: [9, 9], metadata: [7]),
                        MovedEntry(key: "b", list: 0, code: [0], refine: [], metadata: [])]),
        .bucketWrite([MovedEntry(key: "a", list: 65535, code: [1], refine: [], metadata: [])]),
        .bucketDrop(BucketMask(count: 4096, bits: [UInt8](repeating: 0x55, count: 512))),
        .bucketCounts(count: 4096),
        .bucketCountsResult([0, 1, 1 << 40]),
        .clusterStatus,
        .clusterStatusResult(ClusterReport(epoch: 9, buckets: 4096, replication: 2,
                                           nodes: [NodeReport(name: "s0", address: "127.0.0.1:7701", zone: "a", state: "active", buckets: 2048, entries: 10),
                                                   NodeReport(name: "s1", address: "127.0.0.1:7702", state: "down", buckets: 0, problem: "refused")],
                                           moves: [MoveReport(bucket: 7, source: "s0", target: "s2", phase: "copying", entriesCopied: 5, bytesCopied: 640)],
                                           movesPending: 3, bucketsUnderReplicated: 1, movesDone: 12, lastProblem: "s1: refused")),
        .addNode(NodeAddition(name: "s2", host: "10.0.0.2", port: 7703, zone: "b")),
        .removeNode(name: "s1"),
        .rebalance(RebalanceRequest(replication: 2, maximumConcurrentMoves: 4, rateMegabytes: 50.5)),
    ]

    @Test func theMapEpochTravelsInTheEnvelope() throws {
        let envelope = Envelope(requestID: 1, body: .stats, mapEpoch: 77)
        #expect(try WireCodec.decode(try WireCodec.encode(envelope)).mapEpoch == 77)
        #expect(try WireCodec.decode(try WireCodec.encode(Envelope(requestID: 1, body: .stats))).mapEpoch == 0)
    }

    @Test func bucketMessagesOutsideTheLimitsAreRefusedByName() {
        let limits = RequestLimits()
        func problem(_ message: WireMessage) -> String? {
            do { try limits.validate(message); return nil } catch { return (error as? WireError)?.message ?? "\(error)" }
        }
        var search = SearchRequest(vectors: [1, 2], dimension: 2, k: 10, nprobe: 1)
        search.buckets = BucketMask(count: 12, bits: [0])
        #expect(problem(.search(search))?.contains("bucket_mask has 1 bytes, expected 2") == true)
        search.buckets = BucketMask(count: 12, bits: [0, 0x10])
        #expect(problem(.search(search))?.contains("at or past bucket_count 12") == true)
        search.buckets = BucketMask(count: 12, bits: [0, 0x08])
        #expect(problem(.search(search)) == nil)
        // Lists found by a coordinator: one bias each, the same number per query, at most nprobe.
        var probed = SearchRequest(vectors: [1, 2, 3, 4], dimension: 2, k: 10, nprobe: 2)
        probed.probeLists = [1, 2, 3, 4]
        probed.probeBiases = [0, 0, 0, 0]
        #expect(problem(.search(probed)) == nil)
        probed.probeBiases = [0, 0, 0]
        #expect(problem(.search(probed))?.contains("one bias per list") == true)
        probed.probeLists = [1, 2, 3]
        #expect(problem(.search(probed))?.contains("the same number for each") == true)
        probed.probeLists = [1, 2, 3, 4, 5, 6]
        probed.probeBiases = [0, 0, 0, 0, 0, 0]
        #expect(problem(.search(probed))?.contains("1...nprobe (2)") == true)
        probed.probeLists = [1, 2, 3, 4]
        probed.probeBiases = [0, .infinity, 0, 0]
        #expect(problem(.search(probed))?.contains("probe_biases[1]") == true)
        #expect(problem(.bucketRead(BucketReadRequest(buckets: BucketMask(count: 8, bits: [1]), limit: 0)))?.contains("BucketRead.limit is 0") == true)
        #expect(problem(.bucketRead(BucketReadRequest(buckets: .everything, limit: 5)))?.contains("bucket_count is 0") == true)
        #expect(problem(.bucketDrop(BucketMask(count: 2 << 20, bits: []))) != nil)
        #expect(problem(.bucketWrite([MovedEntry(key: "a", list: 0, code: [1], refine: [], metadata: []),
                                      MovedEntry(key: "a", list: 0, code: [1], refine: [], metadata: [])]))?.contains("repeats key") == true)
        #expect(problem(.bucketWrite([MovedEntry(key: "a", list: 0, code: [], refine: [], metadata: [])])) != nil)
        #expect(problem(.addNode(NodeAddition(name: "bad name", host: "h", port: 1))) != nil)
        #expect(problem(.addNode(NodeAddition(name: "s3", host: "h", port: 0)))?.contains("port is 0") == true)
        #expect(problem(.rebalance(RebalanceRequest(rateMegabytes: .nan))) != nil)
        #expect(problem(.rebalance(RebalanceRequest(replication: 9))) != nil)
    }

    /// `partial` is derived from the shards named missing; a peer that sets the wire flag but
    /// names none (another implementation) must still read as partial, never as complete.
    @Test func aPartialFlagWithoutNamedShardsStaysPartial() throws {
        // Envelope { request_id: 7, search_result (field 4) { partial (field 2): true } }
        let bytes: [UInt8] = [0x08, 0x07, 0x22, 0x02, 0x10, 0x01]
        let envelope = try WireCodec.decode(bytes)
        guard case let .searchResult(result) = envelope.body else {
            Issue.record("decoded \(envelope.body.name)")
            return
        }
        #expect(result.partial)
        #expect(result.missing.count == 1)
        #expect(result.queries.isEmpty)
    }

    /// A proto3 client cannot tell a zero field from an unset one: a re-ranking that names
    /// only its kind takes the documented defaults (shortlist 200, 5 neighbours, 0.9, 3).
    @Test func aReRankingOfKindOnlyTakesTheDefaults() throws {
        // Envelope { request_id: 1, search (3) { vectors: [1, 2], dimension: 2, k: 10, rerank (15) { kind: DIFFUSION } } }
        let search: [UInt8] = [0x0a, 0x08, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40, 0x10, 0x02, 0x20, 0x0a, 0x7a, 0x02, 0x08, 0x01]
        let envelope = try WireCodec.decode([0x08, 0x01, 0x1a, UInt8(search.count)] + search)
        guard case let .search(request) = envelope.body else {
            Issue.record("decoded \(envelope.body.name)")
            return
        }
        #expect(request.rerank == .standardDiffusion)
        // A kind this build does not know is refused, not served as a plain search.
        let unknown = search.dropLast() + [0x07]
        #expect { try WireCodec.decode([0x08, 0x01, 0x1a, UInt8(unknown.count)] + unknown) } throws: {
            ($0 as? WireError)?.message.contains("Search.rerank.kind 7") == true
        }
    }

    @Test(arguments: samples)
    func everyMessageRoundTrips(message: WireMessage) throws {
        let envelope = Envelope(requestID: 0x1234_5678_9abc, body: message)
        #expect(try WireCodec.decode(try WireCodec.encode(envelope)) == envelope)
    }

    @Test func nulBytesInStringsAreRefused() {
        #expect(throws: WireError(.invalidArgument, "key 1 contains a NUL byte")) {
            try WireCodec.encode(Envelope(requestID: 1, body: .delete(keys: ["fine", "bad\u{0}key"])))
        }
    }

    /// Random bytes, truncations and bit flips of valid messages never crash the decoder:
    /// each either decodes or throws a `WireError`.
    @Test func garbageNeverCrashesTheDecoder() throws {
        var state: UInt64 = 0x9e37_79b9_7f4a_7c15
        func next() -> UInt64 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
        var decoded = 0, refused = 0
        let valid = try Self.samples.map { try WireCodec.encode(Envelope(requestID: 9, body: $0)) }
        for round in 0..<3000 {
            var bytes: [UInt8]
            switch round % 3 {
            case 0: bytes = (0..<Int(next() % 200)).map { _ in UInt8(truncatingIfNeeded: next()) }
            case 1:
                bytes = valid[Int(next() % UInt64(valid.count))]
                bytes = Array(bytes.prefix(Int(next() % UInt64(bytes.count + 1))))
            default:
                bytes = valid[Int(next() % UInt64(valid.count))]
                if !bytes.isEmpty { bytes[Int(next() % UInt64(bytes.count))] ^= UInt8(truncatingIfNeeded: next() | 1) }
            }
            do {
                _ = try WireCodec.decode(bytes)
                decoded += 1
            } catch is WireError {
                refused += 1
            }
        }
        #expect(decoded + refused == 3000)
        #expect(refused > 100)
    }

    /// protobuf-c hands strings over NUL-terminated: `row-5\0evil` would arrive as `row-5` and
    /// overwrite it. Such a string (and invalid UTF-8, which would be repaired into U+FFFD so
    /// two keys became one) is refused with the request id, at any depth.
    @Test(arguments: [
        // Envelope { request_id: 9, upsert (field 5) { keys: "row-5\0evil" } }
        ([0x08, 0x09, 0x2a, 0x0c, 0x0a, 0x0a] + Array("row-5".utf8) + [0] + Array("evil".utf8), "Upsert.keys[0] contains a NUL byte"),
        // Envelope { request_id: 9, fetch (field 9) { keys: "ok", keys: "a\0b" } }
        ([0x08, 0x09, 0x4a, 0x09, 0x0a, 0x02] + Array("ok".utf8) + [0x0a, 0x03, 0x61, 0x00, 0x62], "Fetch.keys[1] contains a NUL byte"),
        // Envelope { request_id: 9, delete (field 7) { keys: "a\xffb" } }
        ([0x08, 0x09, 0x3a, 0x05, 0x0a, 0x03, 0x61, 0xff, 0x62], "Delete.keys[0] is not valid UTF-8"),
    ] as [([UInt8], String)])
    func keysWithNulBytesOrBadUTF8AreRefusedNotCut(bytes: [UInt8], problem: String) throws {
        do {
            let envelope = try WireCodec.decode(bytes)
            Issue.record("decoded \(envelope)")
        } catch let error as WireError {
            #expect(error.code == .invalidArgument)
            #expect(error.requestID == 9)
            #expect(error.message.contains(problem), "\(error.message)")
        }
    }
}
