import Foundation
import PharosIndex
import PharosVectors
import PharosTestSupport
import PharosWire
import Testing

/// A blocking TCP connection with a receive timeout, for sending raw bytes. Async tests read
/// it with `nextFrame()`, or run their blocking loops through `BlockingWork`.
final class RawConnection: @unchecked Sendable {
    // @unchecked: a test uses one connection from one task at a time.
    let fd: Int32

    /// `receiveBuffer` caps the kernel's receive buffer (set before connecting, so the window
    /// never grows past it): a client that does not read then stops the server sooner.
    init(port: Int, receiveBuffer: Int32? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if var size = receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw WireError(.unavailable, "connect failed") }
        var timeout = timeval(tv_sec: 15, tv_usec: 0)   // generous: the whole suite may be loading the machine
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// `readFrame()` on a thread of its own.
    func nextFrame() async -> Envelope? {
        (try? await BlockingWork.run { self.readFrame() }) ?? nil
    }

    /// Reads one frame; nil on timeout or a closed connection.
    func readFrame() -> Envelope? {
        guard let head = read(4) else { return nil }
        let length = Int(head[0]) << 24 | Int(head[1]) << 16 | Int(head[2]) << 8 | Int(head[3])
        guard let payload = read(length) else { return nil }
        return try? WireCodec.decode(payload)
    }

    private func read(_ n: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: n)
        var done = 0
        while done < n {
            let got = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + done, n - done, 0) }
            if got <= 0 { return nil }
            done += got
        }
        return out
    }
}

@Suite(.serialized) struct FuzzTests {
    static func frame(_ payload: [UInt8]) -> [UInt8] {
        let n = UInt32(payload.count)
        return [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + payload
    }

    /// Trains the cluster and stores `k0..k59`; returns their vectors and the upsert that stored them.
    static func load(_ cluster: TestCluster) async throws -> (Matrix, UpsertRequest) {
        let index = try IndexFactory.make("IVF8,PQ8x4fs,RefineSQ8", dimension: 16, metric: .l2)
        let data = SyntheticDataset(dimension: 16, clusters: 16, normalized: false, seed: 3)
        try index.train(data.vectors(0..<2000, stream: 9), threads: 1)
        _ = try await cluster.client.call(.trainedState(indexFile: IndexFactory.encoded(index)))
        let base = data.vectors(0..<60, stream: 0)
        let load = UpsertRequest(keys: (0..<60).map { "k\($0)" }, vectors: base.values, dimension: 16)
        _ = try await cluster.client.call(.upsert(load))
        return (base, load)
    }

    /// Random bytes, truncated frames, huge lengths, unknown message types, requests that are
    /// replies, wrong dimensions, NaNs and connections dropped mid-frame, sent to a shard node
    /// and to the coordinator: each answers with an Error where a reply is possible, stays up,
    /// and then serves a valid search correctly.
    @Test func serversSurviveGarbageAndStillAnswerCorrectly() async throws {
        try await TestCluster.with(factory: "IVF8,PQ8x4fs,RefineSQ8") { cluster in
            let (base, _) = try await Self.load(cluster)
            let coordinatorPort = try #require(cluster.coordinatorServer.boundPort)
            for port in [cluster.map.shards[0].port, coordinatorPort] {
                let failures = try await BlockingWork.run { try Self.fuzz(port: port, rounds: 60) }
                #expect(failures.isEmpty, "port \(port): \(failures)")
            }
            guard case let .searchResult(result) = try await cluster.client.call(.search(SearchRequest(vectors: base.row(3), dimension: 16, k: 1, nprobe: 8))) else {
                Issue.record("no search result"); return
            }
            #expect(result.queries[0].keys == ["k3"])
        }
    }

    /// Well-formed envelopes of every message type with fields absent, zero, negative, NaN,
    /// huge, repeated, NUL-bearing or not UTF-8 (`StructuredFuzzer`), sent to a shard and to the
    /// coordinator: every one is answered with its own request id, never with an internal,
    /// storage or unavailable error (which would mean unchecked input got through, or a shard
    /// died), and afterwards both still serve correct answers.
    /// The long run is `python3 Scripts/wire-fuzz.py` against a `pharos cluster up`.
    @Test func structuredMessagesAreAnsweredAndHarmNoServer() async throws {
        try await TestCluster.with(factory: "IVF8,PQ8x4fs,RefineSQ8") { cluster in
            let (base, load) = try await Self.load(cluster)
            let coordinatorPort = try #require(cluster.coordinatorServer.boundPort)
            // PHAROS_FUZZ_FRAMES and PHAROS_FUZZ_SEED make this a long run on demand.
            let environment = ProcessInfo.processInfo.environment
            let frames = environment["PHAROS_FUZZ_FRAMES"].flatMap(Int.init) ?? 1500
            let seed = environment["PHAROS_FUZZ_SEED"].flatMap(UInt64.init) ?? 1
            for (stream, port) in [(UInt64(0), cluster.map.shards[0].port), (1, coordinatorPort)] {
                let failures = try await BlockingWork.run {
                    var fuzzer = StructuredFuzzer(seed: seed &* 2 &+ stream, dimension: 16)
                    return try Self.send(&fuzzer, frames: frames, port: port)
                }
                #expect(failures.isEmpty, "port \(port): \(failures.count) failures, first: \(failures.prefix(5))")
            }
            // Every server is still up and right (the fuzz may have replaced or deleted base keys).
            _ = try await cluster.client.call(.upsert(load))
            for port in cluster.map.shards.map(\.port) + [coordinatorPort] {
                let c = try RawConnection(port: port)
                c.send(try FrameEncoder.frame(Envelope(requestID: 77, body: .health)))
                #expect(await c.nextFrame()?.requestID == 77, "port \(port) does not answer after the fuzz")
            }
            guard case let .searchResult(result) = try await cluster.client.call(.search(SearchRequest(vectors: base.row(3), dimension: 16, k: 1, nprobe: 8))) else {
                Issue.record("no search result"); return
            }
            #expect(result.queries[0].keys == ["k3"])
        }
    }

    /// Sends `frames` fuzzed envelopes one at a time; returns what went wrong.
    static func send(_ fuzzer: inout StructuredFuzzer, frames: Int, port: Int) throws -> [String] {
        var failures: [String] = []
        var connection = try RawConnection(port: port)
        for i in 0..<frames {
            let id = UInt64(i + 1)
            let (bytes, body) = fuzzer.envelope(requestID: id)
            connection.send(Self.frame(bytes))
            guard let reply = connection.readFrame() else {
                // Only a Hello of another version is answered by closing the connection, and
                // the refusal comes first.
                failures.append("frame \(i) (\(body)): no reply: \(bytes.prefix(48).map { String(format: "%02x", $0) }.joined())")
                connection = try RawConnection(port: port)
                continue
            }
            if case let .error(error) = reply.body {
                if [.internalError, .storage, .unavailable].contains(error.code) {
                    failures.append("frame \(i) (\(body)): \(error)")
                }
                if error.code == .unsupported, body == "Hello" { connection = try RawConnection(port: port) }
                if error.code == .malformed { continue }   // protobuf-c refused the bytes: no request id to echo
            }
            if reply.requestID != id { failures.append("frame \(i) (\(body)): reply id \(reply.requestID), sent \(id)") }
        }
        return failures
    }

    /// Sends `rounds` bad inputs on fresh connections; returns the rounds whose reply was not
    /// the right Error (with what came back instead).
    static func fuzz(port: Int, rounds: Int) throws -> [String] {
        var state: UInt64 = 12345
        func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 33
        }
        var failures: [String] = []
        func check(_ round: Int, _ reply: Envelope?, _ ok: (WireError) -> Bool) {
            if case let .error(e)? = reply?.body, ok(e) { return }
            failures.append("round \(round): \(reply.map { "\($0.body)" } ?? "no reply")")
        }
        for round in 0..<rounds {
            let c = try RawConnection(port: port)
            switch round % 6 {
            case 0:   // a whole frame of random bytes: answered MALFORMED, connection stays
                c.send(Self.frame((0..<Int(1 + next() % 64)).map { _ in UInt8(truncatingIfNeeded: next()) }))
                check(round, c.readFrame()) { $0.code == .malformed }
            case 1:   // a huge length: answered MALFORMED, then closed
                c.send([0x7f, 0xff, 0xff, 0xff, 1, 2, 3])
                check(round, c.readFrame()) { $0.code == .malformed }
            case 2:   // a truncated frame, then the connection drops
                c.send(Array(Self.frame(try WireCodec.encode(Envelope(requestID: 5, body: .stats))).prefix(5)))
            case 3:   // an unknown body field (99) in an otherwise valid envelope
                c.send(Self.frame([0x08, 0x07, 0x9a, 0x06, 0x00]))   // request_id 7; field 99, empty message
                check(round, c.readFrame()) { [.unsupported, .malformed].contains($0.code) }
            case 4:   // wrong dimension and NaN
                let bad = Envelope(requestID: 9, body: .upsert(UpsertRequest(keys: ["x"], vectors: [.nan, 1, 2], dimension: 3)))
                c.send(try FrameEncoder.frame(bad))
                check(round, c.readFrame()) { $0.code == .invalidArgument && $0.requestID == 9 }
            default:  // a reply sent as a request
                c.send(try FrameEncoder.frame(Envelope(requestID: 11, body: .deleteResult(deleted: 3))))
                check(round, c.readFrame()) { $0.code == .unsupported }
            }
        }
        return failures
    }
}

/// The long structure-aware run against real processes (3 shard processes and a coordinator),
/// on demand: `PHAROS_FUZZ_PROCESS_FRAMES=1000000 swift test --filter structuredFramesAgainstProcesses`.
/// Every process must still be the same process at the end, answering, with its resident
/// memory under 1 GiB; the figures are printed.
@Suite(.serialized) struct LongFuzzTests {
    static var frames: Int? { ProcessInfo.processInfo.environment["PHAROS_FUZZ_PROCESS_FRAMES"].flatMap(Int.init) }

    static func residentKB(_ pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
    }

    @Test(.enabled(if: frames != nil, "set PHAROS_FUZZ_PROCESS_FRAMES for the long run"))
    func structuredFramesAgainstProcesses() async throws {
        let frames = Self.frames ?? 0
        let cluster = ProcessCluster()
        _ = try cluster.start(factory: "IVF8,PQ8x4fs,RefineSQ8")
        defer { _ = cluster.stop() }
        let client = try await cluster.client()
        let index = try IndexFactory.make("IVF8,PQ8x4fs,RefineSQ8", dimension: 16, metric: .l2)
        let data = SyntheticDataset(dimension: 16, clusters: 16, normalized: false, seed: 3)
        try index.train(data.vectors(0..<2000, stream: 9), threads: 1)
        _ = try await client.call(.trainedState(indexFile: IndexFactory.encoded(index)))
        _ = try await client.call(.upsert(UpsertRequest(keys: (0..<60).map { "k\($0)" }, vectors: data.vectors(0..<60, stream: 0).values, dimension: 16)))
        await client.close()
        let processes = cluster.shards.compactMap { $0 } + [cluster.coordinator!]
        let pids = processes.map(\.processIdentifier)
        let before = pids.map { Self.residentKB($0) ?? 0 }
        let clock = Date()
        for (stream, port) in [(UInt64(0), cluster.shardPorts[0]), (1, cluster.coordinatorPort)] {
            let failures = try await BlockingWork.run {
                var fuzzer = StructuredFuzzer(seed: 1000 + stream, dimension: 16)
                return try FuzzTests.send(&fuzzer, frames: frames, port: port)
            }
            #expect(failures.isEmpty, "port \(port): \(failures.count) failures, first: \(failures.prefix(5))")
        }
        let seconds = Date().timeIntervalSince(clock)
        let after = pids.map { Self.residentKB($0) ?? 0 }
        for (i, process) in processes.enumerated() {
            #expect(process.isRunning && process.processIdentifier == pids[i], "process \(pids[i]) is gone")
            #expect(after[i] < 1 << 20, "process \(pids[i]) holds \(after[i]) kB")
        }
        print(String(format: "long fuzz: %d frames to a shard and %d to the coordinator in %.0f s; every process alive (same PIDs); VmRSS kB before %@, after %@",
                     frames, frames, seconds, "\(before)", "\(after)"))
    }
}
