import Foundation
import NIOPosix
import PharosCoordinator
import PharosIndex
import PharosStorage
import PharosVectors
import PharosWire

/// The cluster against the in-process engine on the same data, in one run (`pharos
/// cluster-bench`, Benchmarks/cluster.sh): per-query latency through the coordinator vs one
/// in-process index holding all the data, throughput with concurrent clients, alpha-QE's
/// cost, and ingestion through the coordinator vs a single in-process shard.
public struct ClusterBenchmark: Sendable {
    /// The coordinator's host.
    public var host = "127.0.0.1"
    /// The coordinator's port.
    public var port = 7700
    /// The cluster file.
    public var cluster: String = "data/cluster/cluster.json"
    /// Training vectors.
    public var train: String
    /// Vectors to ingest.
    public var base: String
    /// Query vectors.
    public var queries: String
    /// Queries per latency run.
    public var queryCount: Int = 500
    /// Results per query.
    public var k: Int = 100
    /// Lists probed per query.
    public var nprobe: Int = 16
    /// Concurrent clients for the throughput row.
    public var clients: Int = 16
    /// Rounds (each: in-process, coordinator and alpha-QE blocks in turn); medians over rounds are reported.
    public var rounds: Int = 5
    /// Upsert requests in flight through the coordinator (as pharos ingest --in-flight).
    public var inFlight: Int = 4

    /// A benchmark of these files against the (empty) cluster at `host:port`.
    public init(host: String, port: Int, train: String, base: String, queries: String) {
        (self.host, self.port, self.train, self.base, self.queries) = (host, port, train, base, queries)
    }

    /// Runs it; a Markdown table.
    public func run() async throws -> String {
        let map = try ClusterMap.load(cluster)
        let metric = map.collection.metric
        let trainRows = try VectorFileReader(path: train).readAll()
        let baseRows = try VectorFileReader(path: base).readAll()
        let queryReader = try VectorFileReader(path: queries)
        let queryRows = try queryReader.readRows(0 ..< min(queryCount, queryReader.count))
        let n = baseRows.rows, d = baseRows.columns
        let keys = (0..<n).map { "row-\($0)" }
        let index = try IndexFactory.make(map.collection.factory, dimension: d, metric: metric)
        try index.train(trainRows, threads: Parallel.defaultThreads)
        let trained = IndexFactory.encoded(index)
        let parameters = SearchParameters(nprobe: nprobe, threads: 1)
        let (k, nprobe, clients, rounds, inFlight) = (self.k, self.nprobe, self.clients, self.rounds, max(1, self.inFlight))

        // Ingestion: one in-process shard (same batches, 2 in flight) vs the coordinator.
        let shardDirectory = NSTemporaryDirectory() + "pharos-bench-shard-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: shardDirectory) }
        var storage = Shard.Options()
        storage.encodeThreads = Parallel.defaultThreads
        let batch = 5000
        let clock = Date()
        let local = try Shard.create(at: shardDirectory, trainedIndex: try Self.invertedFile(trained), options: storage)
        try local.upsertInOrder(count: (n + batch - 1) / batch) { b in
            let rows = b * batch ..< min(n, (b + 1) * batch)
            return (Array(keys[rows]), baseRows.rows(rows), nil)
        }
        let localRate = Double(n) / Date().timeIntervalSince(clock)
        local.close()

        let memory = try IndexFactory.load(bytes: trained, name: "trained")
        try memory.add(baseRows, ids: nil, threads: Parallel.defaultThreads)

        let connectionGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let client = try await WireClient.connect(host: host, port: port, group: connectionGroup)
        func close() async {
            await client.close()
            try? await connectionGroup.shutdownGracefully()
        }
        let report: String
        do { report = try await { () async throws -> String in
            _ = try await client.call(.trainedState(indexFile: trained), timeout: .seconds(60))
            let start = Date()
            try await withThrowingTaskGroup(of: Void.self) { group in
                var next = 0
                func submit(_ b: Int) {
                    let rows = b * batch ..< min(n, (b + 1) * batch)
                    let request = UpsertRequest(keys: Array(keys[rows]), vectors: baseRows.rows(rows).values, dimension: d)
                    group.addTask { _ = try await client.call(.upsert(request), timeout: .seconds(120)) }
                }
                let batches = (n + batch - 1) / batch
                while next < min(inFlight, batches) { submit(next); next += 1 }
                while try await group.next() != nil {
                    if next < batches { submit(next); next += 1 }
                }
            }
            let clusterRate = Double(n) / Date().timeIntervalSince(start)

            // Latency: each round runs the queries in-process, then through the coordinator, then
            // with alpha-QE, as three blocks; rounds repeat the blocks, so the modes interleave
            // over time. (Alternating query by query measured the in-process index's cache sweep
            // and the QE's double round landing in front of every coordinator query: on 2 cores
            // that is interference, not coordinator cost.)
            var inProcess: [[Double]] = [], viaCoordinator: [[Double]] = [], expanded: [[Double]] = []
            for _ in 0..<rounds {
                var a: [Double] = [], b: [Double] = [], c: [Double] = []
                for q in 0..<queryRows.rows {
                    let row = queryRows.rows(q ..< q + 1)
                    let t = Date()
                    _ = try memory.search(row, k: k, parameters: parameters)
                    a.append(Date().timeIntervalSince(t) * 1000)
                }
                for q in 0..<queryRows.rows {
                    let t = Date()
                    _ = try await client.call(.search(SearchRequest(vectors: queryRows.row(q), dimension: d, k: k, nprobe: nprobe)))
                    b.append(Date().timeIntervalSince(t) * 1000)
                }
                for q in 0..<queryRows.rows {
                    let t = Date()
                    _ = try await client.call(.search(SearchRequest(vectors: queryRows.row(q), dimension: d, k: k, nprobe: nprobe,
                                                                    expansion: .alphaQE(n: 10, alpha: 3))))
                    c.append(Date().timeIntervalSince(t) * 1000)
                }
                inProcess.append(a); viaCoordinator.append(b); expanded.append(c)
            }
            // Throughput: concurrent clients, each with its own connection, single-query requests.
            let parts = (host: host, port: port)
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
            let perClient = max(1, queryRows.rows / clients * 2)
            let throughputStart = Date()
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for c in 0..<clients {
                    tasks.addTask {
                        let connection = try await WireClient.connect(host: parts.host, port: parts.port, group: group)
                        for i in 0..<perClient {
                            let q = (c * perClient + i) % queryRows.rows
                            _ = try await connection.call(.search(SearchRequest(vectors: queryRows.row(q), dimension: d, k: k, nprobe: nprobe)))
                        }
                        await connection.close()
                    }
                }
                try await tasks.waitForAll()
            }
            let throughput = Double(perClient * clients) / Date().timeIntervalSince(throughputStart)
            try? await group.shutdownGracefully()

            let p50a = inProcess.map { $0.median }.median, p99a = inProcess.map { $0.percentile(0.99) }.median
            let p50b = viaCoordinator.map { $0.median }.median, p99b = viaCoordinator.map { $0.percentile(0.99) }.median
            let p50c = expanded.map { $0.median }.median, p99c = expanded.map { $0.percentile(0.99) }.median
            return """
            ## Cluster vs in-process engine: \(n) x \(d), \(map.collection.factory), \(map.shards.count) shards on loopback, k=\(k), nprobe=\(nprobe)

            | measure | in-process | through the coordinator | difference / ratio |
            |---|---|---|---|
            | search latency p50 (ms), one query per request | \(String(format: "%.3f", p50a)) | \(String(format: "%.3f", p50b)) | +\(String(format: "%.3f", p50b - p50a)) ms |
            | search latency p99 (ms) | \(String(format: "%.3f", p99a)) | \(String(format: "%.3f", p99b)) | +\(String(format: "%.3f", p99b - p99a)) ms |
            | alpha-QE (alpha 3, top 10) latency p50 / p99 (ms) | | \(String(format: "%.3f / %.3f", p50c, p99c)) | \(String(format: "%.2f", p50c / p50b))x plain p50 |
            | throughput, \(clients) concurrent clients (QPS) | | \(String(format: "%.0f", throughput)) | |
            | ingestion (vectors/s), batches of \(batch); shard: 2 in flight, coordinator: \(inFlight) | \(String(format: "%.0f", localRate)) (one in-process shard) | \(String(format: "%.0f", clusterRate)) | \(String(format: "%.2f", clusterRate / localRate))x |

            Medians over \(rounds) rounds of \(queryRows.rows) queries; each round runs in-process, coordinator and alpha-QE blocks in turn.
            """
        }() } catch {
            await close()
            throw error
        }
        await close()
        return report
    }

    /// `bytes` (a trained index) as the contract shards store.
    private static func invertedFile(_ bytes: [UInt8]) throws -> any InvertedFileIndex {
        guard let index = try IndexFactory.load(bytes: bytes, name: "trained") as? any InvertedFileIndex else {
            throw IndexError.invalidParameter(name: "factory", value: "not an inverted-file index", allowed: "an IVF/PQ factory")
        }
        return index
    }
}
