import Foundation
import PharosRouting
import PharosWire
import Testing
@testable import PharosShard

/// A node's side of the elastic cluster over the wire: searches that name buckets, bucket
/// pages copied to a second node that then answers identically, drops, and map epochs.
@Suite(.serialized) struct BucketServiceTests {
    static let buckets = 32

    /// A call as the coordinator makes it: stamped with a map epoch.
    static func call(_ client: WireClient, _ message: WireMessage) async throws -> WireMessage {
        let reply = try await client.send(message, mapEpoch: 1).get().body
        if case let .error(error) = reply { throw error }
        return reply
    }

    /// Rows a coordinator encoded once (`Upsert.encoded`, protocol version 3) are stored as the
    /// shard would have stored their vectors: the same search answers and fetched vectors as a
    /// node that encoded them itself. Codes of another trained state, codes this state cannot
    /// make, and codes sent with vectors are refused, naming the field, and store nothing.
    @Test func rowsSentEncodedAreStoredAsTheirVectorsWouldBe() async throws {
        try await TestNode.with { _, encoding in
            try await TestNode.with { _, receiving in
                let state = try TestNode.trainedState()
                _ = try await encoding.call(.trainedState(indexFile: state))
                _ = try await receiving.call(.trainedState(indexFile: state))
                let vectors = TestNode.data.vectors(0..<400, stream: 0)
                let keys = (0..<400).map { "e\($0)" }
                let metadata = keys.map { Array("m-\($0)".utf8) }
                _ = try await encoding.call(.upsert(UpsertRequest(keys: keys, vectors: vectors.values, dimension: 16, metadata: metadata)))
                guard case let .statsResult(stats) = try await encoding.call(.stats) else { Issue.record("no stats"); return }
                let all = BucketMask(count: Self.buckets, bits: BucketSet(count: Self.buckets, buckets: Array(0..<Self.buckets)).mask)
                guard case let .bucketEntries(stored) = try await Self.call(encoding, .bucketRead(BucketReadRequest(buckets: all, after: nil, limit: 4096))) else {
                    Issue.record("no page"); return
                }
                #expect(stored.count == 400)
                let byKey = Dictionary(uniqueKeysWithValues: stored.map { ($0.key, $0) })
                let rows = keys.map { byKey[$0].map { EncodedRow(list: $0.list, code: $0.code, refine: $0.refine) }! }
                func encoded(_ rows: [EncodedRow], version: UInt64 = stats.trainedVersion, keys: [String] = keys) -> WireMessage {
                    .upsert(UpsertRequest(keys: keys, vectors: [], dimension: 0, metadata: metadata, encoded: rows, trainedVersion: version))
                }

                // Refused, nothing stored: another trained state's codes, a list this state
                // lacks, 4-bit codes above 15, codes together with vectors.
                await #expect { try await receiving.call(encoded(rows, version: stats.trainedVersion &+ 1)) } throws: {
                    ($0 as? WireError)?.code == .invalidArgument && "\($0)".contains("Upsert.trained_version")
                }
                var badList = rows
                badList[7].list = 4
                await #expect { try await receiving.call(encoded(badList)) } throws: { "\($0)".contains("list 4") }
                var wideCode = rows
                wideCode[3].code[0] = 16
                await #expect { try await receiving.call(encoded(wideCode)) } throws: { "\($0)".contains("4-bit") }
                await #expect {
                    try await receiving.call(.upsert(UpsertRequest(keys: keys, vectors: vectors.values, dimension: 16, encoded: rows, trainedVersion: stats.trainedVersion)))
                } throws: { "\($0)".contains("send one or the other") }
                await #expect { try await receiving.call(encoded(Array(rows.prefix(10)))) } throws: { "\($0)".contains("10 rows for 400 keys") }
                guard case let .statsResult(empty) = try await receiving.call(.stats) else { Issue.record("no stats"); return }
                #expect(empty.liveEntries == 0)

                #expect(try await receiving.call(encoded(rows)) == .upsertResult(written: 400, replaced: 0))
                let search = SearchRequest(vectors: vectors.rows(0..<30).values, dimension: 16, k: 5, nprobe: 4)
                #expect(try await receiving.call(.search(search)) == (try await encoding.call(.search(search))))
                let fetched = Array(keys.prefix(50))
                #expect(try await receiving.call(.fetch(keys: fetched)) == (try await encoding.call(.fetch(keys: fetched))))
                #expect(try await receiving.call(encoded(rows)) == .upsertResult(written: 400, replaced: 400))
            }
        }
    }

    /// Refine codes that decode to infinities or NaNs are refused (half and single precision
    /// ones can), and codes need the admin role: they are stored as sent.
    @Test func encodedRowsWithNonFiniteRefineCodesAreRefused() async throws {
        try await TestNode.with { _, node in
            let state = try TestNode.trainedState("IVF4,PQ8x4fs,RefineFP16")
            _ = try await node.call(.trainedState(indexFile: state))
            guard case let .statsResult(stats) = try await node.call(.stats) else { Issue.record("no stats"); return }
            let finite = EncodedRow(list: 1, code: Array(repeating: 3, count: 8), refine: Array(repeating: 0, count: 32))
            var infinite = finite
            infinite.refine[5] = 0x7C   // half precision 0x7C00: +infinity
            let message = { (row: EncodedRow) in
                WireMessage.upsert(UpsertRequest(keys: ["a", "b"], vectors: [], dimension: 0, encoded: [finite, row], trainedVersion: stats.trainedVersion))
            }
            await #expect { try await node.call(message(infinite)) } throws: { "\($0)".contains("entry 1 refine code") && "\($0)".contains("infinity or NaN") }
            #expect(try await node.call(message(finite)) == .upsertResult(written: 2, replaced: 0))
            #expect(message(finite).requiredRole == .admin)
            #expect(WireMessage.upsert(UpsertRequest(keys: ["a"], vectors: Array(repeating: 0, count: 16), dimension: 16)).requiredRole == .write)
        }
    }

    @Test func bucketsCopiedByTheirCodesAnswerAsTheOriginal() async throws {
        try await TestNode.with { _, source in
            try await TestNode.with { _, target in
                let state = try TestNode.trainedState()
                _ = try await source.call(.trainedState(indexFile: state))
                _ = try await target.call(.trainedState(indexFile: state))
                let vectors = TestNode.data.vectors(0..<600, stream: 0)
                let keys = (0..<600).map { "p\($0)" }
                _ = try await source.call(.upsert(UpsertRequest(keys: keys, vectors: vectors.values, dimension: 16)))
                let moved = BucketSet(count: Self.buckets, buckets: [1, 5, 9, 30])
                let mask = BucketMask(count: Self.buckets, bits: moved.mask)
                // A page for buckets the target is not receiving is refused: the copy must begin.
                await #expect { try await Self.call(target, .bucketWrite([MovedEntry(key: "p1", list: 0, code: [1, 1, 1, 1, 1, 1, 1, 1], refine: [], metadata: [])])) } throws: {
                    ($0 as? WireError)?.message.contains("not receiving") == true
                }
                // Nor may a copy be finished there: an empty last page holds nothing to check per entry.
                await #expect { try await Self.call(target, .bucketWrite([], finishing: mask)) } throws: {
                    ($0 as? WireError)?.message.contains("not receiving bucket") == true
                }
                _ = try await Self.call(target, .bucketDrop(mask, receive: true))
                var copied = 0
                var cursor: (hash: UInt64, key: String)?
                for _ in 0..<100 {
                    guard case let .bucketEntries(page) = try await Self.call(source, .bucketRead(BucketReadRequest(buckets: mask, after: cursor, limit: 50))) else {
                        Issue.record("no page"); return
                    }
                    if !page.isEmpty { _ = try await Self.call(target, .bucketWrite(page)) }
                    copied += page.count
                    guard page.count == 50, let last = page.last else { break }
                    cursor = (KeyHash.of(last.key), last.key)
                }
                _ = try await Self.call(target, .bucketWrite([], finishing: mask))
                let expected = keys.filter { moved.contains(KeyHash.bucket(of: $0, buckets: Self.buckets)) }
                #expect(copied == expected.count)
                var search = SearchRequest(vectors: vectors.rows(0..<30).values, dimension: 16, k: 5, nprobe: 4)
                search.buckets = mask
                let fromSource = try await source.call(.search(search))
                search.buckets = .everything
                #expect(try await target.call(.search(search)) == fromSource)
                guard case let .bucketCountsResult(counts) = try await source.call(.bucketCounts(count: Self.buckets)) else { Issue.record("no counts"); return }
                #expect(counts.reduce(0, +) == 600 && moved.members.map { counts[$0] }.reduce(0, +) == UInt64(expected.count))
                // Without a map epoch (a client, not a coordinator), bucket moves are refused.
                await #expect { try await source.call(.bucketDrop(mask)) } throws: { ($0 as? WireError)?.code == .invalidArgument }
                #expect(try await Self.call(source, .bucketDrop(mask)) == .deleteResult(deleted: expected.count))
                guard case let .statsResult(stats) = try await source.call(.stats) else { Issue.record("no stats"); return }
                #expect(stats.liveEntries == UInt64(600 - expected.count))
                // A write of codes the trained state cannot have made is refused by name.
                _ = try await Self.call(target, .bucketDrop(mask, receive: true))
                let inMoved = (0..<10_000).map { "x\($0)" }.first { moved.contains(KeyHash.bucket(of: $0, buckets: Self.buckets)) }!
                await #expect { try await Self.call(target, .bucketWrite([MovedEntry(key: inMoved, list: 99, code: [1], refine: [], metadata: [])])) } throws: {
                    ($0 as? WireError)?.code == .invalidArgument
                }
            }
        }
    }

    /// A target keeps a client's write over the (older) streamed copy of the same key, and a
    /// client's delete over a streamed copy of the deleted key, whichever coordinator sent them.
    @Test func aReceivingNodeLeavesOutStreamedKeysThatClientsWroteMeanwhile() async throws {
        try await TestNode.with { _, source in
            try await TestNode.with { _, target in
                let state = try TestNode.trainedState()
                _ = try await source.call(.trainedState(indexFile: state))
                _ = try await target.call(.trainedState(indexFile: state))
                let keys = (0..<400).map { "p\($0)" }
                _ = try await source.call(.upsert(UpsertRequest(keys: keys, vectors: TestNode.data.vectors(0..<400, stream: 0).values, dimension: 16)))
                let all = BucketSet.all(count: Self.buckets)
                let mask = BucketMask(count: Self.buckets, bits: all.mask)
                _ = try await Self.call(target, .bucketDrop(mask, receive: true))
                // While the copy runs, clients write p1 anew and delete p2 through the target.
                let fresh = TestNode.data.vectors(900..<901, stream: 5)
                _ = try await target.call(.upsert(UpsertRequest(keys: ["p1"], vectors: fresh.values, dimension: 16)))
                _ = try await target.call(.delete(keys: ["p2"]))
                guard case let .bucketEntries(page) = try await Self.call(source, .bucketRead(BucketReadRequest(buckets: mask, limit: 4096))) else {
                    Issue.record("no page"); return
                }
                #expect(page.count == 400)
                #expect(try await Self.call(target, .bucketWrite(page, finishing: mask)) == .upsertResult(written: 398))
                guard case let .fetchResult(got) = try await target.call(.fetch(keys: ["p1", "p2", "p3"])) else { Issue.record("no fetch"); return }
                guard case let .fetchResult(want) = try await source.call(.fetch(keys: ["p3"])) else { Issue.record("no fetch"); return }
                #expect(got[0].found && got[0].vector != want[0].vector)   // the client's p1, not the stream's
                #expect(!got[1].found)                                      // p2 stays deleted
                #expect(got[2] == want[0])                                  // p3 copied as stored
                // Receiving ended with the last page: another page is refused.
                await #expect { try await Self.call(target, .bucketWrite([page[0]])) } throws: { ($0 as? WireError)?.code == .invalidArgument }
            }
        }
    }

    @Test func aRequestRoutedByAnOlderMapIsRefusedAcrossRestarts() async throws {
        let node = try TestNode()
        let client = try await node.start()
        func call(_ epoch: UInt64) async -> WireError.Code? {
            do {
                let reply = try await client.send(.health, mapEpoch: epoch).get()
                if case let .error(e) = reply.body { return e.code }
                return nil
            } catch { return .internalError }
        }
        #expect(await call(0) == nil)
        #expect(await call(5) == nil)
        #expect(await call(4) == .staleMap)
        #expect(await call(0) == nil)   // clients and tools are not checked
        #expect(await call(6) == nil)
        await client.close()
        await node.server.stop(grace: 5)
        // The epoch is kept in the data directory: a new node process there still refuses epoch 5.
        let service = try ShardService(configuration: .init(dataDirectory: node.directory, nodeName: "again"))
        #expect(service.mapEpoch.value == 6)
        #expect(throws: WireError.self) { try service.mapEpoch.admit(5) }
        service.close()
        try? await node.group.shutdownGracefully()
        try? FileManager.default.removeItem(atPath: node.directory)
    }
}
