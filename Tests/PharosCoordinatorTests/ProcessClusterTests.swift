import Foundation
import NIOPosix
import PharosIndex
import PharosTestSupport
import PharosVectors
import PharosWire
import Testing
@testable import PharosCoordinator

/// Real processes on loopback: three `pharos-shard serve` and one `pharos-coordinator`.
final class ProcessCluster: @unchecked Sendable {
    static var binaries: URL { URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent() }

    let root = NSTemporaryDirectory() + "pharos-procs-\(UUID().uuidString.prefix(8))"
    var shardPorts: [Int] = []
    var shards: [Process?] = []
    var coordinator: Process?
    var coordinatorPort = 0
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    /// A port nothing listens on now, which no other socket is given while a node stopped
    /// at it is down (below the ephemeral range).
    static func freePort() -> Int { LoopbackPort.reserve() }

    /// Starts `binary arguments` and waits (up to 20 s) for its "listening on" line.
    static func launch(_ binary: String, _ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = binaries.appendingPathComponent(binary)
        process.arguments = arguments
        process.environment = ChildEnvironment.forChildren()
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        guard line.contains("listening on") else {
            process.terminate()
            throw WireError(.unavailable, "\(binary) did not start: \(line)")
        }
        return process
    }

    func startShard(_ i: Int) throws {
        shards[i] = try Self.launch("pharos-shard", ["serve", "--data", "\(root)/s\(i)", "--port", "\(shardPorts[i])", "--name", "s\(i)", "--admin-port", "0"])
    }

    func start(factory: String) throws -> ClusterMap {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        shardPorts = (0..<3).map { _ in Self.freePort() }
        shards = [nil, nil, nil]
        for i in 0..<3 { try startShard(i) }
        let map = ClusterMap(collection: .init(dimension: 16, metric: .l2, factory: factory), buckets: 256,
                             shards: (0..<3).map { .init(name: "s\($0)", host: "127.0.0.1", port: shardPorts[$0]) })
        try JSONEncoder().encode(map).write(to: URL(fileURLWithPath: root + "/cluster.json"))
        coordinatorPort = Self.freePort()
        coordinator = try Self.launch("pharos-coordinator", ["--cluster", root + "/cluster.json", "--port", "\(coordinatorPort)", "--admin-port", "0"])
        return map
    }

    func client() async throws -> WireClient {
        try await WireClient.connect(host: "127.0.0.1", port: coordinatorPort, group: group)
    }

    /// SIGTERM everything; returns the exit statuses (0 = clean stop).
    func stop() -> [Int32] {
        let all = ([coordinator] + shards).compactMap { $0 }
        for p in all where p.isRunning { kill(p.processIdentifier, SIGCONT); p.terminate() }
        for p in all { p.waitUntilExit() }
        try? FileManager.default.removeItem(atPath: root)
        try? group.syncShutdownGracefully()
        return all.map(\.terminationStatus)
    }
}

@Suite(.serialized) struct ProcessClusterTests {
    static let data = SyntheticDataset(dimension: 16, clusters: 20, normalized: false, seed: 8)

    @Test func processesServeSurviveAKilledShardAndStopCleanly() async throws {
        let cluster = ProcessCluster()
        let factory = "IVF8,PQ8"
        let map = try cluster.start(factory: factory)
        var stopped = false
        defer { if !stopped { _ = cluster.stop() } }
        let client = try await cluster.client()

        let index = try IndexFactory.make(factory, dimension: 16, metric: .l2) as! IVFPQIndex
        try index.train(Self.data.vectors(0..<3000, stream: 1), threads: 1)
        _ = try await client.call(.trainedState(indexFile: IndexFactory.encoded(index)))

        // Ingest in batches; shard s1 is killed with SIGKILL midway, then restarted.
        var acknowledged: [String] = []
        var refused = 0
        for b in 0..<12 {
            if b == 5 { kill(cluster.shards[1]!.processIdentifier, SIGKILL); cluster.shards[1]!.waitUntilExit() }
            if b == 8 {
                try cluster.startShard(1)
                // The coordinator reconnects after its backoff: wait (bounded) until all shards answer.
                for _ in 0..<100 {
                    if case .healthResult(true, _)? = try? await client.call(.health) { break }
                    try await Task.sleep(nanoseconds: 100_000_000)
                }
            }
            let keys = (0..<100).map { "b\(b)-\($0)" }
            do {
                _ = try await client.call(.upsert(UpsertRequest(keys: keys, vectors: Self.data.vectors(b * 100 ..< b * 100 + 100, stream: 0).values,
                                                                dimension: 16)), timeout: .seconds(10))
                acknowledged += keys
            } catch {
                refused += 1
            }
        }
        #expect(refused == 3)   // batches 5-7: each touches every shard, and s1 was down
        // Every acknowledged key is there, on whichever shard owns it.
        guard case let .fetchResult(entries) = try await client.call(.fetch(keys: acknowledged)) else { Issue.record("no fetch"); return }
        #expect(entries.allSatisfy { $0.found })
        #expect(entries.count == acknowledged.count)

        // The three processes answer like one in-process index over the acknowledged batches
        // (8-bit codes, no refinement: exact configuration, same scores).
        // A refused batch is not undone on the shards that did take their part (writes are
        // idempotent upserts, retried by the client), so those parts are expected too.
        let single = try IndexFactory.load(bytes: IndexFactory.encoded(index), name: "copy") as! IVFPQIndex
        let acknowledgedSet = Set(acknowledged)
        for b in 0..<12 {
            let rows = (0..<100).filter { acknowledgedSet.contains("b\(b)-\($0)") || map.shard(of: "b\(b)-\($0)") != 1 }
            let vectors = Self.data.vectors(b * 100 ..< b * 100 + 100, stream: 0)
            try single.add(vectors.gathering(rows: rows), ids: rows.map { Int64(b * 100 + $0) }, threads: 1)
        }
        let probes = Self.data.vectors(0..<20, stream: 4)
        let expected = try single.search(probes, k: 10, parameters: SearchParameters(nprobe: 3))
        guard case let .searchResult(answer) = try await client.call(.search(SearchRequest(vectors: probes.values, dimension: 16, k: 10, nprobe: 3))) else {
            Issue.record("no result"); return
        }
        var sameKeys = 0
        for q in 0..<20 {
            #expect(answer.queries[q].scores == Array(expected.scores(ofQuery: q)))
            if answer.queries[q].keys == expected.ids(ofQuery: q).map({ "b\($0 / 100)-\($0 % 100)" }) { sameKeys += 1 }
        }
        #expect(sameKeys >= 18)   // the rest differ only in the order of tied scores

        // A frozen shard: answers come back partial within the deadline, then complete again.
        let query = Self.data.vectors(0..<1, stream: 0).values
        kill(cluster.shards[2]!.processIdentifier, SIGSTOP)
        try await Task.sleep(nanoseconds: 100_000_000)   // let the stop land before the search
        var partial = SearchResponse(queries: [])
        for _ in 0..<3 {   // bounded: a loaded machine may need a second look
            let clock = Date()
            guard case let .searchResult(answer) = try await client.call(.search(SearchRequest(
                vectors: query, dimension: 16, k: 5, nprobe: 8, deadlineMilliseconds: 400))) else { Issue.record("no result"); return }
            #expect(Date().timeIntervalSince(clock) < 3)
            partial = answer
            if answer.partial { break }
        }
        #expect(partial.partial && partial.missing.map(\.shard) == ["s2"])
        kill(cluster.shards[2]!.processIdentifier, SIGCONT)
        guard case let .searchResult(complete) = try await client.call(.search(SearchRequest(
            vectors: query, dimension: 16, k: 5, nprobe: 8, deadlineMilliseconds: 2000))) else { Issue.record("no result"); return }
        #expect(!complete.partial)

        await client.close()
        stopped = true
        #expect(cluster.stop() == [0, 0, 0, 0])   // SIGTERM: every process stops cleanly
    }
}

/// Runs Scripts/multihost-test.sh: four hosts (network namespaces under `unshare -n`) on a
/// bridge, a shard cut off with iptables, frozen with SIGSTOP, killed and restarted.
@Suite struct MultiHostTests {
    @Test(.enabled(if: getuid() == 0, "network namespaces need root"), .timeLimit(.minutes(5)))
    func partitionsFreezesAndKillsAcrossHosts() async throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Scripts/multihost-test.sh").path
        let (status, text) = try await ProcessRunner.run("/bin/bash", [script, ProcessCluster.binaries.path])
        #expect(status == 0, "\(text)")
        #expect(text.contains("multihost-test passed"), "\(text)")
    }
}
