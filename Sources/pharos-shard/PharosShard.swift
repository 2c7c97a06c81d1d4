import ArgumentParser
import PharosObservability
import PharosVectors

/// The `pharos-shard` command: shard-node tools over `PharosStorage` (verification,
/// statistics, benchmarks). The crash harness is `pharos-crash-test`, a separate target.
@main
struct PharosShard: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pharos-shard",
        abstract: "Pharos shard node: storage tools.",
        version: BuildInfo.versionLine(program: "pharos-shard"),
        subcommands: [ServeCommand.self, CreateCommand.self, IngestCommand.self, SearchCommand.self, StatsCommand.self, VerifyCommand.self, SnapshotCommand.self, RestoreCommand.self,
                      BenchCommand.self, BenchOpenCommand.self])

    static func main() {
        OpenBLASThreads.pinBeforeLoad()
        Self.main(nil)
    }
}
