import Foundation
import ArgumentParser
import PharosObservability
import PharosVectors

/// The `pharos` command line: thin flag parsing over the Pharos libraries.
@main
struct Pharos: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pharos",
        abstract: "Pharos: an image-retrieval vector index.",
        version: BuildInfo.versionLine(program: "pharos"),
        subcommands: [ClusterCommand.self, TrainCommand.self, IngestCommand.self, SearchCommand.self, FetchCommand.self, DeleteCommand.self, StatusCommand.self, ClusterBenchCommand.self,
                      ExtractCommand.self, WhitenCommand.self, EvalCommand.self, VerifyCommand.self, CNNBenchCommand.self,
                      IndexCommand.self, DataCommand.self])

    /// Exit statuses (documented in the README): 0 success, 1 a failure (bad input files,
    /// refused requests, an unreachable cluster), 2 a degraded answer (a partial search, a
    /// cluster that is not ready), 64 a usage error (flags and their values).
    static func main() {
        OpenBLASThreads.pinBeforeLoad()
        var command: any ParsableCommand
        do { command = try parseAsRoot() } catch { exit(withError: error) }   // usage: 64
        do {
            try command.run()
        } catch let error as UsageError {
            FileHandle.standardError.write(Data("Error: \(error.message)\n".utf8))
            Foundation.exit(64)
        } catch let error as ValidationError {
            // Once the flags parsed, what goes wrong is the data's or the cluster's, not usage.
            FileHandle.standardError.write(Data("Error: \(error.message)\n".utf8))
            Foundation.exit(1)
        } catch {
            exit(withError: error)
        }
    }
}

/// A flag missing or out of range that can only be judged once the command runs (it depends
/// on files already there): still a usage error (exit 64).
struct UsageError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

extension ExitCode {
    /// A partial search answer or a cluster that is not ready.
    static let degraded = ExitCode(2)
}
