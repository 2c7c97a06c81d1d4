import ArgumentParser
import PharosStorage

/// `pharos-shard verify DATA_DIR`: checks every checksum of a shard without changing it.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Check every block of a shard's files; exit 1 naming the first damage.")

    @Argument(help: "The shard's data directory.")
    var dataDirectory: String

    func run() throws {
        do {
            let report = try ShardVerifier.verify(dataDirectory)
            for line in report.segments { print("ok  segments/\(line)") }
            print("ok  log: \(report.logRecords) records after the manifest")
            for line in report.repairable { print("note \(line)") }
            print("verified \(dataDirectory)")
        } catch {
            print("DAMAGED \(error)")
            throw ExitCode.failure
        }
    }
}
