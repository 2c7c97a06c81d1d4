import Foundation
import NIOPosix
import PharosIndex
import PharosWire
import Testing
@testable import PharosCoordinator

/// Tokens per role, from outside: a coordinator and shards started with tokens serve each
/// request only to a token with the role it needs, and say which role was missing.
@Suite(.serialized) struct AccessTokenTests {
    static let shardAdmin = "shard-admin-0123456789abcdef"
    static let reader = "reader-token-0123456789"
    static let writer = "writer-token-0123456789"
    static let admin = "admin-token-0123456789ab"

    static func refusal(_ body: @escaping () async throws -> WireMessage) async -> WireError? {
        do {
            _ = try await body()
            return nil
        } catch {
            return error as? WireError
        }
    }

    @Test func eachRequestNeedsATokenWithItsRole() async throws {
        let cluster = TestCluster()
        cluster.shardAccess = try AccessTokens([(Self.shardAdmin, .admin)])
        cluster.shardToken = Self.shardAdmin
        cluster.coordinatorAccess = try AccessTokens([(Self.reader, .read), (Self.writer, .write), (Self.admin, .admin)])
        cluster.clientToken = Self.admin
        do {
            try await cluster.start(factory: "IVF8,PQ8")
            let group = cluster.group, port = cluster.coordinatorPort
            // The admin pushes the trained state; the coordinator reaches the shards with its own token.
            _ = try await cluster.client.call(.trainedState(indexFile: IndexFactory.encoded(try ClusterTests.trained("IVF8,PQ8"))))
            let base = ClusterTests.data.vectors(0..<300, stream: 0)
            let keys = (0..<300).map { "t\($0)" }

            let anonymous = try await WireClient.connect(host: "127.0.0.1", port: port, group: group)
            let reader = try await WireClient.connect(host: "127.0.0.1", port: port, group: group, token: Self.reader)
            let writer = try await WireClient.connect(host: "127.0.0.1", port: port, group: group, token: Self.writer)
            let stranger = try await WireClient.connect(host: "127.0.0.1", port: port, group: group, token: "not-a-token-of-this-server")

            let hello = try await anonymous.call(.hello(Hello(role: .client, nodeName: "t")))   // Hello needs no token
            #expect({ if case .hello = hello { return true } else { return false } }())
            let none = await Self.refusal { try await anonymous.call(.search(SearchRequest(vectors: base.rows(0..<1).values, dimension: 16, k: 5, nprobe: 2))) }
            #expect(none?.code == .unauthorized && none?.message.contains("needs a token with the read role") == true)
            let readerWrites = await Self.refusal { try await reader.call(.upsert(UpsertRequest(keys: keys, vectors: base.values, dimension: 16))) }
            #expect(readerWrites?.code == .unauthorized && readerWrites?.message == "Upsert needs the write role; the token has read")
            let writerTrains = await Self.refusal { try await writer.call(.drop(confirm: "drop")) }
            #expect(writerTrains?.code == .unauthorized && writerTrains?.message == "Drop needs the admin role; the token has write")
            let unknown = await Self.refusal { try await stranger.call(.stats) }
            #expect(unknown?.code == .unauthorized && unknown?.message.contains("not one this server knows") == true)

            // What each role may do, it does; nothing refused above changed anything.
            #expect(try await writer.call(.upsert(UpsertRequest(keys: keys, vectors: base.values, dimension: 16))) == .upsertResult(written: 300))
            guard case let .searchResult(result) = try await reader.call(.search(SearchRequest(
                vectors: base.rows(0..<10).values, dimension: 16, k: 3, nprobe: 8))) else { Issue.record("no search result"); return }
            #expect(!result.partial && (0..<10).filter { result.queries[$0].keys.first == keys[$0] }.count >= 9)
            guard case let .statsResult(stats) = try await reader.call(.stats) else { Issue.record("no stats"); return }
            #expect(stats.liveEntries == 300)

            // A shard asked without its token refuses, and says why.
            let direct = try await WireClient.connect(host: "127.0.0.1", port: cluster.map.shards[0].port, group: group)
            let shardRefusal = await Self.refusal { try await direct.call(.stats) }
            #expect(shardRefusal?.code == .unauthorized)
            for client in [anonymous, reader, writer, stranger, direct] { await client.close() }
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    @Test func aTokensFileWithAProblemIsRefusedNamingTheLine() throws {
        let path = NSTemporaryDirectory() + "pharos-tokens-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: path) }
        func problem(_ text: String) -> String? {
            try? text.write(toFile: path, atomically: true, encoding: .utf8)
            do {
                _ = try AccessTokens.load(path)
                return nil
            } catch {
                return (error as? WireError)?.message.replacingOccurrences(of: path, with: "F")
            }
        }
        #expect(problem("# roles\nread \(Self.reader)\nadmin \(Self.admin)  # the operators\n") == nil)
        #expect(problem("read \(Self.reader)\nwrite short\n") == "F:2: a token of 5 characters; at least 16 expected")
        #expect(problem("reader \(Self.reader)\n") == "F:1: role \"reader\": expected read, write or admin")
        #expect(problem("read\n") == "F:1: expected ROLE TOKEN, found 1 fields")
        #expect(problem("read \(Self.reader)\nadmin \(Self.reader)\n") == "F: token 2 is given twice")
        #expect(problem("# nothing\n") == "F: no tokens (lines of ROLE TOKEN)")
        let tokens = try AccessTokens([(Self.reader, .read), (Self.admin, .admin)])
        #expect(tokens.role(of: Self.reader) == .read && tokens.role(of: Self.admin) == .admin && tokens.role(of: Self.writer) == nil)
        #expect(tokens.role(of: String(Self.reader.dropLast())) == nil)
    }
}
