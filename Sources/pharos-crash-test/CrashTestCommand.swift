import ArgumentParser
import Foundation
import PharosIndex
import PharosStorage
import PharosVectors

/// `pharos-crash-test run` (the default): runs `drive` in a child process, kills it with SIGKILL (at
/// random moments, and at each maintenance step: freeze, segment written, bitmaps written,
/// manifest replaced, files removed), reopens the shard and checks that every acknowledged
/// batch is stored exactly (same list, PQ code, refine code and metadata for every key),
/// that nothing else is, and that the shard still verifies and searches.
struct CrashTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Kill a writing process repeatedly and check every acknowledged write survived.")

    @Option(help: "Number of kills.") var kills: Int = 24
    @Option(help: "Workload seed.") var seed: UInt64 = 1
    @Option(help: "Vectors per batch.") var batchSize: Int = 10
    @Option(help: "Pause between the driver's batches, in milliseconds.") var pause: Int = 2
    @Option(help: "Longest wait before a random kill, in milliseconds.") var maximumDelay: Int = 600
    @Option(help: "Data directory (default: a new temporary one, removed on success).") var data: String?
    @Flag(help: "Instead of killing, let the driver write until the file system is full (run on a small file system): the failed write must name the full disk, and everything acknowledged must still be there and searchable.")
    var diskFull = false

    func run() throws {
        let directory = data ?? NSTemporaryDirectory() + "pharos-crash-\(getpid())"
        let workload = CrashWorkload(seed: seed, batchSize: batchSize)
        let trained = try workload.trainedIndex()
        let setup = try Shard.create(at: directory, trainedIndex: trained)
        setup.close()
        var model = CrashModel()
        var nextBatch = 0
        var rng = SplitMix64(seed: seed ^ 0x5eed)
        var encoded: [Int: EncodedEntries] = [:]
        var killsAtEvents: [String: Int] = [:]
        let events = Shard.MaintenanceEvent.allCases
        let started = Date()
        if diskFull {
            let run = try runDriver(directory: directory, from: 0, crashAt: nil, delayMilliseconds: nil)
            // The driver's own failure is its last "Error:" line; background seals may have
            // reported the full disk before it (and retried).
            let lines = (run.error ?? "").split(separator: "\n").map(String.init)
            let error = lines.last { $0.hasPrefix("Error:") } ?? lines.last ?? "nothing on standard error"
            guard lines.contains(where: { $0.contains("No space left on device") }) else {
                throw ValidationError("the driver stopped without naming a full disk; its last output:\n\(lines.suffix(20).joined(separator: "\n"))")
            }
            let lastAcknowledged = run.acknowledged.max() ?? -1
            for b in 0 ... max(0, lastAcknowledged) where b <= lastAcknowledged { model.apply(b, of: workload) }
            var withFailed = model
            withFailed.apply(lastAcknowledged + 1, of: workload)
            let shard = try Shard.open(at: directory, options: quietOptions())
            model = try check(shard, against: model, orWithInFlight: withFailed, workload: workload, encoded: &encoded, kill: 0)
            shard.close()
            _ = try ShardVerifier.verify(directory)
            print("disk-full test passed: the write failed with \"\(error)\" after \(run.acknowledged.count) acknowledged batches; all \(model.live.count) live keys intact, shard verifies and searches")
            return
        }
        for k in 0..<kills {
            // The first kills target each maintenance step once; the rest land at random.
            let target = k < events.count ? "\(events[k].rawValue):\(1 + rng.next() % 2)" : nil
            let delay = 20 + Int(rng.next() % UInt64(max(1, maximumDelay)))
            let run = try runDriver(directory: directory, from: nextBatch, crashAt: target, delayMilliseconds: delay)
            if let target {
                guard run.crashedAt == target else {
                    throw ValidationError("kill \(k): the driver never reached \(target) (acknowledged up to \(run.acknowledged.max() ?? -1))")
                }
                killsAtEvents[target.split(separator: ":")[0].description, default: 0] += 1
            } else {
                killsAtEvents["random moment", default: 0] += 1
            }
            let lastAcknowledged = run.acknowledged.max() ?? nextBatch - 1
            guard run.acknowledged == Array(nextBatch ... max(nextBatch, lastAcknowledged)).prefix(run.acknowledged.count).map({ $0 }) else {
                throw ValidationError("kill \(k): acknowledgements out of order: \(run.acknowledged)")
            }
            for b in nextBatch ... max(nextBatch, lastAcknowledged) where b <= lastAcknowledged { model.apply(b, of: workload) }
            // The batch in flight at the kill may or may not have been stored: either is right.
            var withInFlight = model
            withInFlight.apply(lastAcknowledged + 1, of: workload)
            let shard = try Shard.open(at: directory, options: quietOptions())
            let stored = try check(shard, against: model, orWithInFlight: withInFlight, workload: workload, encoded: &encoded, kill: k)
            model = stored
            nextBatch = lastAcknowledged + 1
            shard.close()
            print("kill \(k + 1)/\(kills) \(target ?? "after \(delay) ms"): \(run.acknowledged.count) batches acknowledged, \(shard.recovery.replayedRecords) records replayed, \(shard.recovery.truncatedTails.count) torn tails cut, \(model.live.count) keys live: ok")
        }
        let report = try ShardVerifier.verify(directory)
        print("crash-test passed: \(kills) kills (\(killsAtEvents.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))), \(nextBatch) batches acknowledged, \(model.live.count) keys live in \(report.segments.count) segments, \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        if data == nil { try? FileManager.default.removeItem(atPath: directory) }
    }

    private func quietOptions() -> Shard.Options {
        var options = Shard.Options()
        options.automaticMaintenance = false
        options.log = { _ in }
        return options
    }

    struct DriverRun {
        var acknowledged: [Int] = []
        var crashedAt: String?
        /// What the driver printed on standard error when it stopped by itself.
        var error: String?
    }

    /// Starts the driver, kills it after `delayMilliseconds` (or lets it kill itself at
    /// `crashAt`, or with no delay lets it run until it fails by itself; within 120 s), and
    /// returns what it acknowledged.
    private func runDriver(directory: String, from first: Int, crashAt: String?, delayMilliseconds: Int?) throws -> DriverRun {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        var arguments = ["drive", "--data", directory, "--seed", "\(seed)", "--batch-size", "\(batchSize)", "--first-batch", "\(first)", "--pause", "\(pause)"]
        if let crashAt { arguments += ["--crash-at", crashAt] }
        process.arguments = arguments
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        // Drain both pipes from the start, so a chatty child never blocks on a full pipe.
        let outputText = Box(""), errorText = Box("")
        let readers = [(output, outputText), (errors, errorText)].map { pipe, box in
            Thread { box.value = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }
        }
        readers.forEach { $0.start() }
        if crashAt == nil, let delayMilliseconds {
            usleep(UInt32(delayMilliseconds) * 1000)
            kill(process.processIdentifier, SIGKILL)
        } else {
            let deadline = Date().addingTimeInterval(120)
            while process.isRunning && Date() < deadline { usleep(5000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        while readers.contains(where: { !$0.isFinished }) { usleep(1000) }
        let text = outputText.value
        var run = DriverRun()
        for line in text.split(separator: "\n") {
            if line.hasPrefix("ack "), let b = Int(line.dropFirst(4)) { run.acknowledged.append(b) }
            if line.hasPrefix("crash-at ") { run.crashedAt = String(line.dropFirst(9)) }
        }
        if delayMilliseconds == nil && crashAt == nil {
            guard process.terminationReason == .exit, process.terminationStatus != 0 else {
                throw ValidationError("the driver was expected to fail by itself (status \(process.terminationStatus))")
            }
            run.error = errorText.value
            return run
        }
        guard process.terminationReason == .uncaughtSignal, process.terminationStatus == SIGKILL else {
            throw ValidationError("the driver exited by itself (status \(process.terminationStatus)) instead of being killed:\n\(text.suffix(2000))\(errorText.value.suffix(2000))")
        }
        return run
    }

    /// Checks the reopened shard holds exactly `model` or `withInFlight`; returns which.
    private func check(_ shard: Shard, against model: CrashModel, orWithInFlight withInFlight: CrashModel,
                       workload: CrashWorkload, encoded: inout [Int: EncodedEntries], kill: Int) throws -> CrashModel {
        func expected(_ live: (batch: Int, row: Int)) throws -> Shard.StoredEntry {
            if encoded[live.batch] == nil { encoded[live.batch] = try shard.index.encodeEntries(workload.vectors(live.batch), threads: 1) }
            let e = encoded[live.batch]!, m = e.layout.subquantizers, r = e.layout.refineBytes
            return Shard.StoredEntry(list: Int(e.lists[live.row]), code: Array(e.codes[live.row * m ..< (live.row + 1) * m]),
                                     refine: Array(e.refine[live.row * r ..< (live.row + 1) * r]),
                                     metadata: workload.metadata(live.batch, row: live.row))
        }
        var mismatches: [String: [String]] = [:]
        for candidate in [("acknowledged", model), ("acknowledged + in flight", withInFlight)] {
            var problems: [String] = []
            let (name, state) = candidate
            if shard.statistics.liveEntries != state.live.count {
                problems.append("\(shard.statistics.liveEntries) live entries, expected \(state.live.count)")
            }
            for key in state.touched.union(model.touched) where problems.count < 5 {
                let found = try shard.entry(forKey: key)
                let want = try state.live[key].map(expected)
                if found != want { problems.append("\(key): found \(found.map { "\($0)" } ?? "nothing"), expected \(want.map { "\($0)" } ?? "nothing")") }
            }
            if problems.isEmpty {
                // The stored state also searches: a full scan returns live keys only.
                let hits = try shard.search(workload.vectors(0).rows(0..<1), k: 50, parameters: SearchParameters(nprobe: 16))[0]
                guard hits.allSatisfy({ state.live[$0.key] != nil }), hits.count == min(50, state.live.count) else {
                    throw ValidationError("kill \(kill): search returned keys that are not live")
                }
                return state
            }
            mismatches[name] = problems
        }
        throw ValidationError("kill \(kill): the reopened shard matches neither the acknowledged writes nor them plus the batch in flight:\n\(mismatches.map { "\($0.key): \($0.value.joined(separator: "; "))" }.joined(separator: "\n"))")
    }
}

/// A value shared with a reader thread (written once before the thread finishes).
final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}
