import Foundation
import PharosIndex
import PharosTestSupport
import PharosWire
import Testing
@testable import PharosCoordinator

/// Mutual TLS between every party: shards accept only the coordinator's client certificate,
/// the coordinator only clients with one from the same CA. A client without a certificate, with
/// one from another CA, or speaking plain TCP cannot be served, and the server carries on.
@Suite(.serialized) struct MutualTLSTests {
    /// Throw-away certificates (`Scripts/make-test-certificates.sh`) in a temporary folder.
    static func certificates() async throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let folder = NSTemporaryDirectory() + "pharos-tls-\(UUID().uuidString.prefix(8))"
        let (status, output) = try await ProcessRunner.run("/bin/bash", [root + "/Scripts/make-test-certificates.sh", folder])
        guard status == 0 else { throw WireError(.internalError, "make-test-certificates.sh failed: \(output)") }
        return folder
    }

    static func served(_ client: WireClient) async -> Bool {
        do {
            _ = try await client.call(.stats, timeout: .seconds(5))
            return true
        } catch {
            return false
        }
    }

    @Test func onlyCertificatesOfTheClustersCAAreServed() async throws {
        let certs = try await Self.certificates()
        defer { try? FileManager.default.removeItem(atPath: certs) }
        let server = try WireTLS.server(certificate: certs + "/server.pem", key: certs + "/server.key", clientCA: certs + "/ca.pem")
        let member = try WireTLS.client(ca: certs + "/ca.pem", certificate: certs + "/client.pem", key: certs + "/client.key")
        let cluster = TestCluster()
        cluster.shardTLS = server
        cluster.coordinatorToShardTLS = member
        cluster.coordinatorTLS = server
        cluster.clientTLS = member
        do {
            try await cluster.start(factory: "IVF8,PQ8")
            let group = cluster.group, port = cluster.coordinatorPort
            _ = try await cluster.client.call(.trainedState(indexFile: IndexFactory.encoded(try ClusterTests.trained("IVF8,PQ8"))))
            let base = ClusterTests.data.vectors(0..<200, stream: 0)
            #expect(try await cluster.client.call(.upsert(UpsertRequest(keys: (0..<200).map { "m\($0)" }, vectors: base.values, dimension: 16)))
                    == .upsertResult(written: 200))
            guard case let .searchResult(result) = try await cluster.client.call(.search(SearchRequest(
                vectors: base.rows(0..<5).values, dimension: 16, k: 1, nprobe: 8))) else { Issue.record("no search result"); return }
            #expect(!result.partial && result.queries.map { $0.keys.first } == (0..<5).map { "m\($0)" })

            let anonymous = try await WireClient.connect(host: "127.0.0.1", port: port, group: group, tls: try WireTLS.client(ca: certs + "/ca.pem"))
            let stranger = try await WireClient.connect(host: "127.0.0.1", port: port, group: group, tls: try WireTLS.client(
                ca: certs + "/ca.pem", certificate: certs + "/stranger.pem", key: certs + "/stranger.key"))
            let plain = try await WireClient.connect(host: "127.0.0.1", port: port, group: group)
            // A client that does not trust the server's CA refuses it (the system roots do not hold the test CA).
            let doubting = try await WireClient.connect(host: "127.0.0.1", port: port, group: group, tls: try WireTLS.client(
                ca: certs + "/other-ca.pem", certificate: certs + "/client.pem", key: certs + "/client.key"))
            for (name, client) in [("no certificate", anonymous), ("another CA's certificate", stranger), ("plain TCP", plain),
                                   ("a client not trusting the server", doubting)] {
                #expect(await !Self.served(client), "\(name) was served")
                await client.close()
            }
            // A shard asked directly with a client certificate of the cluster's CA answers; the
            // coordinator's link to it is the same, so the cluster above answered through it.
            let direct = try await WireClient.connect(host: "127.0.0.1", port: cluster.map.shards[0].port, group: group, tls: member)
            #expect(await Self.served(direct))
            await direct.close()
            // And the coordinator still serves its own clients after the refusals.
            guard case let .statsResult(stats) = try await cluster.client.call(.stats) else { Issue.record("no stats"); return }
            #expect(stats.liveEntries == 200)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    @Test func badTLSFilesAreNamedNotTrappedOn() throws {
        let missing = "/nonexistent/server.pem"
        #expect { _ = try WireTLS.server(certificate: missing, key: missing) } throws: {
            ($0 as? WireError)?.message.hasPrefix("/nonexistent/server.pem: cannot load the TLS certificate") == true
        }
        #expect { _ = try WireTLS.client(ca: nil, certificate: "x.pem", key: nil) } throws: {
            ($0 as? WireError)?.message == "a client certificate needs its key, and a key its certificate"
        }
    }
}
