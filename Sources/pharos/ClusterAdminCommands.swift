import ArgumentParser
import Foundation
import PharosCluster
import PharosCommandLine
import PharosWire

extension ClusterCommand {
    /// `pharos cluster add-shard`: a fresh `pharos-shard serve` joins the map empty.
    struct AddShard: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add-shard",
            abstract: "Add a running, empty shard node to the cluster map; it receives the trained state and takes buckets at the next rebalance.")

        @OptionGroup var options: CoordinatorOptions
        @Option(help: "The node's name (unique in the map).") var name: String
        @Option(help: "The node's address, HOST:PORT (the coordinator must be allowed to reach it: --allow-node-host).") var address: String
        @Option(help: "A zone label: coordinators started with the same --zone prefer this node's copies for reads.") var zone: String = ""

        /// HOST and PORT of `--address`.
        private var hostAndPort: (host: String, port: Int)? {
            guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
                  (1...65535).contains(port), colon != address.startIndex else { return nil }
            return (String(address[..<colon]), port)
        }

        func validate() throws {
            guard hostAndPort != nil else { throw ValidationError("--address \(address): expected HOST:PORT (port 1...65535)") }
        }

        func run() throws {
            guard let (host, port) = hostAndPort else { throw ValidationError("--address \(address): expected HOST:PORT") }
            let report = try options.withClient { client in
                try ClusterAdministration.report(try await client.call(.addNode(NodeAddition(name: name, host: host, port: port, zone: zone)),
                                                                         timeout: .seconds(120)))
            }
            print("\(name) joined at epoch \(report.epoch); run `pharos cluster rebalance` to move buckets to it")
        }
    }

    /// `pharos cluster remove-shard`: drain a node, then drop it from the map.
    struct RemoveShard: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove-shard",
            abstract: "Drain a shard node (its buckets move to the others) and remove it from the map once empty.")

        @OptionGroup var options: CoordinatorOptions
        @Option(help: "The node's name.") var name: String
        @Flag(help: "Wait until the node has left the map (progress on stderr).") var wait = false
        @Option(help: "With --wait: give up after this many seconds.") var timeout: Int = 3600

        func run() throws {
            let report = try options.withClient { client in
                try ClusterAdministration.report(try await client.call(.removeNode(name: name), timeout: .seconds(120)))
            }
            print("\(name) draining at epoch \(report.epoch)")
            guard wait else { return }
            try ClusterAdministration.wait(options, timeout: timeout, until: { !$0.nodes.contains { $0.name == name } })
            print("\(name) removed")
        }
    }

    /// `pharos cluster rebalance`: even out the nodes and reach the replication factor.
    struct Rebalance: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move buckets to even out the nodes and reach the replication factor.",
            discussion: "With --wait, prints progress (moves, rate, ETA) and exits 0 only when every bucket has its copies and the nodes are even.")

        @OptionGroup var options: CoordinatorOptions
        @Option(help: "The replication factor to reach (default: keep it).") var replication: Int?
        @Option(help: "Moves at once (default 1).") var maxConcurrentMoves: Int = 1
        @Option(help: "Megabytes per second each move copies (default: unthrottled).") var rateMb: Double?
        @Flag(help: "Wait until done.") var wait = false
        @Option(help: "With --wait: give up after this many seconds.") var timeout: Int = 3600

        func validate() throws {
            if let replication, !(1...RequestLimits.maximumReplication).contains(replication) {
                throw ValidationError("--replication \(replication): expected 1...\(RequestLimits.maximumReplication)")
            }
            guard (1...RequestLimits.maximumConcurrentMoves).contains(maxConcurrentMoves) else {
                throw ValidationError("--max-concurrent-moves \(maxConcurrentMoves): expected 1...\(RequestLimits.maximumConcurrentMoves)")
            }
            if let rateMb, !(rateMb.isFinite && rateMb > 0) { throw ValidationError("--rate-mb \(rateMb): expected a positive number") }
        }

        func run() throws {
            let request = RebalanceRequest(replication: replication ?? 0, maximumConcurrentMoves: maxConcurrentMoves, rateMegabytes: rateMb ?? 0)
            let report = try options.withClient { client in
                try ClusterAdministration.report(try await client.call(.rebalance(request), timeout: .seconds(120)))
            }
            print("rebalance started at epoch \(report.epoch): replication \(report.replication), \(report.movesPending) moves planned")
            guard wait else { return }
            try ClusterAdministration.wait(options, timeout: timeout, until: ClusterAdministration.isSettled)
            print("rebalance done")
        }
    }
}

/// What the administration commands share: reading a status reply, waiting with progress.
enum ClusterAdministration {
    static func report(_ reply: WireMessage) throws -> ClusterReport {
        guard case let .clusterStatusResult(report) = reply else { throw ValidationError("the coordinator answered \(reply.name)") }
        return report
    }

    /// Nothing moving or planned, every bucket at its replication, active nodes within one bucket.
    static func isSettled(_ r: ClusterReport) -> Bool {
        let active = r.nodes.filter { $0.state == "active" }.map(\.buckets)
        return r.moves.isEmpty && r.movesPending == 0 && r.bucketsUnderReplicated == 0
            && (active.max() ?? 0) - (active.min() ?? 0) <= 1
            && !r.nodes.contains { $0.state == "draining" }
    }

    /// Polls the status every 200 ms until `done` (exit 0) or `timeout` seconds (exit 1);
    /// a progress line goes to stderr every second.
    static func wait(_ options: CoordinatorOptions, timeout: Int, until done: @escaping @Sendable (ClusterReport) -> Bool) throws {
        let start = Date()
        let first = try options.withClient { try report(try await $0.call(.clusterStatus)) }
        var last = first
        var printed = Date()
        for _ in 0..<Swift.max(1, timeout) * 5 {
            if done(last) { return }
            Thread.sleep(forTimeInterval: 0.2)
            last = try options.withClient { try report(try await $0.call(.clusterStatus)) }
            guard Date().timeIntervalSince(printed) >= 1 else { continue }
            printed = Date()
            let elapsed = Date().timeIntervalSince(start)
            let moved = last.movesDone - Swift.min(last.movesDone, first.movesDone)
            let rate = Double(moved) / Swift.max(elapsed, 0.001)
            let left = last.movesPending + last.moves.count
            let eta = rate > 0 ? String(format: "%.0f s", Double(left) / rate) : "unknown"
            let bytes = last.moves.reduce(0) { $0 + $1.bytesCopied }
            let problem = last.lastProblem.isEmpty ? "" : "; last problem: \(last.lastProblem)"
            printError("moves done \(moved), running \(last.moves.count), pending \(last.movesPending), "
                + String(format: "%.1f moves/s, in flight %.1f MB", rate, Double(bytes) / 1e6) + ", ETA \(eta)\(problem)")
        }
        printError("not done after \(timeout) s: \(last.moves.count) moves running, \(last.movesPending) pending, \(last.bucketsUnderReplicated) buckets under-replicated")
        throw ExitCode.failure
    }
}
