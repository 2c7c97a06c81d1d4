import Foundation
import PharosIndex
import PharosTestSupport
import PharosWire
import Testing
@testable import PharosCoordinator

/// `pharos cluster up` as a user runs it: a supervisor, not a launcher.
@Suite(.serialized) struct ClusterUpTests {
    static var pharos: URL { ProcessCluster.binaries.appendingPathComponent("pharos") }

    /// Runs `pharos arguments` to completion (bounded by the command's own checks).
    static func run(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await ProcessRunner.run(pharos.path, arguments)
    }

    /// A port with the next three free too (the coordinator's and three shards'), below the
    /// ephemeral range so that a restarted shard gets its port back.
    static func freeBlock() -> Int { LoopbackPort.reserve(count: 4) }

    /// The PID of the shard serving `folder`, from /proc (nil when none runs).
    static func shardPID(serving folder: String) -> Int32? {
        pid { $0.contains("serve") && $0.contains(folder) }
    }

    /// The PID of a process whose arguments satisfy `matches`.
    static func pid(_ matches: ([String]) -> Bool) -> Int32? {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for pid in pids.compactMap(Int32.init) {
            guard let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { continue }
            if matches(raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }) { return pid }
        }
        return nil
    }

    @Test func aKilledShardIsRestartedAndCtrlCStopsEverythingCleanly() async throws {
        let root = NSTemporaryDirectory() + "pharos-up-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let port = Self.freeBlock()
        let process = Process()
        process.executableURL = Self.pharos
        process.arguments = ["cluster", "up", "--data", root, "--dimension", "16", "--factory", "IVF8,PQ8x4fs", "--port", "\(port)"]
        process.environment = ChildEnvironment.forChildren()
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let ready = try await BlockingWork.run { String(decoding: out.fileHandleForReading.availableData, as: UTF8.self) }
        #expect(ready.contains("cluster ready"), "\(ready)")
        let folder = root + "/shard-1"
        let first = try #require(Self.shardPID(serving: folder))
        kill(first, SIGKILL)
        var second: Int32?
        for _ in 0..<100 {   // up to 10 s
            try await Task.sleep(nanoseconds: 100_000_000)
            if let pid = Self.shardPID(serving: folder), pid != first { second = pid; break }
        }
        #expect(second != nil, "shard-1 was not restarted")
        #expect(process.isRunning, "cluster up stopped when one shard died")
        // The restarted shard answers (it may take a moment to listen).
        var answered = false
        for _ in 0..<50 where !answered {
            let c = try? RawConnection(port: port + 2)
            if let c {
                c.send(try FrameEncoder.frame(Envelope(requestID: 9, body: .health)))
                answered = await c.nextFrame()?.requestID == 9
            }
            if !answered { try await Task.sleep(nanoseconds: 100_000_000) }
        }
        #expect(answered)
        // SIGHUP (a closed terminal) stops nothing: not the coordinator, not the supervisor.
        let coordinator = try #require(Self.pid { $0.contains(root + "/cluster.json") })
        kill(coordinator, SIGHUP)
        kill(process.processIdentifier, SIGHUP)
        try await Task.sleep(nanoseconds: 300_000_000)
        #expect(process.isRunning && Self.pid { $0.contains(root + "/cluster.json") } == coordinator)
        kill(process.processIdentifier, SIGINT)
        let (stdout, stderr) = try await BlockingWork.run {
            (String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
             String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
        }
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(stdout.contains("cluster stopped"))
        #expect(stderr.contains("shard-1 was killed by SIGKILL; restarting it"), "\(stderr)")
        #expect(!stderr.contains("Cannot schedule"), "\(stderr)")
        #expect(stderr.contains("SIGHUP received: reloaded") && stderr.contains("SIGHUP ignored"), "\(stderr)")
        #expect(Self.shardPID(serving: folder) == nil)
    }

    @Test func flagsThatContradictTheClusterFileAreAnError() async throws {
        let root = NSTemporaryDirectory() + "pharos-up-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let map = ClusterMap(collection: .init(dimension: 16, metric: .l2, factory: "IVF8,PQ8x4fs"), buckets: 64,
                             shards: [.init(name: "shard-0", host: "127.0.0.1", port: 7001)])
        let file = root + "/cluster.json"
        let original = try JSONEncoder().encode(map)
        try original.write(to: URL(fileURLWithPath: file))
        let (status, output) = try await Self.run(["cluster", "up", "--data", root, "--dimension", "32", "--factory", "IVF8,PQ4"])
        #expect(status != 0)
        #expect(output.contains("--dimension 32, but the file says 16") && output.contains("--factory IVF8,PQ4, but the file says IVF8,PQ8x4fs"), "\(output)")
        #expect(FileManager.default.contents(atPath: file) == original)   // not rewritten
    }

    @Test(arguments: [("Flat", "not an IVF/PQ index"), ("IVF8,PQ7", "do not divide"), ("IVF8,PQ8x3", "PQ8x3")])
    func aFactoryShardsCannotServeFailsAtClusterUp(factory: String, problem: String) async throws {
        let root = NSTemporaryDirectory() + "pharos-up-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (status, output) = try await Self.run(["cluster", "up", "--data", root, "--dimension", "16", "--factory", factory])
        #expect(status != 0)
        #expect(output.contains(problem), "\(output)")
        #expect(!FileManager.default.fileExists(atPath: root + "/cluster.json"))
    }

    @Test func theClusterFileRefusesUnknownKeys() throws {
        let path = NSTemporaryDirectory() + "pharos-map-\(UUID().uuidString.prefix(8)).json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let text = #"{"collection": {"dimension": 16, "metric": "ip", "factory": "IVF8,PQ8", "normalise": true}, "buckets": 64, "shards": [{"name": "a", "host": "127.0.0.1", "port": 7001}]}"#
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        #expect { try ClusterMap.load(path) } throws: { "\($0)".contains("unknown key \"normalise\" in collection") }
    }
}

/// The CLI's exit statuses: 0 success, 1 failure, 2 degraded (partial, not ready), 64 usage.
@Suite(.serialized) struct ExitStatusTests {
    @Test func statusOfAnUntrainedClusterExitsTwoAndUsageErrorsSixtyFour() async throws {
        let cluster = ProcessCluster()
        _ = try cluster.start(factory: "IVF8,PQ8")
        defer { _ = cluster.stop() }
        let address = "127.0.0.1:\(cluster.coordinatorPort)"
        let (status, output) = try await ClusterUpTests.run(["status", "--coordinator", address])
        #expect(status == 2, "\(output)")
        #expect(output.contains("ready: no"))
        let (usage, _) = try await ClusterUpTests.run(["search", "--coordinator", address, "-k", "ten"])
        #expect(usage == 64)
        // A missing file after the flags parsed is a failure (1), not a usage error.
        let (missing, said) = try await ClusterUpTests.run(["search", "--coordinator", address, "--queries", "/nonexistent.fvecs"])
        #expect(missing == 1, "\(said)")
        #expect(said.contains("/nonexistent.fvecs"))
    }
}

/// `pharos data` and `pharos ingest` on bad arguments and bad files: a clear error before any
/// work, nothing half-written.
@Suite struct DataAndIngestCommandTests {
    static func folder() -> String { NSTemporaryDirectory() + "pharos-cli-\(UUID().uuidString.prefix(8))" }

    @Test func dataCommandsValidateEveryArgumentFirst() async throws {
        let root = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: root) }
        for (arguments, problem) in [(["data", "synthetic", "--dimension", "0", "--out", root + "/a"], "--dimension 0"),
                                     (["data", "synthetic", "--count", "0", "--out", root + "/b"], "--count 0")] {
            let (status, output) = try await ClusterUpTests.run(arguments)
            #expect(status == 64 && output.contains(problem), "\(output)")
        }
        #expect(!FileManager.default.fileExists(atPath: root + "/a") && !FileManager.default.fileExists(atPath: root + "/b"))
        let small = ["--count", "300", "--train-count", "50", "--queries", "4", "--clusters", "4"]
        _ = try await ClusterUpTests.run(["data", "synthetic", "--dimension", "8", "--out", root + "/d8"] + small)
        _ = try await ClusterUpTests.run(["data", "synthetic", "--dimension", "16", "--out", root + "/d16"] + small)
        #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/d8").sorted()
                == ["base.fvecs", "queries.fvecs", "train.fvecs", "truth-l2-100.ivecs"])
        let (k0, said) = try await ClusterUpTests.run(["data", "truth", "--base", root + "/d8/base.fvecs", "--queries", root + "/d8/queries.fvecs",
                                                       "-k", "0", "--out", root + "/t.ivecs"])
        #expect(k0 == 64 && said.contains("-k 0"), "\(said)")
        let (mismatch, why) = try await ClusterUpTests.run(["data", "truth", "--base", root + "/d8/base.fvecs",
                                                            "--queries", root + "/d16/queries.fvecs", "--out", root + "/t.ivecs"])
        #expect(mismatch == 1 && why.contains("16-D") && why.contains("8-D"), "\(why)")
        #expect(!FileManager.default.fileExists(atPath: root + "/t.ivecs"))
        let (noFolder, said2) = try await ClusterUpTests.run(["extract", "--images", root + "/no-such-folder", "--out", root + "/x"])
        #expect(noFolder == 1 && said2.contains("no-such-folder: the folder does not exist"), "\(said2)")
    }

    /// A batch the cluster refuses is reported with the row of the file, not only the row of
    /// the request (the batch began elsewhere in the file).
    @Test func ingestNamesTheRowOfTheFile() async throws {
        let cluster = ProcessCluster()
        _ = try cluster.start(factory: "IVF8,PQ8")
        defer { _ = cluster.stop() }
        let root = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: root) }
        _ = try await ClusterUpTests.run(["data", "synthetic", "--dimension", "16", "--count", "300", "--train-count", "300", "--queries", "4",
                                          "--clusters", "4", "--out", root])
        try FileManager.default.copyItem(atPath: root + "/base.fvecs", toPath: root + "/x.fvecs")
        let address = "127.0.0.1:\(cluster.coordinatorPort)"
        let (trained, output) = try await ClusterUpTests.run(["train", "--train", root + "/train.fvecs",
                                                              "--coordinator", address])
        #expect(trained == 0, "\(output)")
        var keys = (0..<300).map { "key-\($0)" }
        keys[217] = "key-203"   // a duplicate inside the third batch of 100
        try keys.joined(separator: "\n").write(toFile: root + "/keys.txt", atomically: true, encoding: .utf8)
        let (status, said) = try await ClusterUpTests.run(["ingest", "--vectors", root + "/x.fvecs", "--keys", root + "/keys.txt",
                                                           "--batch", "100", "--in-flight", "1", "--coordinator", address])
        #expect(status == 1, "\(said)")
        #expect(said.contains("Upsert.keys[17]") && said.contains("row 217 of \(root)/x.fvecs"), "\(said)")
    }
}

/// When no shard answers within the deadline the reply says so (DEADLINE_EXCEEDED), not
/// UNAVAILABLE.
@Suite(.serialized) struct DeadlineTests {
    /// Whether /proc says process `pid` is stopped (state T, or t when a tracer such as the
    /// fd audit's strace holds it).
    static func isStopped(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return "Tt".contains(stat[stat.index(close, offsetBy: 2)])
    }

    @Test func aSearchNoShardAnswersInTimeIsDeadlineExceeded() async throws {
        let cluster = ProcessCluster()
        let map = try cluster.start(factory: "IVF8,PQ8")
        defer { _ = cluster.stop() }
        let client = try await cluster.client()
        defer { Task { await client.close() } }
        let index = try IndexFactory.make("IVF8,PQ8", dimension: 16, metric: .l2)
        try index.train(ProcessClusterTests.data.vectors(0..<2000, stream: 1), threads: 1)
        _ = try await client.call(.trainedState(indexFile: IndexFactory.encoded(index)))
        #expect(map.shards.count == 3)
        for shard in cluster.shards { kill(shard!.processIdentifier, SIGSTOP) }
        defer { for shard in cluster.shards { kill(shard!.processIdentifier, SIGCONT) } }
        // On a loaded machine a stop can take a moment to land: wait (bounded) until /proc
        // shows every shard stopped.
        for _ in 0..<100 where !cluster.shards.allSatisfy({ Self.isStopped($0!.processIdentifier) }) {
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        #expect(cluster.shards.allSatisfy { Self.isStopped($0!.processIdentifier) })
        await #expect {
            _ = try await client.call(.search(SearchRequest(vectors: [Float](repeating: 1, count: 16), dimension: 16, k: 5, nprobe: 4,
                                                            deadlineMilliseconds: 300)), timeout: .seconds(10))
        } throws: { ($0 as? WireError)?.code == .deadlineExceeded }
    }
}
