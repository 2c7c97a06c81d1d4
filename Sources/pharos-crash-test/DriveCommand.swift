import ArgumentParser
import Foundation
import PharosStorage

/// `pharos-crash-test drive`: writes the crash workload into a shard, printing `ack <batch>` as
/// each batch is acknowledged, until killed (the crash-test harness kills it).
struct DriveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drive", abstract: "Write the crash-test workload, printing each acknowledgement (used by crash-test).", shouldDisplay: false)

    @Option(help: "The shard's data directory (created by crash-test).") var data: String
    @Option(help: "Workload seed.") var seed: UInt64 = 1
    @Option(help: "Vectors per batch.") var batchSize: Int = 10
    @Option(help: "Pause between batches, in milliseconds (lets background sealing keep pace).") var pause: Int = 2
    @Option(help: "First batch to write.") var firstBatch: Int = 0
    @Option(help: "Stop after this many batches (default: run until killed).") var batches: Int = Int.max
    @Option(help: "Kill this process with SIGKILL at the Nth occurrence of a maintenance event, as EVENT:N.")
    var crashAt: String?

    func run() throws {
        let workload = CrashWorkload(seed: seed, batchSize: batchSize)
        var options = Shard.Options()
        options.sealThresholdEntries = 12 * batchSize
        options.compactionSegmentTrigger = 3
        if let crashAt {
            let parts = crashAt.split(separator: ":")
            guard parts.count == 2, let event = Shard.MaintenanceEvent(rawValue: String(parts[0])), let n = Int(parts[1]), n > 0 else {
                throw ValidationError("--crash-at takes EVENT:N with EVENT one of \(Shard.MaintenanceEvent.allCases.map(\.rawValue))")
            }
            let counter = EventCounter()
            options.events = { happened in
                guard happened == event, counter.increment() == n else { return }
                FileHandle.standardOutput.write(Data("crash-at \(crashAt)\n".utf8))
                kill(getpid(), SIGKILL)
            }
        }
        let shard = try Shard.open(at: data, options: options)
        var b = firstBatch
        while b - firstBatch < batches {
            try workload.run(b, on: shard)
            // Unbuffered: the harness must see every acknowledgement before a kill.
            FileHandle.standardOutput.write(Data("ack \(b)\n".utf8))
            b += 1
            if pause > 0 { usleep(UInt32(pause) * 1000) }
        }
        shard.close()
    }
}

/// A counter shared with the maintenance thread.
final class EventCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() -> Int { lock.withLock { count += 1; return count } }
}
