import ArgumentParser
import PharosStorage

/// `pharos-shard verify --data DIR`: checks every checksum of a shard without changing it.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Check every block of a shard's files; exit 1 naming the first damage.")

    @Option(help: "The shard's data directory (as every pharos-shard command takes it).")
    var data: String

    func run() throws {
        do {
            let report = try ShardVerifier.verify(data)
            for line in report.segments { print("ok  segments/\(line)") }
            print("ok  log: \(report.logRecords) records after the manifest")
            for line in report.repairable { print("note \(line)") }
            print("verified \(data)")
        } catch {
            print("DAMAGED \(error)")
            throw ExitCode.failure
        }
    }
}
