#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NIOPosix
@testable import PharosObservability
import PharosStorage
import PharosWire
import Testing
@testable import PharosShard

/// The admin port as Prometheus and a prober see it: a shard node's exposition after real
/// requests, readiness before and after the trained state, and refusals of the rest.
@Suite struct AdminEndpointTests {
    /// One HTTP/1.1 exchange over a plain socket (`Connection: close`): status and body.
    static func http(_ port: Int, _ path: String, method: String = "GET", body: String = "") throws -> (status: Int, body: String) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
        let request = Array("\(method) \(path) HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            received += chunk[0..<n]
        }
        let text = String(decoding: received, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n"), let status = Int(text.split(separator: " ").dropFirst().first ?? "") else {
            throw POSIXError(.EBADMSG)
        }
        return (status, String(text[split.upperBound...]))
    }

    @Test func aShardNodeReportsWhatItServedAndWhenItIsReady() async throws {
        let directory = NSTemporaryDirectory() + "pharos-admin-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let metrics = MetricsRegistry()
        BuildInfo.register(in: metrics, program: "pharos-shard")
        var storage = Shard.Options()
        storage.automaticMaintenance = false
        storage.log = { _ in }
        storage.observe = ShardMetrics.storageObserver(metrics)
        let service = try ShardService(configuration: .init(dataDirectory: directory, storage: storage, nodeName: "admin-test"))
        ShardMetrics.register(service, in: metrics)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = WireServer(service: service, group: group, metrics: WireMetrics(registry: metrics))
        let admin = AdminServer(metrics: metrics, group: group, logger: Logger(label: "test")) { ShardMetrics.readiness(of: service) }
        let port = try await server.start(host: "127.0.0.1", port: 0)
        let adminPort = try await admin.start(host: "127.0.0.1", port: 0)
        let client = try await WireClient.connect(host: "127.0.0.1", port: port, group: group)

        #expect(try Self.http(adminPort, "/livez") == (200, "ok\n"))
        let before = try Self.http(adminPort, "/readyz")
        #expect(before.status == 503 && before.body.contains("no trained state"))

        _ = try await client.call(.trainedState(indexFile: try TestNode.trainedState()))
        let base = TestNode.data.vectors(0..<100, stream: 0)
        _ = try await client.call(.upsert(UpsertRequest(keys: (0..<100).map { "k\($0)" }, vectors: base.values, dimension: 16)))
        _ = try await client.call(.delete(keys: ["k0", "k1"]))
        _ = try await client.call(.search(SearchRequest(vectors: base.rows(0..<3).values, dimension: 16, k: 5, nprobe: 2)))
        await #expect(throws: WireError.self) {   // a wrong dimension: refused, and counted as such
            try await client.call(.search(SearchRequest(vectors: [1, 2, 3], dimension: 3, k: 5, nprobe: 2)))
        }

        #expect(try Self.http(adminPort, "/readyz") == (200, "ready\n"))
        let page = try Self.http(adminPort, "/metrics")
        #expect(page.status == 200)
        let lines = Set(page.body.split(separator: "\n").map(String.init))
        for expected in [
            #"pharos_requests_total{type="Upsert",outcome="ok"} 1"#,
            #"pharos_requests_total{type="Delete",outcome="ok"} 1"#,
            #"pharos_requests_total{type="Search",outcome="ok"} 1"#,
            #"pharos_requests_total{type="Search",outcome="invalid_argument"} 1"#,
            #"pharos_shard_entries{state="live"} 98.0"#,
            #"pharos_shard_entries{state="deleted"} 2.0"#,
            "pharos_shard_trained 1.0",
            "pharos_shard_unsealed_entries 100.0",
            #"pharos_request_duration_seconds_count{type="Upsert"} 1"#,
        ] {
            #expect(lines.contains(expected), "missing \(expected)")
        }
        #expect(page.body.contains("# HELP pharos_requests_total "))
        #expect(page.body.contains(#"pharos_build_info{program="pharos-shard",version="\#(BuildInfo.version)""#))
        // Upsert, Delete and the trained state each wrote and fsynced the log.
        let syncs = lines.first { $0.hasPrefix("pharos_shard_log_fsync_seconds_count ") }.flatMap { Int($0.split(separator: " ")[1]) } ?? 0
        #expect(syncs >= 2)

        #expect(try Self.http(adminPort, "/anything").status == 404)
        #expect(try Self.http(adminPort, "/metrics", method: "POST").status == 405)
        #expect(try Self.http(adminPort, "/metrics", body: String(repeating: "x", count: 10_000)).status == 413)

        await client.close()
        await admin.stop()
        await server.stop(grace: 5)
        try await group.shutdownGracefully()
    }

    @Test func jsonLogLinesAreOneEscapedObjectWithTheFixedFieldsFirst() {
        let line = JSONLogHandler.line(time: Date(timeIntervalSince1970: 1_700_000_000.25), level: .warning, logger: "pharos.shard",
                                       message: "a \"quoted\" key\nand a tab\t\u{1}", fields: ["request": "42", "meta.message": "kept"])
        #expect(line == #"{"time":"2023-11-14T22:13:20.250Z","level":"warning","logger":"pharos.shard","message":"a \"quoted\" key\nand a tab\t\u0001","meta.message":"kept","request":"42"}"# + "\n")
        let decoded = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String]
        #expect(decoded?["request"] == "42" && decoded?["message"]?.hasSuffix("\u{1}") == true)
    }

    @Test func residentMemoryIsReadFromProcStatus() {
        let status = "Name:\tpharos-shard\nVmRSS:\t  9000 kB\nRssAnon:\t    1200 kB\nRssFile:\t    7700 kB\nRssShmem:\t 0 kB\n"
        #expect(ProcessMemory.parse(status) == ProcessMemory(anonymousBytes: 1200 * 1024, fileBytes: 7700 * 1024))
        #expect(ProcessMemory.current().fileBytes > 0)
    }
}
