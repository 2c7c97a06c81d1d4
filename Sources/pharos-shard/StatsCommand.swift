import ArgumentParser
import PharosStorage

/// `pharos-shard stats --data DIR`: opens a shard (recovering it) and prints its counts.
struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Open a shard and print its counts.")

    @Option(help: "The shard's data directory (as every pharos-shard command takes it).")
    var data: String

    func run() throws {
        var options = Shard.Options()
        options.automaticMaintenance = false
        let shard = try Shard.open(at: data, options: options)
        defer { shard.close() }
        let s = shard.statistics
        print("index \(shard.index.factoryString), \(shard.index.dimension)-D")
        print("segments \(s.segments), sealed entries \(s.sealedEntries), in memory \(s.memoryEntries), live \(s.liveEntries)")
        print("recovery: replayed \(shard.recovery.replayedRecords) log records, cut \(shard.recovery.truncatedTails.count) torn tails, removed \(shard.recovery.removedFiles.count) leftover files")
    }
}
