import ArgumentParser
import Foundation
import PharosCommandLine
import PharosWire

/// `pharos status`: the cluster's health and counts.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Print the cluster's health and counts; exit 2 when it is not ready.")

    @OptionGroup var options: CoordinatorOptions

    func run() throws {
        let (health, stats) = try options.withClient { client -> (WireMessage, WireMessage) in
            let health = try await client.call(.health)
            let stats = (try? await client.call(.stats)) ?? .error(WireError(.notReady, "no trained state yet"))
            return (health, stats)
        }
        if case let .healthResult(ready, status) = health {
            print("ready: \(ready ? "yes" : "no")")
            for line in status.split(separator: ";") { print("  \(line.trimmingCharacters(in: .whitespaces))") }
        }
        if case let .statsResult(s) = stats {
            print("collection: \(s.factory), \(s.dimension)-D, \(s.metric); \(s.liveEntries) live entries, \(s.segments) segments, \(s.memoryEntries) in memory; trained state \(s.trainedVersion)")
        }
        // Scripts wait for readiness with `until pharos status; do ...`.
        if case .healthResult(false, _) = health { throw ExitCode.degraded }
    }
}
