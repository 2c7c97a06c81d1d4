import ArgumentParser
import Foundation
import PharosStorage

/// `pharos-shard snapshot`: a consistent backup of a shard directory, taken while it serves.
struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Write a consistent backup of a shard directory to one file (a tar archive), while it serves.",
        discussion: "Safe while `pharos-shard serve` runs on the directory: nothing in it is written. Restore with `pharos-shard restore`.")

    @Option(help: "The shard's data directory.") var data: String
    @Option(help: "The snapshot file to write (replaced atomically).") var out: String

    func run() throws {
        let started = Date()
        let summary = try ShardSnapshot.write(shard: data, to: out)
        print("snapshot of \(data) written to \(out): \(summary.files) files, \(summary.bytes) bytes (\(summary.segments) segments, \(summary.logFiles) log files) in \(String(format: "%.2f", Date().timeIntervalSince(started))) s" + (summary.attempts > 1 ? ", \(summary.attempts) attempts" : ""))
    }
}

/// `pharos-shard restore`: a snapshot into a new shard directory, checked before it is kept.
struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a snapshot into a new shard directory (checked file by file, then verified).",
        discussion: "The directory must not exist or be empty. Serve it with `pharos-shard serve --data DIR`; it learns the cluster-map epoch from the coordinator.")

    @Option(help: "The snapshot file.") var from: String
    @Option(help: "The new shard directory.") var data: String

    func run() throws {
        let summary = try ShardSnapshot.restore(from: from, into: data)
        print("restored \(from) into \(data): \(summary.files) files, \(summary.bytes) bytes (\(summary.segments) segments, \(summary.logFiles) log files), verified")
    }
}
