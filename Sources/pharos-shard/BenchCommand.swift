import ArgumentParser
import Foundation
import PharosCommandLine
import PharosIndex
import PharosStorage
import PharosVectors

/// `pharos-shard bench`: the storage engine against the in-memory index engine on the same
/// synthetic data, thread count and process, runs interleaved, medians reported:
/// durable ingestion (log + seal) vs `add`, search over sealed segments vs the in-memory
/// index, and the time and resident memory of opening the sealed shard in a fresh process.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Compare durable ingestion and sealed search with the in-memory engine; print a table.")

    @Option(help: "Vectors to ingest.") var count: Int = 1_000_000
    @Option(help: "Dimension.") var dimension: Int = 128
    @Option(help: "Factory string of the index.") var factory: String = "IVF1024,PQ32x4fs,RefineSQ8"
    @Option(help: "Worker threads (encoding and search).") var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "Interleaved repetitions; medians are reported.") var repeats: Int = 3
    @Option(help: "Queries per search run.") var queries: Int = 2000
    @Option(help: "Lists probed per query.") var nprobe: Int = 16
    @Option(help: "Vectors per upsert call.") var batch: Int = 10_000
    @Option(help: "Batches in flight during ingestion (encoding overlaps logging; commits stay in order).") var writers: Int = 2
    @Option(help: "Shard data directory (replaced).") var data: String = "data/bench-shard"

    func run() throws {
        let dataset = SyntheticDataset(dimension: dimension, clusters: 1000, normalized: false, seed: 1)
        let base = dataset.vectors(0..<count, stream: 0)
        let queryRows = dataset.vectors(0..<queries, stream: 2)
        let keys = (0..<count).map { "v\($0)" }
        let trained = try IndexFactory.make(factory, dimension: dimension, metric: .l2) as! IVFPQIndex
        try trained.train(dataset.vectors(0..<min(100_000, max(count / 10, 40_000)), stream: 1), threads: threads)
        let trainedPath = data + ".trained"
        try IndexFactory.save(trained, to: trainedPath)
        defer { try? FileManager.default.removeItem(atPath: trainedPath) }
        log("\(count) x \(dimension), \(factory), \(threads) threads, \(repeats) interleaved repeats")

        var addRates: [Double] = [], ingestRates: [Double] = []
        var memory: IVFPQIndex!
        for r in 0..<repeats {
            memory = try IndexFactory.load(from: trainedPath) as? IVFPQIndex
            var clock = Date()
            try memory.add(base, ids: nil, threads: threads)
            addRates.append(Double(count) / Date().timeIntervalSince(clock))

            try? FileManager.default.removeItem(atPath: data)
            var options = Shard.Options()
            options.encodeThreads = threads
            let shardIndex = try IndexFactory.load(from: trainedPath) as! IVFPQIndex
            clock = Date()
            let shard = try Shard.create(at: data, trainedIndex: shardIndex, options: options)
            // Batches in flight: one is encoded while another is logged and applied, committed in order.
            let size = batch, total = count
            try shard.upsertInOrder(count: (count + batch - 1) / batch, inFlight: writers) { b in
                let rows = b * size ..< min(total, (b + 1) * size)
                return (Array(keys[rows]), base.rows(rows), nil)
            }
            try shard.seal()
            shard.close()
            ingestRates.append(Double(count) / Date().timeIntervalSince(clock))
            log("repeat \(r + 1): add \(Int(addRates.last!)) vectors/s, durable ingest \(Int(ingestRates.last!)) vectors/s")
        }

        // Opening in a fresh process: time and resident memory before any query touches data.
        let open = try measureOpen()

        var options = Shard.Options()
        options.automaticMaintenance = false
        let shard = try Shard.open(at: data, options: options)
        let segmentsAsSealed = shard.statistics.segments
        let parameters = SearchParameters(nprobe: nprobe, threads: threads)
        var memoryQPS: [Double] = [], sealedQPS: [Double] = [], compactedQPS: [Double] = []
        func timeSearch(_ body: () throws -> Void) rethrows -> Double {
            let clock = Date()
            try body()
            return Double(queries) / Date().timeIntervalSince(clock)
        }
        var memoryResult: SearchResult!, shardResult: [[Shard.Hit]] = []
        // Alternating which goes first, so neither always runs on a warmer machine.
        for r in 0..<max(3, repeats) * 2 {
            if r % 2 == 0 { memoryQPS.append(try timeSearch { memoryResult = try memory.search(queryRows, k: 10, parameters: parameters) }) }
            sealedQPS.append(try timeSearch { shardResult = try shard.search(queryRows, k: 10, parameters: parameters) })
            if r % 2 == 1 { memoryQPS.append(try timeSearch { memoryResult = try memory.search(queryRows, k: 10, parameters: parameters) }) }
        }
        try shard.compact(force: true)
        for r in 0..<max(3, repeats) * 2 {
            if r % 2 == 0 { memoryQPS.append(try timeSearch { memoryResult = try memory.search(queryRows, k: 10, parameters: parameters) }) }
            compactedQPS.append(try timeSearch { shardResult = try shard.search(queryRows, k: 10, parameters: parameters) })
            if r % 2 == 1 { memoryQPS.append(try timeSearch { memoryResult = try memory.search(queryRows, k: 10, parameters: parameters) }) }
        }
        var same = 0
        for q in 0..<queries {
            let expected = Set(memoryResult.ids(ofQuery: q).map { "v\($0)" })
            same += shardResult[q].filter { expected.contains($0.key) }.count
        }
        shard.close()

        let addMedian = addRates.median, ingestMedian = ingestRates.median
        let memoryMedian = memoryQPS.median
        print("""
        ## Storage engine vs in-memory engine: \(count) x \(dimension), \(factory), \(threads) threads

        | measure | in-memory engine | shard storage | ratio |
        |---|---|---|---|
        | ingest (vectors/s; storage: batches of \(batch), \(writers) in flight, committed in order with group commit, then seal) | \(Int(addMedian)) | \(Int(ingestMedian)) | \(String(format: "%.2f", ingestMedian / addMedian))x |
        | search QPS, nprobe \(nprobe), k 10, \(segmentsAsSealed) sealed segments | \(Int(memoryMedian)) | \(Int(sealedQPS.median)) | \(String(format: "%.2f", sealedQPS.median / memoryMedian))x |
        | search QPS, after compaction to 1 segment | \(Int(memoryMedian)) | \(Int(compactedQPS.median)) | \(String(format: "%.2f", compactedQPS.median / memoryMedian))x |
        | top-10 agreement with the in-memory index | | \(String(format: "%.4f", Double(same) / Double(queries * 10))) | |

        Opening the sealed shard in a fresh process: \(String(format: "%.1f", open.milliseconds)) ms; resident memory \(open.rssBefore) MB before, \(open.rssOpen) MB after opening, \(open.rssQueried) MB after \(queries) queries.
        """)
    }

    struct OpenMeasurement { var milliseconds: Double; var rssBefore: Int; var rssOpen: Int; var rssQueried: Int }

    private func measureOpen() throws -> OpenMeasurement {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        process.arguments = ["bench-open", "--data", data, "--dimension", "\(dimension)", "--queries", "\(queries)", "--nprobe", "\(nprobe)"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { Double($0) }
        guard process.terminationStatus == 0, fields.count == 4 else { throw ValidationError("bench-open failed: \(text)") }
        return OpenMeasurement(milliseconds: fields[0], rssBefore: Int(fields[1]), rssOpen: Int(fields[2]), rssQueried: Int(fields[3]))
    }

    private func log(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
}

/// `pharos-shard bench-open`: opens a shard and prints `milliseconds rss-before rss-open
/// rss-after-queries` (MB); run by `bench` in a fresh process.
struct BenchOpenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-open", abstract: "Time opening a shard (used by bench).")

    @Option var data: String
    @Option var dimension: Int
    @Option var queries: Int
    @Option var nprobe: Int

    func run() throws {
        let queryRows = SyntheticDataset(dimension: dimension, clusters: 1000, normalized: false, seed: 1).vectors(0..<queries, stream: 2)
        var options = Shard.Options()
        options.automaticMaintenance = false
        let before = Self.residentMegabytes()
        let clock = Date()
        let shard = try Shard.open(at: data, options: options)
        let milliseconds = Date().timeIntervalSince(clock) * 1000
        let opened = Self.residentMegabytes()
        _ = try shard.search(queryRows, k: 10, parameters: SearchParameters(nprobe: nprobe))
        let queried = Self.residentMegabytes()
        print(String(format: "%.2f %d %d %d", milliseconds, before, opened, queried))
    }

    /// VmRSS of this process, in MB.
    static func residentMegabytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kb = Int(line.split(separator: " ").dropFirst().first ?? "") else { return -1 }
        return kb / 1024
    }
}
