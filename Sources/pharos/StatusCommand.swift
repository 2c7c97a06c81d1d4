import ArgumentParser
import Foundation
import PharosCommandLine
import PharosWire

/// `pharos status`: the cluster's health and counts.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Print the cluster's health and counts; exit 2 when it is not ready.")

    @OptionGroup var options: CoordinatorOptions
    @Flag(help: "Print the cluster map as JSON: epoch, nodes with state, buckets and entries, moves in progress, buckets under-replicated.")
    var json = false

    func run() throws {
        let (health, stats, map) = try options.withClient { client -> (WireMessage, WireMessage, WireMessage) in
            let health = try await client.call(.health)
            let stats = (try? await client.call(.stats)) ?? .error(WireError(.notReady, "no trained state yet"))
            let map = (try? await client.call(.clusterStatus)) ?? .error(WireError(.unsupported, "no cluster map"))
            return (health, stats, map)
        }
        if json {
            guard case let .clusterStatusResult(report) = map else { throw ValidationError("the coordinator gave no cluster map") }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(StatusDocument(report: report, health: health)), as: UTF8.self))
            if case .healthResult(false, _) = health { throw ExitCode.degraded }
            return
        }
        if case let .healthResult(ready, status) = health {
            print("ready: \(ready ? "yes" : "no")")
            for line in status.split(separator: ";") { print("  \(line.trimmingCharacters(in: .whitespaces))") }
        }
        if case let .statsResult(s) = stats {
            print("collection: \(s.factory), \(s.dimension)-D, \(s.metric); \(s.liveEntries) live entries, \(s.segments) segments, \(s.memoryEntries) in memory; trained state \(s.trainedVersion)")
        }
        if case let .clusterStatusResult(r) = map {
            print("map: epoch \(r.epoch), \(r.buckets) buckets, replication \(r.replication); \(r.bucketsUnderReplicated) buckets under-replicated, \(r.moves.count) moves running, \(r.movesPending) planned")
            for n in r.nodes {
                let runs = n.software.isEmpty ? "" : ", runs \(n.software) (protocol \(n.protocolVersion))"
                print("  \(n.name) \(n.address) \(n.state): \(n.buckets) buckets, \(n.entries) entries\(runs)\(n.problem.isEmpty ? "" : " (\(n.problem))")")
            }
        }
        // Scripts wait for readiness with `until pharos status; do ...`.
        if case .healthResult(false, _) = health { throw ExitCode.degraded }
    }
}

/// `pharos status --json`: the cluster map report and readiness.
struct StatusDocument: Encodable {
    var ready: Bool
    var epoch: UInt64
    var buckets: Int
    var replication: Int
    var nodes: [NodeReport]
    var moves: [MoveReport]
    var movesPending: Int
    var bucketsUnderReplicated: Int
    var movesDone: UInt64
    var lastProblem: String
    var entriesMoved: UInt64
    var bytesMoved: UInt64

    init(report: ClusterReport, health: WireMessage) {
        if case let .healthResult(ready, _) = health { self.ready = ready } else { ready = false }
        epoch = report.epoch
        buckets = report.buckets
        replication = report.replication
        nodes = report.nodes
        moves = report.moves
        movesPending = report.movesPending
        bucketsUnderReplicated = report.bucketsUnderReplicated
        movesDone = report.movesDone
        lastProblem = report.lastProblem
        entriesMoved = report.entriesMoved
        bytesMoved = report.bytesMoved
    }
}
