import Foundation
import ArgumentParser
import PharosVectors

/// The `pharos` command line: thin flag parsing over the Pharos libraries.
@main
struct Pharos: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pharos",
        abstract: "Pharos: an image-retrieval vector index.",
        subcommands: [ClusterCommand.self, TrainCommand.self, IngestCommand.self, SearchCommand.self, StatusCommand.self, ClusterBenchCommand.self,
                      ExtractCommand.self, WhitenCommand.self, EvalCommand.self, CNNBenchCommand.self,
                      IndexCommand.self, DataCommand.self])

    static func main() {
        OpenBLASThreads.pinBeforeLoad()
        Self.main(nil)
    }
}
